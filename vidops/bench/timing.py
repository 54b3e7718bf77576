"""Timing, copy bandwidth and peak memory for the benchmark harness.

CPU: `time.perf_counter` around each repetition (garbage collection paused), after warm-up.
CUDA: a pair of CUDA events around each repetition, the L2 cache flushed before each one by
zeroing a 256 MiB buffer (outside the events), as `triton.testing.do_bench` does; one
synchronisation at the end. In both, `reset()` (e.g. clearing .grad) runs between repetitions,
outside the timed region. The number of repetitions is `reps` when given, else what fits in
`budget_s` (clamped to [min_reps, max_reps], and to what fits in max_s) judging by one timed
warm-up call (on CPU followed by a few more when short: see time_cpu).

Peak memory of one call (`peak_memory`), beyond what was allocated before it:
  CUDA: `torch.cuda.reset_peak_memory_stats()` and `max_memory_allocated()` minus the baseline
        (tensors of the caching allocator; cuBLAS/cuDNN workspaces are included, as they go through it).
  CPU:  the allocation and free events recorded by `torch.profiler` (profile_memory=True) for the
        call, summed in order; the peak of that running sum. Counts every tensor allocated through
        c10's CPU allocator (ATen, inductor code and at::empty in C++ kernels), not raw
        malloc/new/std::vector inside a kernel (a C++ kernel's scratch buffers that bypass
        c10 do not show). Reported as None with the reason when the profiler API is unavailable.
"""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch


@dataclass
class Timing:
    times_ms: list = field(default_factory=list)
    warmup_ms: Optional[float] = None  # the timed warm-up call (after the first, untimed, one)

    @property
    def reps(self) -> int:
        return len(self.times_ms)

    def quantile(self, q: float) -> float:
        xs = sorted(self.times_ms)
        if not xs:
            return float("nan")
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    @property
    def p20(self) -> float:
        return self.quantile(0.2)

    @property
    def p80(self) -> float:
        return self.quantile(0.8)


@dataclass
class Policy:
    """How many repetitions: `reps` exactly, else as many as fit in budget_s within
    [min_reps, max_reps], but never more than fit in max_s (at least one): a call that takes
    longer than max_s / min_reps is timed fewer than min_reps times rather than stall the run."""
    reps: Optional[int] = None
    budget_s: float = 1.0
    min_reps: int = 3
    max_reps: int = 100
    max_s: float = 30.0

    def count(self, estimate_s: float) -> int:
        if self.reps is not None:
            return max(1, self.reps)
        est = max(estimate_s, 1e-7)
        n = max(self.min_reps, min(self.max_reps, int(self.budget_s / est)))
        return max(1, min(n, int(self.max_s / est)))


SLOW_CALL_S = 1.0  # a call this slow needs no more warm-up
WARMUP_CALLS = 4  # at most this many more warm-up calls (CPU), within WARMUP_S
WARMUP_S = 0.05


def _noop():
    pass


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def gc_paused():
    """No garbage collection inside the timed calls (it would land in whichever call triggers it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_cpu(step: Callable, reset: Optional[Callable] = None, policy: Policy = Policy()) -> Timing:
    """One warm-up call is timed and sets the repetition count (the caller's first call can hold
    one-time costs such as dispatch caches, so it does not), then short calls get up to
    WARMUP_CALLS more within WARMUP_S: a CPU op's first calls also page in its fresh buffers."""
    reset = reset or _noop
    with gc_paused():
        reset()
        t0 = time.perf_counter()
        step()
        est = time.perf_counter() - t0
        out = Timing(warmup_ms=est * 1e3)
        for _ in range(min(WARMUP_CALLS, int(WARMUP_S / max(est, 1e-7)))):
            reset()
            step()
        for _ in range(policy.count(est)):
            reset()
            t0 = time.perf_counter()
            step()
            out.times_ms.append((time.perf_counter() - t0) * 1e3)
    return out


_FLUSH = {}


def _l2_flush_buffer(device: torch.device) -> torch.Tensor:
    key = str(device)
    if key not in _FLUSH:
        _FLUSH[key] = torch.empty(256 * 2**20 // 4, dtype=torch.int32, device=device)
    return _FLUSH[key]


def time_cuda(step: Callable, reset: Optional[Callable] = None, policy: Policy = Policy(),
              device: torch.device = torch.device("cuda"), flush_l2: bool = True) -> Timing:
    reset = reset or _noop
    buf = _l2_flush_buffer(device) if flush_l2 else None
    # estimate from a few warm-up calls
    reset()
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(3):
        reset()
        step()
    torch.cuda.synchronize(device)
    est = (time.perf_counter() - t0) / 3
    n = policy.count(est)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        reset()
        if buf is not None:
            buf.zero_()
        starts[i].record()
        step()
        ends[i].record()
    torch.cuda.synchronize(device)
    return Timing(times_ms=[s.elapsed_time(e) for s, e in zip(starts, ends)], warmup_ms=est * 1e3)


def time_once(step: Callable, reset: Optional[Callable], device: torch.device) -> float:
    """Milliseconds of one call (reset outside it; the device synchronised before and after):
    the sample of interleaved timing, for steps long enough that launch gaps do not matter."""
    (reset or _noop)()
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def time_fn(step: Callable, reset: Optional[Callable], device: torch.device, policy: Policy) -> Timing:
    if device.type == "cuda":
        return time_cuda(step, reset, policy, device)
    return time_cpu(step, reset, policy)


# ---- copy bandwidth ----------------------------------------------------------------------------

def copy_bandwidth(device: torch.device, nbytes: Optional[int] = None, reps: int = 20) -> dict:
    """Achievable memory bandwidth measured now: `dst.copy_(src)` of a large buffer (256 MiB on
    CUDA, 64 MiB on CPU) and an elementwise kernel over the same buffers (`torch.neg(src, out=dst)`,
    an SM kernel on CUDA where copy_ may use the copy engine). Bytes moved = read + write.
    `gbps` is the better of the two: the denominator of every case's "% copy BW"."""
    if nbytes is None:
        nbytes = 256 * 2**20 if device.type == "cuda" else 64 * 2**20
    n = nbytes // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    policy = Policy(reps=reps)
    res = {"buffer_bytes": n * 4, "bytes_moved": 2 * n * 4, "reps": reps}
    for name, fn in (("copy", lambda: dst.copy_(src)), ("elementwise", lambda: torch.neg(src, out=dst))):
        fn()
        t = time_fn(fn, None, device, policy)
        res[f"{name}_ms"] = t.median
        res[f"{name}_gbps"] = 2 * n * 4 / (t.median * 1e-3) / 1e9
    res["gbps"] = max(res["copy_gbps"], res["elementwise_gbps"])
    del src, dst
    return res


# ---- peak memory -------------------------------------------------------------------------------

def peak_memory(step: Callable, reset: Optional[Callable], device: torch.device) -> tuple:
    """(peak bytes allocated by one call of step beyond the baseline, or None; method or error)."""
    reset = reset or _noop
    reset()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return peak, "torch.cuda.max_memory_allocated"
    return _cpu_peak_memory(step)


@contextlib.contextmanager
def _quiet_fd2():
    """Send file descriptor 2 to /dev/null for the block: the profiler's C++ side logs a few lines
    per session there ("profiler_start", "Completed Stage"), which would break the bench's one line
    per case on stderr. The call profiled already ran (and warned) in the timed repetitions."""
    import os
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_memory(step: Callable) -> tuple:
    from torch.profiler import ProfilerActivity, profile

    try:
        with _quiet_fd2():
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                out = step()
                del out
        tree = prof.profiler.kineto_results.experimental_event_tree()
    except Exception as exc:  # the profiler's event tree is a private API: degrade, don't crash
        return None, f"n/a (torch.profiler memory events unavailable: {type(exc).__name__}: {exc})"
    allocs = []
    stack = list(tree)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        extra = node.extra_fields
        if type(extra).__name__.endswith("Allocation") and getattr(extra, "device", None) is not None \
                and extra.device.type == "cpu":
            allocs.append((node.start_time_ns, extra.alloc_size))
    allocs.sort()
    total = peak = 0
    for _, size in allocs:
        total += size
        peak = max(peak, total)
    return peak, "torch.profiler CPU allocation events (c10 allocator)"
