"""ctypes declarations of libsluice_ring (include/sluice/ring.h), the ring
attention entry point sluice.torch calls. Found like libsluice (sluice._lib),
with $SLUICE_RING_LIB as the override. Loaded on first use."""

from __future__ import annotations

import ctypes
import threading

from . import _lib


class RingGroup(ctypes.Structure):
    """sl_ring_group_t."""

    _fields_ = [
        ("slot", ctypes.c_int32),
        ("d", ctypes.c_int32),
        ("ring_pos", ctypes.c_int32),
        ("ring", ctypes.POINTER(ctypes.c_int32)),
        ("nseqs", ctypes.c_int32),
        ("lengths", ctypes.POINTER(ctypes.c_int64)),
        ("heads", ctypes.c_int32),
        ("kv_heads", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("scale", ctypes.c_double),
    ]


_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_G = ctypes.POINTER(RingGroup)

_SIGNATURES = {
    "sl_errmsg": (ctypes.c_char_p, []),
    "sl_errname": (ctypes.c_char_p, [ctypes.c_int]),
    "sl_ring_new_cpu": (
        ctypes.c_int,
        [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int, _PP],
    ),
    "sl_ring_new_cuda": (
        ctypes.c_int,
        [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_char_p, _PP],
    ),
    "sl_ring_have_cuda": (ctypes.c_int, []),
    "sl_ring_nccl_id_size": (ctypes.c_size_t, []),
    "sl_ring_nccl_id": (ctypes.c_int, [ctypes.c_char_p]),
    "sl_ring_free": (None, [_PP]),
    "sl_ring_engine": (ctypes.c_int, [_P]),
    "sl_ring_set_epoch": (None, [_P, ctypes.c_int64]),
    "sl_ring_layout": (ctypes.c_int, [_P, _G, ctypes.POINTER(ctypes.c_int64)]),
    "sl_ring_forward": (ctypes.c_int, [_P, _G, _P, _P, _P, _P, _P, _P]),
    "sl_ring_backward": (ctypes.c_int, [_P, _G, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P]),
}

_lock = threading.Lock()
_ring_lib = None


def load():
    """The loaded libsluice_ring; OSError naming every place tried."""
    global _ring_lib
    with _lock:
        if _ring_lib is None:
            _ring_lib, _ = _lib.load_named("sluice_ring", "SLUICE_RING_LIB", _SIGNATURES)
        return _ring_lib


class RingError(RuntimeError):
    """A libsluice_ring call failed: `code`, `name` (sl_err) and `message`."""

    def __init__(self, code, name, message):
        super().__init__("%s: %s" % (name, message))
        self.code, self.name, self.message = code, name, message


def check(lib, rc):
    if rc != 0:
        raise RingError(rc, _lib.decode(lib.sl_errname(rc)), _lib.decode(lib.sl_errmsg()))
