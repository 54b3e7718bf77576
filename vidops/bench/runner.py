"""Runs benchmark cases: inputs, warm-up, timing, peak memory, a correctness check, targets.

Per case: dynamo is reset (each compiled provider compiles for its own shapes), the inputs are
built once and shared by the providers, and "reference" runs first (speedups are relative to it).
Per provider: one untimed first call (compilation happens here; its wall time is recorded as
first_call_ms), the timed repetitions, then one more call for peak memory, and the case's
`breakdown` hook when it has one. A provider that raises gets a row with the error instead of
numbers; the run goes on.

Correctness (reported, never asserted): the oracle is the reference run once in float64 on the
same inputs (and output gradients) upcast to float64, modules included. Every provider's `rel_err`
is its relative L2 error against that oracle (outputs and input gradients); `ref_rel_err` is the
same-dtype reference's own error against it, i.e. how hard the case is in this dtype. A provider is
flagged (check "MISMATCH", "!" in the table) when its error exceeds
ERR_FACTOR * max(ref_rel_err, ERR_FLOOR_EPS * eps(dtype)): worse than the reference by more than
the factor, so an ill-conditioned case where the reference itself is far from float64 is not
flagged and a wrong kernel on an easy case is. When the float64 run fails (e.g. out of memory, or
a device without float64), the oracle falls back to the reference's own result (float32 upcast
for half precision) and `oracle` in the record says so.
"""
from __future__ import annotations

import copy
import fnmatch
import math
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Optional

import torch

from . import registry, timing
from .registry import Case

HALF = (torch.float16, torch.bfloat16)
ERR_FACTOR = 4.0      # flagged when worse than ERR_FACTOR x the same-dtype reference's own error
ERR_FLOOR_EPS = 16.0  # ... or than ERR_FACTOR x this many machine epsilons of the dtype, if larger


def error_bound(dtype: str, ref_rel_err: float) -> float:
    """The rel_err above which a provider is flagged: ERR_FACTOR * max(ref_rel_err, floor)."""
    floor = ERR_FLOOR_EPS * torch.finfo(registry.dtype_of(dtype)).eps
    ref = ref_rel_err if math.isfinite(ref_rel_err) else 0.0
    return ERR_FACTOR * max(ref, floor)


@dataclass
class RunConfig:
    device: torch.device
    providers: Optional[list] = None   # fnmatch patterns; None = all ("reference" always runs)
    compile: bool = True
    memory: bool = True
    policy: timing.Policy = field(default_factory=timing.Policy)


def _tensors(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def reset_dynamo() -> None:
    """Forget compiled code between cases (so no compiled provider hits the recompile limit and
    silently falls back to eager). Importing torch._dynamo costs seconds: skip it when nothing
    imported it yet (then nothing was compiled)."""
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()


def select_providers(case: Case, cfg: RunConfig) -> list:
    names = list(case.providers)
    if not cfg.compile:
        names = [n for n in names if "compiled" not in n]
    if cfg.providers:
        names = [n for n in names if n == "reference" or any(fnmatch.fnmatchcase(n, p) for p in cfg.providers)]
    names.sort(key=lambda n: (n != "reference",))  # reference first, the rest in the case's order
    return names


class _Step:
    """The timed callable of one provider: the forward, or forward + backward."""

    def __init__(self, case: Case, fn, inputs: dict, shared: dict):
        self.case, self.fn, self.inputs, self.shared = case, fn, inputs, shared
        self.backward = case.mode != "fwd" and bool(case.grad_inputs)
        self.params = [inputs[n] for n in case.grad_inputs] if self.backward else []
        self.grads = None  # the shared output gradients in this provider's output layouts

    def reset(self):
        for p in self.params:
            p.grad = None

    def __call__(self):
        out = self.fn(self.inputs)
        if self.backward:
            outs = [o for o in _tensors(out) if o.requires_grad]
            if "grads" not in self.shared:  # the same random output gradients for every provider
                g = torch.Generator().manual_seed(1)
                self.shared["grads"] = [torch.randn(o.shape, generator=g).to(o) for o in outs]
            if self.grads is None:  # made in the untimed first call: a layer's output gradient comes in
                # its output's layout (channels_last_3d after a channels_last_3d layer), not converted
                self.grads = [torch.empty_like(o).copy_(g) for o, g in zip(outs, self.shared["grads"])]
            torch.autograd.backward(outs, self.grads)
        return out

    def result(self, out) -> list:
        """What the correctness check compares: the outputs, and the input gradients."""
        res = [o.detach() for o in _tensors(out)]
        return res + [p.grad.detach() for p in self.params if p.grad is not None]


def upcast(value, dtype: torch.dtype = torch.float64):
    """A copy of a case's inputs in `dtype`: floating tensors (keeping requires_grad, as new
    leaves), modules (deep copies), and dicts / lists / tuples of them; anything else as is."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            return value
        return value.detach().to(dtype).requires_grad_(value.requires_grad)
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).to(dtype)
    if isinstance(value, dict):
        return {k: upcast(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(upcast(v, dtype) for v in value)
    return value


def _run_upcast(case: Case, fn, inputs: dict, shared: dict, dtype: torch.dtype) -> list:
    up = upcast(inputs, dtype)
    up_shared = {"grads": [g.to(dtype) for g in shared["grads"]]} if "grads" in shared else {}
    step = _Step(case, fn, up, up_shared)
    out = step()
    return step.result(out)


def _oracle(case: Case, fn, inputs: dict, shared: dict, first_result: list) -> tuple:
    """(the reference's result in float64 to compare every provider with, what it is).
    Falls back to the reference's own result (float32 for half precision) when the float64 run
    fails."""
    dt = registry.dtype_of(case.dtype)
    if dt == torch.float64:
        return [r.clone() for r in first_result], "reference in float64 (the case's dtype)"
    try:
        return _run_upcast(case, fn, inputs, shared, torch.float64), "reference in float64"
    except Exception as exc:
        why = _short_error(exc)
    if dt in HALF:
        return (_run_upcast(case, fn, inputs, shared, torch.float32),
                f"reference in float32 (the float64 run failed: {why})")
    return [r.clone() for r in first_result], f"reference in {case.dtype} (the float64 run failed: {why})"


def rel_err(a: list, b: list) -> float:
    """max over the tensors of ||a - b|| / ||b|| in float64; inf for a shape mismatch or a NaN."""
    if len(a) != len(b):
        return math.inf
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return math.inf
        x, y = x.double(), y.double()
        den = y.norm().item()
        num = (x - y).norm().item()
        err = num / den if den > 0 else num
        if not math.isfinite(err):
            return math.inf
        worst = max(worst, err)
    return worst


def _short_error(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:300] if msg else ''}"


def run_case(case: Case, cfg: RunConfig, copy_gbps: Optional[float], log=None, status=None) -> list:
    """The records of one case, one per selected provider. log(line): a line per provider timed
    (default: stderr); status(provider): called as each provider starts (default: nothing)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    status = status or (lambda name: None)
    device = cfg.device
    reset_dynamo()
    base = {"op": case.op, "case": case.name, "mode": case.mode, "dtype": case.dtype,
            "shape": dict(case.shape), "bytes": case.bytes, "flops": case.flops, "note": case.note,
            "case_targets": [{"describe": t.describe(), "providers": t.providers, "source": t.source}
                             for t in case.targets]}
    names = select_providers(case, cfg)
    records = []
    ref_err = math.inf
    try:
        torch.manual_seed(0)
        inputs = case.setup()
        for n in case.grad_inputs if case.mode != "fwd" else ():
            inputs[n].requires_grad_(True)
    except Exception as exc:
        log(f"  setup failed: {_short_error(exc)}")
        return [dict(base, provider=n, error=f"setup: {_short_error(exc)}") for n in names]
    shared: dict = {}
    oracle = None
    pending = []  # interleaved cases: (name, record, step) checked, timed together after the loop
    for name in names:
        rec = dict(base, provider=name)
        records.append(rec)
        status(name)
        step = _Step(case, case.providers[name], inputs, shared)
        try:
            step.reset()
            t0 = time.perf_counter()
            out = step()
            timing.sync(device)
            rec["first_call_ms"] = (time.perf_counter() - t0) * 1e3
            result = step.result(out)
            if name == "reference":
                oracle, oracle_kind = _oracle(case, case.providers[name], inputs, shared, result)
                ref_err = rel_err(result, oracle)
            if oracle is not None:
                rec["rel_err"] = rel_err(result, oracle)
                rec["ref_rel_err"] = ref_err
                rec["err_bound"] = error_bound(case.dtype, ref_err)
                rec["oracle"] = oracle_kind
                rec["check"] = "ok" if rec["rel_err"] <= rec["err_bound"] else "MISMATCH"
            del out, result
            if case.interleave:
                pending.append((name, rec, step))
                continue
            t = timing.time_fn(step, step.reset, device, cfg.policy)
            _finish(case, cfg, name, rec, step, t, inputs, copy_gbps, log)
        except Exception as exc:
            _record_error(rec, name, step, exc, log)
    if pending:
        _time_interleaved(case, cfg, pending, inputs, copy_gbps, log)
    _speedups(records)
    _targets(case, records)
    return records


INTERLEAVED_ROUNDS = 10
INTERLEAVED_BUDGET_S = 60.0


def _time_interleaved(case: Case, cfg: RunConfig, pending: list, inputs: dict, copy_gbps, log) -> None:
    """Times the providers one call each per round, in a shuffled order, the same number of rounds
    for all (the policy's count for the slowest first call, at least INTERLEAVED_ROUNDS where they
    fit in INTERLEAVED_BUDGET_S), then finishes each record as run_case does."""
    est = max(rec["first_call_ms"] for _, rec, _ in pending) * 1e-3
    per_round = sum(rec["first_call_ms"] for _, rec, _ in pending) * 1e-3
    # at least INTERLEAVED_ROUNDS rounds while they fit in INTERLEAVED_BUDGET_S: the ratio of two
    # long steps needs more samples than either median does (their noise does not cancel)
    rounds = cfg.policy.count(est)
    if cfg.policy.reps is None:  # --reps (and --smoke) fix the count
        rounds = max(rounds, min(INTERLEAVED_ROUNDS, int(INTERLEAVED_BUDGET_S / max(per_round, 1e-6))))
    samples = {name: timing.Timing() for name, _, _ in pending}
    if est < timing.SLOW_CALL_S:  # one more warm-up call each, as the sequential timing makes
        for _, _, step in pending:
            step.reset()
            step()
    # a new order each round (seeded): a call pays for what the one before it left behind (cache
    # contents, memory the allocator returned to the system), so no provider always follows the same one
    order = random.Random(0)
    with timing.gc_paused():
        for _ in range(rounds):
            for name, _, step in order.sample(pending, len(pending)):
                samples[name].times_ms.append(timing.time_once(step, step.reset, cfg.device))
    for name, rec, step in pending:
        try:
            t = samples[name]
            # against every other provider: the median of the per-round ratios (other / this)
            rec["paired_speedups"] = {
                other: timing.Timing([a / b for a, b in zip(o.times_ms, t.times_ms)]).median
                for other, o in samples.items() if other != name}
            if "reference" in rec["paired_speedups"]:
                rec["paired_speedup"] = rec["paired_speedups"]["reference"]
            rec["interleaved_rounds"] = rounds
            _finish(case, cfg, name, rec, step, t, inputs, copy_gbps, log)
        except Exception as exc:
            _record_error(rec, name, step, exc, log)


def _record_error(rec: dict, name: str, step, exc: Exception, log) -> None:
    rec["error"] = _short_error(exc)
    rec["traceback"] = traceback.format_exc(limit=4)
    step.reset()
    log(f"  {name:20s} ERROR {rec['error']}")


def _finish(case: Case, cfg: RunConfig, name: str, rec: dict, step, t, inputs: dict, copy_gbps, log) -> None:
    """The record's timing figures, peak memory and breakdown, from the timing t."""
    device = cfg.device
    rec.update(median_ms=t.median, p20_ms=t.p20, p80_ms=t.p80, reps=t.reps)
    if case.bytes:
        rec["gbps"] = case.bytes / (t.median * 1e-3) / 1e9
        if copy_gbps:
            rec["pct_copy_bw"] = 100 * rec["gbps"] / copy_gbps
    if case.flops:
        rec["tflops"] = case.flops / (t.median * 1e-3) / 1e12
    if cfg.memory:
        rec["peak_mem_bytes"], rec["peak_mem_method"] = timing.peak_memory(step, step.reset, device)
    step.reset()
    if case.breakdown is not None:
        rec["breakdown"] = {str(k): float(v) for k, v in case.breakdown(name, inputs).items()}
        step.reset()
    log(f"  {name:20s} {t.median:10.3f} ms  (p20 {t.p20:.3f}, p80 {t.p80:.3f}, {t.reps} reps)")


def _speedups(records: list) -> None:
    ref = next((r for r in records if r["provider"] == "reference" and "median_ms" in r), None)
    for r in records:
        if ref is not None and "median_ms" in r:
            r["speedup"] = r.get("paired_speedup") or ref["median_ms"] / r["median_ms"]


def _targets(case: Case, records: list) -> None:
    by_name = {r["provider"]: r for r in records}
    for r in records:
        evals = []
        for t in case.targets:
            if not t.applies_to(r["provider"]):
                continue
            measured = None
            if "median_ms" in r:
                if t.kind == "speedup":
                    b = by_name.get(t.baseline)
                    if t.baseline == "reference" and "speedup" in r:
                        measured = r["speedup"]  # paired for interleaved cases (_speedups)
                    elif t.baseline in r.get("paired_speedups", {}):
                        measured = r["paired_speedups"][t.baseline]
                    elif b is not None and "median_ms" in b:
                        measured = b["median_ms"] / r["median_ms"]
                elif t.kind == "copy_bw":
                    measured = r.get("pct_copy_bw")
                elif t.kind == "tflops":
                    measured = r.get("tflops")
                elif t.kind == "peak_memory":
                    measured = r.get("peak_mem_bytes")
                elif t.kind == "layer_share":
                    measured = registry.layer_share(r.get("breakdown"), t.layer)
            if measured is None:
                met = None
            elif t.kind in ("peak_memory", "layer_share"):
                met = measured <= t.value
            else:
                met = measured >= t.value
            evals.append({"kind": t.kind, "value": t.value, "baseline": t.baseline if t.kind == "speedup" else None,
                          "describe": t.describe(), "measured": measured, "met": met, "source": t.source})
        r["targets"] = evals
        r["target"] = "; ".join(e["describe"] for e in evals)
        if not evals:
            r["target_met"] = None
        elif any(e["met"] is False for e in evals):
            r["target_met"] = False
        elif all(e["met"] is True for e in evals):
            r["target_met"] = True
        else:
            r["target_met"] = None


def _ms(v: float) -> str:
    return f"{v:.3g} ms" if v >= 0.01 else f"{v * 1e3:.3g} us"


def case_summary(case: Case, records: list) -> str:
    """One line: the case and each provider's median, speedup and flags."""
    parts = []
    for r in records:
        if r.get("error"):
            parts.append(f"{r['provider']} ERROR {r['error'][:80]}")
            continue
        if "median_ms" not in r:
            continue
        s = f"{r['provider']} {_ms(r['median_ms'])}"
        if r["provider"] != "reference" and r.get("speedup"):
            s += f" {r['speedup']:.3g}x"
        if r.get("check") == "MISMATCH":
            s += f" (rel err {r['rel_err']:.1e}!)"
        if r.get("target_met") is False:
            s += " (target not met)"
        parts.append(s)
    return f"{case.op} | {case.name} | {case.mode} | {case.dtype}: " + "; ".join(parts)


def run(cases: list, cfg: RunConfig, copy_gbps: Optional[float], progress=None) -> list:
    """Every case in turn, with progress: one line per finished case (see vidops._progress; on a
    terminal also a status line with the provider being timed)."""
    from .._progress import Progress

    # each provider gets about the same timing budget: the providers per case weigh the estimate
    weights = [max(1, len(select_providers(c, cfg))) for c in cases]
    progress = progress or Progress(len(cases), weights=weights)
    records = []
    with progress:
        for case in cases:
            progress.start(f"{case.op} | {case.name} | {case.mode} | {case.dtype}")
            recs = run_case(case, cfg, copy_gbps, log=lambda line: None,
                            status=lambda name: progress.update(f"running {name}"))
            records.extend(recs)
            progress.done(case_summary(case, recs))
    return records
