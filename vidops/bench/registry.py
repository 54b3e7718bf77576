"""Benchmark cases: what `python -m vidops.bench` (and `pytest bench/`) run.

Adding an op
------------
Write `vidops/bench/cases/<op>.py` with

    def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list[Case]

and add "<op>" to `CASE_MODULES` below. `vidops/bench/cases/motion_band_pass.py` is the worked
example. The function only *describes* cases: `Case.setup` builds the inputs later, once per case,
outside the timed region, so listing cases is cheap. `options` (optional third parameter) carries
the dtypes and modes asked for and `smoke` (tiny shapes for the harness's own tests); a module
that ignores it still works: the harness filters the cases it returns by dtype and mode.

Shapes: `quick` means the small CPU shapes the CPU targets are stated on; on CPU the harness uses
the quick shapes even without --quick (full shapes take minutes per case on 2 cores), and the
full shapes on CUDA. `options.smoke` asks for the tiniest shapes that still exercise every code
path (used by tests/test_bench_cli.py and by `pytest bench/` by default).

Providers (`Case.providers`, name -> fn(inputs) -> output(s)):
  "reference"            the authors' formulation in eager mode; speedups are relative to it
                         (the harness always runs it, whatever --providers says);
  "reference_compiled"   the same under torch.compile (use `compiled()` below; any provider
                         whose name contains "compiled" is skipped by --no-compile);
  other plain-PyTorch formulations (e.g. "temporal_first");
  "vidops_<backend>"     each vidops backend that can run on the device (`vidops_providers()`).

Modes: "fwd" times `fn(inputs)`. "fwd+bwd" with `grad_inputs` set times `fn(inputs)` then
`torch.autograd.backward(outputs, grads)` with the named inputs requiring grad (their .grad is
cleared between repetitions, outside the timed region; `grads` are fixed random tensors shaped
like the outputs). A fwd+bwd case with empty `grad_inputs` is timed as is (the provider does its
own backward).

Per-layer breakdown (for whole models): a case may set `breakdown(provider, inputs)` returning
`{layer name: milliseconds per step}` for that provider, in the model's layer order (e.g. medians
of per-layer timings taken with hooks or by running the layers one by one). The harness calls it
once per provider after the timed repetitions, stores it as the record's `breakdown` field
(JSON: an object, CSV: a JSON string), and the chart draws a stacked bar per provider (the part of
`median_ms` the layers do not cover shown as "other").

`bytes` is the minimum traffic of the op (inputs read once, outputs written once; for fwd+bwd the
forward's plus the backward's) for GB/s and the fraction of the copy bandwidth measured in the same
run; `flops` (optional) gives TFLOP/s. `targets` are the goals the report shows next to the
measured values (never asserted).
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

CASE_MODULES = ("motion_band_pass", "busy_quiet", "pixelwise_temporal_projection", "temporal_relation",
                "temporal_squeeze", "region_attention", "region_non_local", "depthwise_conv3d", "temporal_shift",
                "x3d", "models")
# Whole models take minutes per case on a CPU: they run when asked for (`--ops models`), not by default.
OPT_IN = ("models",)

MODES = ("fwd", "fwd+bwd")


@dataclass
class Target:
    """A goal shown next to a measurement (never asserted).

    kind:
      "speedup"      median time of `baseline` / median time of the provider >= value;
      "copy_bw"      the provider's GB/s as a percentage of the measured copy bandwidth >= value;
      "tflops"       the provider's TFLOP/s (the case's `flops` / median time) >= value;
      "peak_memory"  peak memory allocated by one call (bytes) <= value;
      "layer_share"  `layer`'s part of the provider's per-layer breakdown (percent of the step) <= value.
    providers: fnmatch pattern of the providers the target applies to (default: every vidops backend).
    source: where the target comes from (the goal and its reason), for the JSON record.
    """
    kind: str
    value: float
    baseline: str = "reference"
    providers: str = "vidops_*"
    source: str = ""
    layer: str = ""

    def applies_to(self, provider: str) -> bool:
        return fnmatch.fnmatchcase(provider, self.providers)

    def describe(self) -> str:
        if self.kind == "speedup":
            return f">={self.value:g}x {self.baseline}"
        if self.kind == "copy_bw":
            return f">={self.value:g}% copy BW"
        if self.kind == "peak_memory":
            return f"mem<={self.value / 2**20:.3g}MiB"
        if self.kind == "tflops":
            return f">={self.value:g} TFLOP/s"
        if self.kind == "layer_share":
            return f"{self.layer}<={self.value:g}% of the step"
        return f"{self.kind} {self.value:g}"


def layer_share(breakdown, layer: str):
    """`layer`'s percent of a per-layer breakdown {layer: ms} (None without one)."""
    if not breakdown or layer not in breakdown:
        return None
    total = sum(breakdown.values())
    return 100.0 * breakdown[layer] / total if total > 0 else None


@dataclass
class CaseOptions:
    """What the harness asks of a case module (all optional for the module to honour)."""
    dtypes: tuple = ("float32",)
    modes: tuple = MODES
    smoke: bool = False


@dataclass
class Case:
    op: str                      # the vidops op, e.g. "motion_band_pass"
    name: str                    # shape label, e.g. "stem N=8 C=3 T=24 224x224 k=9"
    mode: str                    # "fwd" or "fwd+bwd"
    dtype: str                   # "float32", "bfloat16", ...
    setup: Callable[[], dict]    # builds the inputs once (not timed)
    providers: dict = field(default_factory=dict)  # provider name -> fn(inputs) -> anything
    bytes: int = 0
    flops: Optional[int] = None
    shape: dict = field(default_factory=dict)  # the shape parameters, for the JSON/CSV record
    grad_inputs: tuple = ()      # fwd+bwd: names of the inputs that require grad
    targets: list = field(default_factory=list)  # list[Target]
    note: str = ""               # free text for the record (e.g. why CPU uses small shapes)
    # optional: breakdown(provider_name, inputs) -> {layer name: ms per step}, called once per
    # provider after its timing (not timed itself); stored as the record's "breakdown"
    breakdown: Optional[Callable[[str, dict], dict]] = None
    # time the providers in alternation (one call each per round) instead of one after the other:
    # for steps long enough that the machine's drift over a provider's run exceeds the difference
    # being measured (whole models); the speedup is then the median of the per-round ratios
    interleave: bool = False


# ---- helpers for case modules ----------------------------------------------------------------

def compiled(fn: Callable, **compile_kwargs) -> Callable:
    """`torch.compile(fn)` built on first call (so listing cases never compiles).

    dynamic=False: every case is compiled for its own static shapes (the harness resets dynamo
    between cases, so the recompile limit is never hit and no case silently falls back to eager).
    A compile failure raises on the first call; the harness records it in the row.
    """
    compile_kwargs.setdefault("dynamic", False)
    state = {}

    def call(*args, **kwargs):
        if "fn" not in state:
            state["fn"] = torch.compile(fn, **compile_kwargs)
        return state["fn"](*args, **kwargs)

    call.__name__ = f"compiled_{getattr(fn, '__name__', 'fn')}"
    return call


def vidops_backends(op: str, device: torch.device) -> list:
    """The vidops backends (not "reference") that can run `op` on `device`.

    Triton under its interpreter (TRITON_INTERPRET=1 on CPU) is left out: it is a test path, not
    something to time.
    """
    from .. import _dispatch, _triton

    out = []
    for name, why in _dispatch.reasons(op, device).items():
        if why is not None or name == "reference":
            continue
        if name == "triton" and device.type != "cuda" and _triton.interpreter():
            continue
        out.append(name)
    return out


def vidops_providers(op: str, device: torch.device, make: Callable[[str], Callable]) -> dict:
    """{"vidops_<backend>": make(backend)} for every backend that can run `op` on `device`."""
    return {f"vidops_{b}": make(b) for b in vidops_backends(op, device)}


def dtype_of(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"vidops.bench: unknown dtype {name!r}")
    return dt


def itemsize(dtype: str) -> int:
    return torch.empty((), dtype=dtype_of(dtype)).element_size()


# ---- loading ---------------------------------------------------------------------------------

def case_module(op: str):
    return importlib.import_module(f"vidops.bench.cases.{op}")


def load_cases(ops, device: torch.device, quick: bool, options: CaseOptions) -> list:
    """Every case of the named ops (all of CASE_MODULES when ops is None), filtered by the
    options' dtypes and modes."""
    out = []
    for op in (ops or [m for m in CASE_MODULES if m not in OPT_IN]):
        if op not in CASE_MODULES:
            raise ValueError(f"vidops.bench: unknown op {op!r} (known: {', '.join(CASE_MODULES)})")
        fn = case_module(op).cases
        if len(inspect.signature(fn).parameters) >= 3:
            got = fn(device, quick, options)
        else:
            got = fn(device, quick)
        out.extend(c for c in got if c.dtype in options.dtypes and c.mode in options.modes)
    return out
