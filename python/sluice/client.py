"""The sluiced client: ctypes over libsluice's sl_client_* API
(include/sluice/client.h)."""

from __future__ import annotations

import ctypes
import json
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _lib
from .plan import Plan

DEFAULT_TIMEOUT_MS = 60000


class SluiceError(Exception):
    """A failure reported by libsluice or by the daemon.

    `code` is the sl_err number, `name` its symbol ("SL_ENOTFOUND"),
    `message` the text (the daemon's own message for error replies), `field`
    the request field the daemon blamed ("" when none), `request_id` the id
    of the request an error reply answered (None otherwise)."""

    def __init__(self, code: int, message: str, field: str = "", request_id: Optional[int] = None):
        self.code = int(code)
        self.name = _lib.ERROR_NAMES[code] if 0 <= code < len(_lib.ERROR_NAMES) else "SL_E%d" % code
        self.message = message
        self.field = field
        self.request_id = request_id
        text = "%s: %s" % (self.name, message)
        if field:
            text += " (field %s)" % field
        super().__init__(text)

    @property
    def timed_out(self) -> bool:
        return self.name == "SL_ETIMEOUT"


def _int64_array(values: Iterable[Any], what: str):
    try:
        vals = [int(v) for v in values]
    except (TypeError, ValueError) as e:
        raise TypeError("%s: expected integers (%s)" % (what, e)) from None
    for v in vals:
        if not -(2**63) <= v < 2**63:
            raise ValueError("%s: %d does not fit in 64 bits" % (what, v))
    return (ctypes.c_int64 * len(vals))(*vals), len(vals)


def _opt_bytes(s: Optional[str]) -> Optional[bytes]:
    if s is None:
        return None
    return str(s).encode("utf-8")


def keygen(base: str) -> Tuple[str, str]:
    """Writes a new CURVE keypair as `sluice keygen` does: <base>.key (the
    secret, mode 0600; an existing file is not overwritten) and <base>.pub
    (the public key, one line for an authorized-keys file). Returns the two
    paths; raises SluiceError."""
    lib = _lib.load()
    rc = lib.sl_keygen(str(base).encode("utf-8"))
    if rc != 0:
        raise SluiceError(rc, _lib.decode(lib.sl_errmsg()))
    return str(base) + ".key", str(base) + ".pub"


class Client:
    """A connection to sluiced.

    `endpoint`: ipc://PATH or tcp://HOST:PORT (None: $SLUICE_ENDPOINT, else
    the default socket, as sl_default_endpoint). For tcp, `server_key` is the
    daemon's public key (Z85 text or a .pub file) and `secret_key_file` this
    client's secret key file (from `sluice keygen`). ZeroMQ connects lazily:
    a daemon that is not up yet makes the first request wait, not this
    constructor fail. One thread at a time may use a Client.

    Use as a context manager, or call close()."""

    def __init__(
        self,
        endpoint: Optional[str] = None,
        server_key: Optional[str] = None,
        secret_key_file: Optional[str] = None,
        identity: Optional[str] = None,
        heartbeat_ms: int = 0,
    ):
        self._lib = _lib.load()
        self._c = ctypes.c_void_p()
        # keep the option strings alive for the call
        self._opts_keep = [_opt_bytes(identity), _opt_bytes(server_key), _opt_bytes(secret_key_file)]
        opts = _lib.ClientOpts(*self._opts_keep, int(heartbeat_ms))
        rc = self._lib.sl_client_new(_opt_bytes(endpoint), ctypes.byref(opts), ctypes.byref(self._c))
        if rc != 0:
            raise self._error(rc, with_field=False)
        if endpoint is None:
            buf = ctypes.create_string_buffer(4096)
            endpoint = _lib.decode(self._lib.sl_default_endpoint(buf, len(buf)))
        self.endpoint = endpoint
        # request id -> (job, step) of requests sent and not yet received
        self._pending: Dict[int, tuple] = {}

    # ---- plumbing -------------------------------------------------------

    def _error(self, rc: int, with_field: bool = True, request_id: Optional[int] = None) -> SluiceError:
        msg = _lib.decode(self._lib.sl_errmsg())
        field = ""
        if with_field and self._c:
            field = _lib.decode(self._lib.sl_client_error_field(self._c))
        return SluiceError(rc, msg, field, request_id)

    def _handle(self):
        if not self._c:
            raise SluiceError(_lib.ERROR_NAMES.index("SL_ECLOSED"), "the client is closed")
        return self._c

    def _request(
        self,
        lengths,
        step,
        job,
        ids,
        policy,
        profile,
        ranks,
        ranks_per_node,
        deadline_ms,
        sp,
        time_limit_ms,
        work_limit,
        seed,
        dispatch,
    ):
        """Builds an sl_plan_req_t; returns it with the objects it points to."""
        if not isinstance(job, str) or not job:
            raise ValueError("job: a non-empty string is required")
        lens, n = _int64_array(lengths, "lengths")
        keep: List[Any] = [lens]
        ids_arr = None
        if ids is not None:
            ids_arr, m = _int64_array(ids, "ids")
            if m != n:
                raise ValueError("ids: %d ids for %d lengths" % (m, n))
            keep.append(ids_arr)
        req = _lib.PlanReq()
        req.job = job.encode("utf-8")
        req.step = int(step)
        req.lengths = ctypes.cast(lens, ctypes.POINTER(ctypes.c_int64))
        req.ids = ctypes.cast(ids_arr, ctypes.POINTER(ctypes.c_int64)) if ids_arr is not None else None
        req.n = n
        req.policy = _opt_bytes(policy)
        if isinstance(profile, dict):
            buf = ctypes.create_string_buffer(_lib.PROFILE_BUF_SIZE)
            rc = self._lib.sl_profile_parse_json(
                json.dumps(profile).encode("utf-8"), b"profile", ctypes.cast(buf, ctypes.c_void_p)
            )
            if rc != 0:
                raise self._error(rc, with_field=False)
            keep.append(buf)
            req.inline_profile = ctypes.cast(buf, ctypes.c_void_p)
        else:
            req.profile = _opt_bytes(profile)
        req.ranks = int(ranks or 0)
        req.ranks_per_node = int(ranks_per_node or 0)
        req.deadline_ms = int(deadline_ms or 0)
        req.opts.sp = int(sp or 0)
        req.opts.time_limit_ms = float(time_limit_ms or 0)
        req.opts.work_limit = int(work_limit or 0)
        req.opts.seed = int(seed or 0)
        req.no_dispatch = 0 if dispatch else 1
        keep.append(req.job)
        return req, keep

    # ---- requests -------------------------------------------------------

    def plan(
        self,
        lengths: Iterable[int],
        step: int = 0,
        job: str = "default",
        ids: Optional[Iterable[int]] = None,
        policy: Optional[str] = None,
        profile: Union[str, Dict[str, Any], None] = None,
        ranks: Optional[int] = None,
        ranks_per_node: Optional[int] = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        *,
        deadline_ms: int = 0,
        sp: int = 0,
        time_limit_ms: float = 0,
        work_limit: int = 0,
        seed: int = 0,
        dispatch: bool = True,
    ) -> Plan:
        """Asks for the plan of one step and waits for it (timeout_ms, -1:
        forever). `lengths` are tokens per sequence, `ids` the caller's ids
        (default 0..n-1). None/0 options take the daemon's defaults.
        `profile` is a preset name the daemon knows or a dict with the
        profile's fields (sent inline). `sp`, `time_limit_ms`, `work_limit`,
        `seed` are policy options (as `sluice plan`); `deadline_ms` bounds
        the planning; `dispatch=False` keeps the daemon from pushing work
        orders to the job's workers. Raises SluiceError on failure (the
        daemon's message and field on an error reply; SL_ETIMEOUT when no
        reply came in time)."""
        req, keep = self._request(
            lengths, step, job, ids, policy, profile, ranks, ranks_per_node,
            deadline_ms, sp, time_limit_ms, work_limit, seed, dispatch,
        )
        out = ctypes.c_void_p()
        rc = self._lib.sl_client_plan_json(self._handle(), ctypes.byref(req), int(timeout_ms), ctypes.byref(out))
        del keep
        if rc != 0:
            raise self._error(rc)
        text = _lib.take_string(self._lib, out)
        return Plan(json.loads(text), job=job, step=int(step))

    def send(
        self,
        lengths: Iterable[int],
        step: int = 0,
        job: str = "default",
        ids: Optional[Iterable[int]] = None,
        policy: Optional[str] = None,
        profile: Union[str, Dict[str, Any], None] = None,
        ranks: Optional[int] = None,
        ranks_per_node: Optional[int] = None,
        *,
        deadline_ms: int = 0,
        sp: int = 0,
        time_limit_ms: float = 0,
        work_limit: int = 0,
        seed: int = 0,
        dispatch: bool = True,
    ) -> int:
        """Sends a plan request without waiting (arguments as plan());
        returns the request id its reply will carry. Raises SluiceError
        (SL_EBUSY when no connection took it within 1 s)."""
        req, keep = self._request(
            lengths, step, job, ids, policy, profile, ranks, ranks_per_node,
            deadline_ms, sp, time_limit_ms, work_limit, seed, dispatch,
        )
        rid = ctypes.c_uint64()
        rc = self._lib.sl_client_send(self._handle(), ctypes.byref(req), ctypes.byref(rid))
        del keep
        if rc != 0:
            raise self._error(rc, with_field=False)
        self._pending[rid.value] = (job, int(step))
        return rid.value

    def poll(self, timeout_ms: int = 0) -> bool:
        """True when a reply is ready within timeout_ms (-1: forever)."""
        rc = self._lib.sl_client_poll(self._handle(), int(timeout_ms))
        if rc == 0:
            return True
        if _lib.ERROR_NAMES[rc] == "SL_ETIMEOUT":
            return False
        raise self._error(rc, with_field=False)

    def recv(self, timeout_ms: int = -1) -> Optional[Plan]:
        """Receives the next reply to a send(), waiting up to timeout_ms (-1:
        forever). Returns the Plan (its `request_id`, `job` and `step` say
        which request it answers), None when no reply came in time, and
        raises SluiceError (with `request_id`) on an error reply."""
        h = self._handle()
        rid = ctypes.c_uint64()
        plan = ctypes.c_void_p()
        if not self.poll(timeout_ms):
            return None
        rc = self._lib.sl_client_recv(h, 0, ctypes.byref(rid), ctypes.byref(plan))
        job, step = self._pending.pop(rid.value, (None, None))
        if rc != 0:
            raise self._error(rc, request_id=rid.value)
        try:
            text = _lib.take_string(self._lib, self._lib.sl_plan_to_json(plan))
        finally:
            self._lib.sl_plan_free(ctypes.byref(plan))
        if text is None:
            raise SluiceError(_lib.ERROR_NAMES.index("SL_ENOMEM"), "writing the plan as JSON")
        if step is None:
            step = int(self._lib.sl_client_last_step(h))
        return Plan(json.loads(text), job=job, step=step, request_id=rid.value)

    @property
    def pending(self) -> List[int]:
        """Ids of requests sent and not yet received, oldest first."""
        return list(self._pending)

    def status(self, job: Optional[str] = None, max_steps: int = 0, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Dict[str, Any]:
        """The daemon's status as a dict (job None: all jobs; max_steps 0:
        every step it keeps)."""
        out = ctypes.c_void_p()
        rc = self._lib.sl_client_status_json(
            self._handle(), _opt_bytes(job), int(max_steps), int(timeout_ms), ctypes.byref(out)
        )
        if rc != 0:
            raise self._error(rc)
        return json.loads(_lib.take_string(self._lib, out))

    def events(self) -> List[Dict[str, Any]]:
        """Job events received so far (a worker lost or joined, a step
        failed), oldest first, as dicts with kind, job, rank, step, message.
        Does not wait."""
        h = self._handle()
        self._lib.sl_client_poll(h, 0)
        out = []
        ev = _lib.Event()
        while self._lib.sl_client_next_event(h, ctypes.byref(ev)):
            out.append(
                {
                    "kind": _lib.EVENT_KINDS.get(ev.kind, str(ev.kind)),
                    "job": _lib.decode(ev.job),
                    "rank": ev.rank,
                    "step": ev.step,
                    "message": _lib.decode(ev.message),
                }
            )
        return out

    # ---- lifetime -------------------------------------------------------

    def close(self) -> None:
        """Closes the connection; pending requests are dropped."""
        if getattr(self, "_c", None):
            self._lib.sl_client_free(ctypes.byref(self._c))
            self._c = ctypes.c_void_p()
        self._pending = {}

    @property
    def closed(self) -> bool:
        return not self._c

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<sluice.Client %s%s>" % (self.endpoint, " closed" if self.closed else "")
