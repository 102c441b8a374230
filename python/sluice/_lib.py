"""ctypes declarations of libsluice (include/sluice/client.h, err.h, plan.h).

The library is loaded lazily, on the first Client, so the pure plan helpers
work on machines without it. Where it is looked for, in order:

1. ``$SLUICE_LIB`` (a path to the .so; when set it must load; an explicit
   choice wins over everything found),
2. next to this package (the build tree copies libsluice.so into
   ``<build>/python/sluice/``),
3. the system's loader: ``ctypes.util.find_library("sluice")`` (ld.so.cache,
   e.g. after ``cmake --install`` to /usr/local and ``ldconfig``), then the
   plain ``libsluice.so.0`` name given to dlopen, which also searches
   ``$LD_LIBRARY_PATH`` (an install under another prefix:
   ``LD_LIBRARY_PATH=PREFIX/lib``).

libsluice_ring (sluice.torch's ring attention, include/sluice/ring.h) is
found the same way, with ``$SLUICE_RING_LIB`` as its override.

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


def version_from_header():
    """SLUICE_VERSION from include/sluice/sluice.h of the source tree this
    package sits in (python/sluice/ -> include/sluice/sluice.h); "unknown"
    when there is none (an installed package has sluice/_version.py)."""
    import re

    here = os.path.dirname(os.path.abspath(__file__))
    header = os.path.join(here, "..", "..", "include", "sluice", "sluice.h")
    try:
        with open(header, encoding="utf-8") as f:
            m = re.search(r'^#define SLUICE_VERSION "([0-9.]+)"$', f.read(), re.M)
    except OSError:
        return "unknown"
    return m.group(1) if m else "unknown"


def _candidates(base="sluice", env_var="SLUICE_LIB"):
    """Yields (path, where) pairs in search order (see the module doc) for
    lib<base>.so."""
    env = os.environ.get(env_var)
    if env:
        yield env, "$" + env_var
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("lib%s.so" % base, "lib%s.so.0" % base, "lib%s.dylib" % base):
        path = os.path.join(here, name)
        if os.path.exists(path):
            yield path, "the package directory"
    found = ctypes.util.find_library(base)
    if found:
        yield found, "ctypes.util.find_library"
    yield "lib%s.so.0" % base, "the dynamic loader's search path"


def find_library(base="sluice", env_var="SLUICE_LIB"):
    """Returns the path (or loader name) lib<base> would be loaded from: the
    first candidate that loads, or None when none does."""
    for path, _ in _candidates(base, env_var):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if os.path.sep in path:
            return path
        return _loaded_file(lib) or path
    return None


def _loaded_file(lib):
    """The file a CDLL came from (Linux: its link map), or None."""
    try:
        dlinfo = ctypes.CDLL(None).dlinfo
    except AttributeError:
        return None

    class LinkMap(ctypes.Structure):
        _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p)]

    lm = ctypes.POINTER(LinkMap)()
    RTLD_DI_LINKMAP = 2
    if dlinfo(ctypes.c_void_p(lib._handle), RTLD_DI_LINKMAP, ctypes.byref(lm)) != 0:
        return None
    return lm.contents.l_name.decode() if lm and lm.contents.l_name else None


def load_named(base, env_var, signatures):
    """Loads lib<base> from the first candidate that loads and types the
    functions in signatures (name: (restype, argtypes)). Raises OSError
    naming every place tried."""
    tried = []
    for path, where in _candidates(base, env_var):
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s): %s" % (path, where, e))
            continue
        for name, (res, args) in signatures.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        return lib, path
    raise OSError("lib%s could not be loaded: %s" % (base, "; ".join(tried)))


def load():
    """Returns the loaded libsluice (a ctypes.CDLL with typed functions).

    Raises OSError naming every place looked at when none loads; when
    $SLUICE_LIB is set, only that path is tried.
    """
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            return _lib
        _lib, _lib_path = load_named("sluice", "SLUICE_LIB", _SIGNATURES)
        return _lib


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
