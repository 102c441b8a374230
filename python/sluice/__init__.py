"""sluice: Python client of the sluice planning daemon (sluiced) and helpers
that turn its plans into what training frameworks consume.

    import sluice
    with sluice.Client("ipc:///run/user/1000/sluiced.sock") as c:
        plan = c.plan([4096, 131072, 900], step=7, job="run-1", ranks=8)
    sched = sluice.megatron_schedule(plan)   # per micro-batch, per rank
    bal = sluice.verl_balance(plan_dict)     # partitions + micro-batches

Standard library only. The client loads libsluice.so with ctypes (see
sluice._lib for where it looks); the plan helpers are pure Python and work on
plans from `sluice plan --format json` without a daemon. See docs/python.md.
"""

from .client import Client, SluiceError, keygen
from .megatron import MegatronSchedule, MicroBatch, megatron_check, megatron_schedule
from .plan import PLAN_FORMAT, Group, Plan, as_plan, cumulative, load_plan, padded_length
from .verl import VerlBalance, verl_balance
from ._lib import ERROR_NAMES, find_library
from .hf import flattening_batch

try:  # written by python/setup.py or the CMake build from include/sluice/sluice.h
    from ._version import __version__
except ImportError:  # the source tree itself: read the header it sits beside
    from ._lib import version_from_header as _vfh

    __version__ = _vfh()

__all__ = [
    "Client",
    "SluiceError",
    "keygen",
    "ERROR_NAMES",
    "find_library",
    "Plan",
    "Group",
    "PLAN_FORMAT",
    "as_plan",
    "load_plan",
    "padded_length",
    "cumulative",
    "megatron_schedule",
    "megatron_check",
    "MegatronSchedule",
    "MicroBatch",
    "verl_balance",
    "VerlBalance",
    "flattening_batch",
]
