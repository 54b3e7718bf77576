"""Backend choice for every vidops op.

Each op (declared with `vidops._op.Op`) registers its backends (`reference`, `cpu`, `cuda`,
`triton`) with two availability rules, each returning None when the backend can run or the reason
it cannot: `available(device)`, what this install and device allow (the extension's kernel is
registered, Triton runs here; computed once per device type and cached), and `supports(*inputs)`,
what the backend's kernels take (dtype, shape, head dim, requires_grad) for this call's inputs.
The backend used for a call is, in order of precedence:

1. the op's `backend=` argument;
2. the innermost `vidops.use_backend(...)` context (or `vidops.set_backend(...)`);
3. the environment: `VIDOPS_BACKEND_<OP>` (e.g. `VIDOPS_BACKEND_MOTION_BAND_PASS=triton`), then
   `VIDOPS_BACKEND`;
4. the op's preference list for the tensor's device: the fastest verified backend first.

A backend asked for explicitly (1-3) that cannot run raises `BackendUnavailableError` naming
every backend and why it cannot run this call. Automatic choice skips a backend that cannot run
and logs why (`logging.getLogger("vidops.dispatch")` at DEBUG; `VIDOPS_LOG_LEVEL=DEBUG` turns it
on; nothing is logged while torch.compile traces). The choice runs in plain Python that
torch.compile traces without a graph break: the device-level facts enter the graph as constants,
and the choice is guarded on the use_backend/set_backend state and the environment.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
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


@dataclass(eq=False)
class Backend:
    name: str
    available: Callable[[torch.device], Optional[str]]
    impl: object  # an object with the op's forward/backward functions
    supports: Optional[Callable[..., Optional[str]]] = None  # (*inputs) -> None or why not
    _by_device_type: dict = field(default_factory=dict, repr=False)  # cache of `available`

    def device_reason(self, device_type: str) -> Optional[str]:
        if device_type not in self._by_device_type:
            self._by_device_type[device_type] = self.available(torch.device(device_type))
        return self._by_device_type[device_type]


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


def register_backend(op: str, backend: str, available: Callable, impl: object,
                     supports: Optional[Callable] = None) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"vidops: unknown backend {backend!r} (known: {BACKENDS})")
    _OPS.setdefault(op, OpEntry(op)).backends[backend] = Backend(backend, available, impl, supports)


def registered_ops() -> dict:
    return dict(_OPS)


# ---- availability predicates shared by the ops -------------------------------------------------

def always(device: torch.device) -> Optional[str]:
    return None


def on_device(device_type: str) -> Callable[[torch.device], Optional[str]]:
    """Available on `device_type` tensors (a backend in plain PyTorch for one device type)."""

    def available(device: torch.device) -> Optional[str]:
        if device.type != device_type:
            return f"the {device_type} backend runs on {device_type.upper()} tensors, got a {device.type} tensor"
        return None

    return available


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


def _assume_constant_result(fn: Callable) -> Callable:
    """torch.compiler.assume_constant_result, without importing torch._dynamo at `import vidops`
    (a second of import time): in torch 2.13 the public decorator imports torch._dynamo and then
    only sets this mark on the function (tests/test_import_light.py checks that it still does)."""
    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result
def _device_reason(op: str, backend: str, device_type: str) -> str:
    """Why `backend` cannot run `op` on this device type ("" when it can): fixed for the process
    (what was built, what is installed), so torch.compile takes it as a constant."""
    b = _OPS[op].backends.get(backend)
    why = "not implemented for this op" if b is None else b.device_reason(device_type)
    return "" if why is None else why


def _reason(op: str, name: str, device: torch.device, inputs) -> Optional[str]:
    why = _device_reason(op, name, device.type)
    if why:
        return why
    b = _OPS[op].backends[name]
    if inputs is not None and b.supports is not None:
        return b.supports(*inputs)
    return None


def reasons(op: str, device: torch.device, inputs=None) -> dict:
    """backend name -> None (can run) or the reason it cannot, for every known backend; with
    `inputs` (the op's arguments) the backends' input rules are asked too."""
    return {name: _reason(op, name, device, inputs) for name in BACKENDS}


def default_is(op: str, backend: str) -> bool:
    """Whether `choose` would pick `backend` for a CPU call of `op` with no backend requested
    anywhere and no input rule: the op's first CPU preference, which can run here. The caller's
    own fast path checks the call's inputs."""
    if _requested(op, None)[0] is not None:
        return False
    entry = _OPS[op]
    pref = entry.preference.get("cpu", ())
    b = entry.backends.get(backend)
    return (bool(pref) and pref[0] == backend and b is not None and b.supports is None
            and not _device_reason(op, backend, "cpu"))


def choose(op: str, device: torch.device, explicit: Optional[str] = None, inputs=None) -> str:
    """The backend that runs this call (see the module docstring); `inputs` are the op's
    arguments, for the backends' input rules (None: the device-level rules only)."""
    entry = _OPS[op]
    requested, source = _requested(op, explicit)
    if requested is not None:
        if requested not in BACKENDS:
            raise BackendUnavailableError(
                f"vidops.{op}: unknown backend {requested!r} from {source} (known: {', '.join(BACKENDS)})")
        why = _reason(op, requested, device, inputs)
        if why is not None:
            lines = "\n".join(f"  {k}: {'available' if v is None else v}"
                              for k, v in reasons(op, device, inputs).items())
            what = "this call on" if inputs is not None else "on"
            raise BackendUnavailableError(
                f"vidops.{op}: backend {requested!r} (from {source}) cannot run {what} {device}: {why}\n"
                f"backends for {op} on {device}:\n{lines}")
        return requested
    for name in entry.preference.get(device.type, ("reference",)):
        why = _reason(op, name, device, inputs)
        if why is None:  # the first automatic use of a GPU backend runs a probe against the reference
            from ._probe import self_check
            why = self_check(op, name, device)
        if why is None:
            if not torch.compiler.is_compiling():
                log.debug("vidops.%s on %s: using %s", op, device, name)
            return name
        if not torch.compiler.is_compiling():
            log.debug("vidops.%s on %s: skipped %s: %s", op, device, name, why)
    return "reference"


def impl(op: str, backend: str):
    return _OPS[op].backends[backend].impl
