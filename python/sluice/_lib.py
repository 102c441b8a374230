"""ctypes declarations of libsluice (include/sluice/client.h, err.h, plan.h).

The library is loaded lazily, on the first Client, so the pure plan helpers
work on machines without it. Where it is looked for, in order:

1. ``$SLUICE_LIB`` (a path to the .so; when set it must load),
2. next to this package (the build tree copies libsluice.so into
   ``<build>/python/sluice/``),
3. ``ctypes.util.find_library("sluice")`` (an installed libsluice).

The struct layouts below mirror the C headers by hand; the test suite
compares them with the compiler's offsets (tests/python/layout.c), so a
header change that is not repeated here fails a test instead of corrupting
memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

# sl_err in include/sluice/err.h, in enum order (checked against sl_errname
# by the tests).
ERROR_NAMES = (
    "SL_OK",
    "SL_ENOMEM",
    "SL_EINVAL",
    "SL_EIO",
    "SL_EFORMAT",
    "SL_ERANGE",
    "SL_ENOTFOUND",
    "SL_EINFEASIBLE",
    "SL_ETIMEOUT",
    "SL_ELP",
    "SL_ECOMM",
    "SL_EPROTO",
    "SL_EDENIED",
    "SL_EBUSY",
    "SL_ECLOSED",
    "SL_ECUDA",
    "SL_ENCCL",
    "SL_ECHECK",
    "SL_EINTERNAL",
)

# Room for one sl_profile_t filled by sl_profile_parse_json; the tests check
# that the C struct is smaller.
PROFILE_BUF_SIZE = 4096
JOB_MAX = 128


class PolicyOpts(ctypes.Structure):
    """sl_policy_opts_t (include/sluice/policy.h)."""

    _fields_ = [
        ("sp", ctypes.c_int32),
        ("trace_max_len", ctypes.c_int64),
        ("time_limit_ms", ctypes.c_double),
        ("work_limit", ctypes.c_int64),
        ("seed", ctypes.c_uint64),
        ("deadline_ms", ctypes.c_double),
        ("cancel", ctypes.c_void_p),
    ]


class PlanReq(ctypes.Structure):
    """sl_plan_req_t (include/sluice/client.h)."""

    _fields_ = [
        ("job", ctypes.c_char_p),
        ("step", ctypes.c_uint64),
        ("lengths", ctypes.POINTER(ctypes.c_int64)),
        ("ids", ctypes.POINTER(ctypes.c_int64)),
        ("n", ctypes.c_int64),
        ("policy", ctypes.c_char_p),
        ("profile", ctypes.c_char_p),
        ("inline_profile", ctypes.c_void_p),
        ("ranks", ctypes.c_int32),
        ("ranks_per_node", ctypes.c_int32),
        ("deadline_ms", ctypes.c_uint32),
        ("opts", PolicyOpts),
        ("no_dispatch", ctypes.c_int),
        ("debug_delay_ms", ctypes.c_uint32),
    ]


class ClientOpts(ctypes.Structure):
    """sl_client_opts_t (include/sluice/client.h)."""

    _fields_ = [
        ("identity", ctypes.c_char_p),
        ("server_key", ctypes.c_char_p),
        ("secret_key_file", ctypes.c_char_p),
        ("heartbeat_ms", ctypes.c_int),
    ]


class Event(ctypes.Structure):
    """sl_event_t (include/sluice/client.h)."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("job", ctypes.c_char * (JOB_MAX + 1)),
        ("rank", ctypes.c_int32),
        ("message", ctypes.c_char * 256),
        ("step", ctypes.c_uint64),
    ]


EVENT_KINDS = {0: "none", 1: "worker_lost", 2: "worker_joined", 3: "step_failed"}

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_CHARPP = ctypes.POINTER(ctypes.c_void_p)  # char ** (read as void * to free it)
_U64P = ctypes.POINTER(ctypes.c_uint64)

# name: (restype, argtypes)
_SIGNATURES = {
    "sl_errmsg": (ctypes.c_char_p, []),
    "sl_errname": (ctypes.c_char_p, [ctypes.c_int]),
    "sl_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "sl_clearerr": (None, []),
    "sl_default_endpoint": (ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_size_t]),
    "sl_client_new": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ClientOpts), _PP]),
    "sl_client_free": (None, [_PP]),
    "sl_client_send": (ctypes.c_int, [_P, ctypes.POINTER(PlanReq), _U64P]),
    "sl_client_poll": (ctypes.c_int, [_P, ctypes.c_int]),
    "sl_client_recv": (ctypes.c_int, [_P, ctypes.c_int, _U64P, _PP]),
    "sl_client_plan_json": (ctypes.c_int, [_P, ctypes.POINTER(PlanReq), ctypes.c_int, _CHARPP]),
    "sl_client_error_field": (ctypes.c_char_p, [_P]),
    "sl_client_last_step": (ctypes.c_uint64, [_P]),
    "sl_client_status_json": (
        ctypes.c_int,
        [_P, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int, _CHARPP],
    ),
    "sl_client_next_event": (ctypes.c_int, [_P, ctypes.POINTER(Event)]),
    "sl_free": (None, [_P]),
    "sl_plan_to_json": (_P, [_P]),
    "sl_plan_free": (None, [_PP]),
    "sl_profile_parse_json": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, _P]),
    "sl_keygen": (ctypes.c_int, [ctypes.c_char_p]),
}

_lock = threading.Lock()
_lib = None
_lib_path = None


def _candidates():
    """Yields (path, where) pairs in search order (see the module doc)."""
    env = os.environ.get("SLUICE_LIB")
    if env:
        yield env, "$SLUICE_LIB"
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libsluice.so", "libsluice.so.0", "libsluice.dylib"):
        path = os.path.join(here, name)
        if os.path.exists(path):
            yield path, "the package directory"
    found = ctypes.util.find_library("sluice")
    if found:
        yield found, "ctypes.util.find_library"


def find_library():
    """Returns the path libsluice would be loaded from, or None."""
    for path, _ in _candidates():
        return path
    return None


def load():
    """Returns the loaded libsluice (a ctypes.CDLL with typed functions).

    Raises OSError naming every place looked at when none loads; when
    $SLUICE_LIB is set, only that path is tried.
    """
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path, where in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append("%s (%s): %s" % (path, where, e))
                continue
            for name, (res, args) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype = res
                fn.argtypes = args
            _lib, _lib_path = lib, path
            return lib
        if not tried:
            tried.append(
                "$SLUICE_LIB is not set, no libsluice.so next to %s, "
                "ctypes.util.find_library('sluice') found nothing"
                % os.path.dirname(os.path.abspath(__file__))
            )
        raise OSError("libsluice could not be loaded: " + "; ".join(tried))


def loaded_path():
    """The path of the loaded library, or None before load()."""
    return _lib_path


def decode(b):
    """bytes from C (may be None) -> str."""
    if b is None:
        return ""
    return b.decode("utf-8", errors="replace")


def take_string(lib, ptr):
    """Copies a malloc'd C string returned by libsluice and frees it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib.sl_free(ptr)
