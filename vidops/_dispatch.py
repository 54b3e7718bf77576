"""Backend choice for every vidops op.

Each op registers its backends (`reference`, `cpu`, `cuda`, `triton`) with an availability
predicate that returns None when the backend can run on a device, or the reason it cannot.
The backend used for a call is, in order of precedence:

1. the op's `backend=` argument;
2. the innermost `vidops.use_backend(...)` context (or `vidops.set_backend(...)`);
3. the environment: `VIDOPS_BACKEND_<OP>` (e.g. `VIDOPS_BACKEND_MOTION_BAND_PASS=triton`), then
   `VIDOPS_BACKEND`;
4. the op's preference list for the tensor's device: the fastest verified backend first.

A backend asked for explicitly (1-3) that cannot run raises `BackendUnavailableError` naming
every backend and why it cannot run. Automatic choice logs why each skipped backend was skipped
(`logging.getLogger("vidops.dispatch")` at DEBUG; `VIDOPS_LOG_LEVEL=DEBUG` turns it on).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from . import _ext

log = logging.getLogger("vidops.dispatch")
if os.environ.get("VIDOPS_LOG_LEVEL"):
    logging.basicConfig()
    log.setLevel(os.environ["VIDOPS_LOG_LEVEL"].upper())

BACKENDS = ("reference", "cpu", "cuda", "triton")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run this call."""


@dataclass
class Backend:
    name: str
    available: Callable[[torch.device], Optional[str]]
    impl: object  # a module or namespace with the op's forward/backward functions


@dataclass
class OpEntry:
    name: str
    backends: dict = field(default_factory=dict)
    preference: dict = field(default_factory=dict)  # device type -> tuple of backend names


_OPS: dict[str, OpEntry] = {}
_local = threading.local()


def register_op(name: str, preference: dict) -> OpEntry:
    entry = _OPS.setdefault(name, OpEntry(name))
    entry.preference = {k: tuple(v) for k, v in preference.items()}
    return entry


def register_backend(op: str, backend: str, available: Callable, impl: object) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"vidops: unknown backend {backend!r} (known: {BACKENDS})")
    _OPS.setdefault(op, OpEntry(op)).backends[backend] = Backend(backend, available, impl)


def registered_ops() -> dict:
    return dict(_OPS)


# ---- availability predicates shared by the ops -------------------------------------------------

def always(device: torch.device) -> Optional[str]:
    return None


def cpp_kernel(kernel: str) -> Callable[[torch.device], Optional[str]]:
    """Available when vidops._C registered `vidops::<kernel>` for the device's dispatch key."""

    def available(device: torch.device) -> Optional[str]:
        key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
        if key is None:
            return f"no C++ kernel for device type {device.type!r}"
        if not _ext.EXTENSION_LOADED:
            return f"{_ext.EXTENSION_ERROR}; {_ext.REBUILD_HINT}"
        if not _ext.has_kernel(kernel, key):
            return (f"vidops._C has no {key} kernel for {kernel} ({_ext.describe_build()}); "
                    f"{_ext.REBUILD_HINT}")
        return None

    return available


def _kernel_on(device_type: str, backend: str):
    def factory(kernel: str) -> Callable[[torch.device], Optional[str]]:
        inner = cpp_kernel(kernel)

        def available(device: torch.device) -> Optional[str]:
            if device.type != device_type:
                return f"the {backend} backend runs on {device_type.upper()} tensors, got a {device.type} tensor"
            if device_type == "cuda" and not torch.cuda.is_available():
                # vidops._C registers its CUDA kernels even in CPU torch (static cudart).
                return f"torch {torch.__version__} has no usable CUDA device"
            return inner(device)

        return available

    return factory


cpu_kernel = _kernel_on("cpu", "cpu")     # cpu_kernel("_op_fwd"): the C++ CPU kernel is registered
cuda_kernel = _kernel_on("cuda", "cuda")  # cuda_kernel("_op_fwd"): the CUDA kernel is registered


def triton_kernel(module: str) -> Callable[[torch.device], Optional[str]]:
    """Available when Triton can run on the device and `vidops.triton_kernels.<module>` exists."""

    def available(device: torch.device) -> Optional[str]:
        from . import _triton

        why = _triton.unavailable_reason(device)
        if why is None and not _triton.has_module(module):
            why = f"vidops.triton_kernels.{module} is not installed"
        return why

    return available


# ---- choice --------------------------------------------------------------------------------

@contextlib.contextmanager
def use_backend(backend: Optional[str] = None, **per_op: str):
    """Run the enclosed calls on `backend` (all ops), or per op: `use_backend(motion_band_pass="cpu")`."""
    for b in [backend, *per_op.values()]:
        if b is not None and b not in BACKENDS:
            raise ValueError(f"vidops.use_backend: unknown backend {b!r} (known: {BACKENDS})")
    stack = _stack()
    stack.append((backend, per_op))
    try:
        yield
    finally:
        stack.pop()


def set_backend(backend: Optional[str] = None, **per_op: str) -> None:
    """Like `use_backend` but for the rest of the thread (None clears the global choice)."""
    for b in [backend, *per_op.values()]:
        if b is not None and b not in BACKENDS:
            raise ValueError(f"vidops.set_backend: unknown backend {b!r} (known: {BACKENDS})")
    stack = _stack()
    stack[0] = (backend, per_op)


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = [(None, {})]
    return _local.stack


def _requested(op: str, explicit: Optional[str]):
    if explicit is not None:
        return explicit, "the backend= argument"
    for backend, per_op in reversed(_stack()):
        if op in per_op and per_op[op] is not None:
            return per_op[op], "vidops.use_backend/set_backend"
        if backend is not None:
            return backend, "vidops.use_backend/set_backend"
    env = os.environ.get(f"VIDOPS_BACKEND_{op.upper()}")
    if env:
        return env.strip(), f"VIDOPS_BACKEND_{op.upper()}"
    env = os.environ.get("VIDOPS_BACKEND")
    if env:
        return env.strip(), "VIDOPS_BACKEND"
    return None, None


def reasons(op: str, device: torch.device) -> dict:
    """backend name -> None (can run) or the reason it cannot, for every known backend."""
    entry = _OPS[op]
    out = {}
    for name in BACKENDS:
        b = entry.backends.get(name)
        out[name] = "not implemented for this op" if b is None else b.available(device)
    return out


def choose(op: str, device: torch.device, explicit: Optional[str] = None) -> str:
    entry = _OPS[op]
    requested, source = _requested(op, explicit)
    if requested is not None:
        if requested not in BACKENDS:
            raise BackendUnavailableError(
                f"vidops.{op}: unknown backend {requested!r} from {source} (known: {', '.join(BACKENDS)})")
        b = entry.backends.get(requested)
        why = "not implemented for this op" if b is None else b.available(device)
        if why is not None:
            lines = "\n".join(f"  {k}: {'available' if v is None else v}" for k, v in reasons(op, device).items())
            raise BackendUnavailableError(
                f"vidops.{op}: backend {requested!r} (from {source}) cannot run on {device}: {why}\n"
                f"backends for {op} on {device}:\n{lines}")
        return requested
    for name in entry.preference.get(device.type, ("reference",)):
        b = entry.backends.get(name)
        why = "not implemented for this op" if b is None else b.available(device)
        if why is None:  # the first automatic use of a GPU backend runs a probe against the reference
            from ._probe import self_check
            why = self_check(op, name, device)
        if why is None:
            log.debug("vidops.%s on %s: using %s", op, device, name)
            return name
        log.debug("vidops.%s on %s: skipped %s: %s", op, device, name, why)
    return "reference"


def impl(op: str, backend: str):
    return _OPS[op].backends[backend].impl
