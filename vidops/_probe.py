"""First-use self-check of the GPU backends.

The first time the automatic backend choice lands on a GPU backend (cuda, triton) for an op in
a process, that backend runs one tiny case of the op (from vidops.selftest) against the float64
reference, with the tolerance rule of vidops._tolerance. A mismatch or an exception logs an error
naming the op and the backend, and the dispatcher falls back to the next backend in the op's
preference list: a broken build never gives a silent wrong answer. The verdict is remembered per
(op, backend, device). An explicitly requested backend is never probed (the probe itself runs
that way). VIDOPS_SELF_CHECK=0 turns the check off.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

import torch

log = logging.getLogger("vidops.dispatch")

PROBED_BACKENDS = ("cuda", "triton")
PROBED_DEVICE_TYPES = ("cuda",)

_verdicts: dict = {}   # (op, backend, device) -> None (passed) or the reason it failed
_lock = threading.RLock()
_active = threading.local()


def enabled() -> bool:
    return os.environ.get("VIDOPS_SELF_CHECK", "1").strip() != "0"


def reset() -> None:
    """Forget every verdict (tests; after rebuilding an extension in the same process)."""
    with _lock:
        _verdicts.clear()


def verdicts() -> dict:
    with _lock:
        return dict(_verdicts)


def _capturing(device: torch.device) -> bool:
    try:
        return device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    except Exception:
        return False


def self_check(op: str, backend: str, device: torch.device) -> Optional[str]:
    """None when `backend` may run `op` on `device` (it passed its probe, or is not probed);
    otherwise why it may not."""
    if backend not in PROBED_BACKENDS or device.type not in PROBED_DEVICE_TYPES or not enabled():
        return None
    if getattr(_active, "probing", False) or _capturing(device):
        return None  # inside a probe or a CUDA graph capture: no nested probes
    key = (op, backend, str(device))
    with _lock:
        if key in _verdicts:
            return _verdicts[key]
        _active.probing = True
        try:
            why = run_probe(op, backend, device)
        except Exception as exc:  # a crash of the backend is a failed probe, not the caller's error
            why = f"the probe raised {type(exc).__name__}: {exc}"
        finally:
            _active.probing = False
        _verdicts[key] = why
    if why is not None:
        log.error("vidops.%s: the %s backend failed its self-check on %s: %s; using the next backend "
                  "instead (VIDOPS_SELF_CHECK=0 turns the check off)", op, backend, device, why)
    else:
        log.debug("vidops.%s: the %s backend passed its self-check on %s", op, backend, device)
    return why


def run_probe(op: str, backend: str, device: torch.device) -> Optional[str]:
    """One small forward case of `op` on `backend` against the reference; None when it passes."""
    from . import selftest

    spec = selftest.SPECS.get(op)
    if spec is None:
        return None  # no probe case for this op
    case = spec.probe_case()
    dtype = torch.float32
    result = selftest.run_case(spec, case, backend, device, dtype, backward=False)
    if result.ok:
        return None
    return result.summary()
