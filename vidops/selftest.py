"""`python -m vidops.selftest`: every op on every backend available on a device, forward and
backward, against the float64 reference.

For each op, backend and dtype a battery of shapes (sizes that cross the GPU kernels' tile
borders, odd sizes, batch 1, every mode and padding) runs the op and the gradients of
sum(out * g) for a random g, and compares them with the float64 reference (vidops.reference,
through autograd) by the rule of vidops._tolerance: the error may be twice the noise of the
reference run in the same dtype, plus 8 eps of the magnitude of the summed terms (the float64
reference evaluated at |inputs|, gradients with |g|; at least |result|).

    python -m vidops.selftest [--device cuda|cpu] [--quick] [--ops a,b] [--backends a,b]

Prints progress lines, then a table (op, backend, dtype, cases, worst error / tolerance, pass),
and exits 1 when any case fails. Default device: cuda when available, else cpu. The same cases
(one small one per op) are the probes of vidops._probe.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Callable, Optional

import torch

from ._tolerance import compare

HALF = (torch.bfloat16, torch.float16)


@dataclasses.dataclass
class Case:
    label: str
    params: dict  # shape and mode parameters, passed to the spec's make/call/reference


@dataclasses.dataclass
class Spec:
    op: str
    make: Callable       # (params, dtype, device, generator) -> dict of input tensors
    call: Callable       # (inputs, params, backend) -> tuple of outputs
    reference: Callable  # (inputs, params) -> tuple of outputs (plain PyTorch, differentiable)
    grad_inputs: tuple   # names of the inputs that get gradients
    battery: Callable    # (quick) -> list of Case
    probe: dict          # params of the probe case

    def probe_case(self) -> Case:
        return Case("probe", self.probe)


@dataclasses.dataclass
class Result:
    op: str
    backend: str
    dtype: torch.dtype
    label: str
    worst: float  # worst error / tolerance over the outputs and gradients
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.worst <= 1.0

    def summary(self) -> str:
        return f"{self.label} {str(self.dtype).replace('torch.', '')}: {self.detail}"


def _randn(shape, gen, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


def _weight_dtype(dtype):
    return torch.float32 if dtype in HALF else dtype


# ---- the ops -----------------------------------------------------------------------------------

def _mbp_make(p, dtype, device, gen):
    from .ops.log_kernel import log_kernel, temporal_band_pass_init

    N, C, T, H, W, k = p["shape"]
    sw = log_kernel(1.1, k).double().expand(C, k, k) * (1 + 0.05 * _randn((C, k, k), gen))
    tw = temporal_band_pass_init().double().expand(C, 3) + 0.05 * _randn((C, 3), gen)
    wd = _weight_dtype(dtype)
    return {"x": _randn((N, C, T, H, W), gen).to(device, dtype), "sw": sw.to(device, wd).contiguous(),
            "tw": tw.to(device, wd).contiguous()}


def _mbp_call(i, p, backend):
    from . import motion_band_pass

    return (motion_band_pass(i["x"], i["sw"], i["tw"], p["stride"], p["sp"], p["tp"], backend=backend),)


def _mbp_ref(i, p):
    from .reference.motion_band_pass import motion_band_pass

    return (motion_band_pass(i["x"], i["sw"], i["tw"], p["stride"], p["sp"], p["tp"]),)


def _mbp_battery(quick):
    shapes = [(1, 2, 5, 9, 11, 3), (2, 3, 7, 17, 33, 5)] if quick else \
        [(1, 2, 5, 9, 11, 3), (2, 3, 7, 17, 33, 5), (1, 2, 8, 70, 130, 7), (1, 1, 9, 12, 13, 9),
         (1, 2, 6, 23, 19, 11), (1, 1, 3, 1, 5, 3)]
    combos = [(sp, tp, stride) for sp in ("reflect", "zeros") for tp, stride in (("replicate", 1), ("valid", 3), ("zeros", 2))]
    if quick:
        combos = [("reflect", "replicate", 1), ("zeros", "valid", 3), ("reflect", "zeros", 2)]
    out = []
    for s in shapes:
        for sp, tp, stride in combos:
            if quick and s != shapes[0] and sp == "zeros":
                continue
            if sp == "reflect" and min(s[3], s[4]) <= s[5] // 2:
                continue  # reflect padding needs the frame larger than the kernel radius
            out.append(Case(f"{s} {sp} {tp} s={stride}", dict(shape=s, sp=sp, tp=tp, stride=stride)))
    return out


def _bq_make(p, dtype, device, gen):
    N, C, T, H, W, k = p["shape"]
    return _mbp_make(dict(shape=(N, C, T, H, W, k)), dtype, device, gen)


def _bq_call(i, p, backend):
    from . import busy_quiet

    return busy_quiet(i["x"], i["sw"], i["tw"], p["quiet"], p["scale"], backend=backend)


def _bq_ref(i, p):
    from .reference.busy_quiet import busy_quiet

    return busy_quiet(i["x"], i["sw"], i["tw"], p["quiet"], p["scale"])


def _bq_battery(quick):
    shapes = [(1, 3, 6, 16, 20, 9)] if quick else [(1, 3, 6, 16, 20, 9), (2, 3, 9, 70, 130, 9), (1, 2, 3, 11, 13, 7)]
    return [Case(f"{s} quiet={q} scale={sc}", dict(shape=s, quiet=q, scale=sc))
            for s in shapes for q in ("first", "mean_minus_busy") for sc in (None, 0.625)]


def _dwc_make(p, dtype, device, gen):
    N, C, T, H, W = p["shape"]
    k = p["k"]
    return {"x": _randn((N, C, T, H, W), gen).to(device, dtype),
            "w": (0.1 * _randn((C, *k), gen)).to(device, _weight_dtype(dtype))}


def _dwc_call(i, p, backend):
    from . import depthwise_conv3d

    return (depthwise_conv3d(i["x"], i["w"], backend=backend),)


def _dwc_ref(i, p):
    from .reference.depthwise_conv3d import depthwise_conv3d

    return (depthwise_conv3d(i["x"], i["w"]),)


def _dwc_battery(quick):
    cases = [((1, 3, 5, 9, 11), (3, 3, 3)), ((2, 2, 8, 14, 13), (3, 7, 7))]
    if not quick:
        cases += [((1, 4, 8, 28, 30), (3, 7, 7)), ((1, 1, 3, 17, 19), (3, 9, 9)), ((1, 2, 1, 5, 70), (1, 3, 5))]
    return [Case(f"{s} k={k}", dict(shape=s, k=k)) for s, k in cases]


def _tr_make(p, dtype, device, gen):
    return {"f": _randn(p["shape"], gen).to(device, dtype)}


def _tr_call(i, p, backend):
    from . import temporal_relation

    return (temporal_relation(i["f"], backend=backend),)


def _tr_ref(i, p):
    from .reference.temporal_relation import temporal_relation

    return (temporal_relation(i["f"]),)


def _tr_battery(quick):
    shapes = [(1, 5, 4, 3, 5), (2, 8, 8, 7, 9)] if quick else \
        [(1, 5, 4, 3, 5), (2, 8, 8, 7, 9), (1, 24, 8, 28, 28), (1, 3, 2, 1, 1), (1, 7, 11, 13, 17), (1, 4, 16, 5, 6)]
    return [Case(f"{s}", dict(shape=s)) for s in shapes]


def _pwtp_make(p, dtype, device, gen):
    from .nn.pixelwise_temporal_projection import dct_basis

    N, C, T, H, W, D, h, w = p["shape"]
    basis = dct_basis(T, D).double().reshape(1, T * D, 1, 1) + 0.3 * _randn((N, T * D, h, w), gen)
    return {"x": _randn((N, C, T, H, W), gen).to(device, dtype), "basis": basis.to(device, _weight_dtype(dtype))}


def _pwtp_call(i, p, backend):
    from . import pixelwise_temporal_projection

    return tuple(pixelwise_temporal_projection(i["x"], i["basis"], 1e-6, backend=backend))


def _pwtp_ref(i, p):
    from .reference.pixelwise_temporal_projection import pixelwise_temporal_projection

    return tuple(pixelwise_temporal_projection(i["x"], i["basis"], 1e-6))


def _pwtp_battery(quick):
    shapes = [(1, 3, 4, 8, 8, 1, 2, 2), (2, 2, 8, 9, 13, 3, 3, 4)] if quick else \
        [(1, 3, 4, 8, 8, 1, 2, 2), (2, 2, 8, 9, 13, 3, 3, 4), (1, 3, 8, 35, 37, 2, 5, 5),
         (1, 1, 5, 17, 70, 4, 3, 9), (1, 2, 16, 20, 24, 3, 5, 6), (1, 1, 3, 1, 1, 1, 1, 1)]
    return [Case(f"{s[:5]} D={s[5]} basis {s[6]}x{s[7]}", dict(shape=s)) for s in shapes]


def _tsp_make(p, dtype, device, gen):
    from .nn.temporal_squeeze import tent_basis

    N, C, K, H, W, D = p["shape"]
    basis = tent_basis(K, D).double().expand(N, K, D) + 0.1 * _randn((N, K, D), gen)
    return {"x": _randn((N, C, K, H, W), gen).to(device, dtype), "basis": basis.to(device, _weight_dtype(dtype))}


def _tsp_call(i, p, backend):
    from . import temporal_squeeze

    return tuple(temporal_squeeze(i["x"], i["basis"], 1e-6, backend=backend))


def _tsp_ref(i, p):
    from .reference.temporal_squeeze import temporal_squeeze

    return tuple(temporal_squeeze(i["x"], i["basis"], 1e-6))


def _tsp_battery(quick):
    shapes = [(1, 3, 4, 8, 8, 1), (2, 2, 10, 9, 13, 3)] if quick else \
        [(1, 3, 4, 8, 8, 1), (2, 2, 10, 9, 13, 3), (1, 3, 10, 35, 37, 2), (1, 1, 7, 17, 70, 4), (1, 2, 16, 5, 6, 3)]
    return [Case(f"{s[:5]} D={s[5]}", dict(shape=s)) for s in shapes]


def _ra_make(p, dtype, device, gen):
    N, d, L = p["shape"]
    s = d ** -0.25
    out = {"q": (_randn((N, d, L), gen) * s).to(device, dtype), "v": _randn((N, d, L), gen).to(device, dtype)}
    if not p.get("shared", True):
        out["k"] = (_randn((N, d, L), gen) * s).to(device, dtype)
    return out


def _ra_call(i, p, backend):
    from . import region_attention

    return (region_attention(i["q"], i["v"], i.get("k"), p["mode"], backend=backend),)


def _ra_ref(i, p):
    from .reference.region_attention import region_attention

    return (region_attention(i["q"], i["v"], i.get("k"), p["mode"]),)


def _ra_battery(quick):
    modes = ("softmax", "cosine_softmax", "relu", "dot", "cosine_relu")
    shapes = [((1, 16, 37), True), ((2, 32, 70), False)] if quick else \
        [((1, 16, 37), True), ((2, 32, 70), False), ((1, 64, 130), True), ((1, 100, 67), True),
         ((1, 256, 200), True), ((1, 512, 65), True)]
    return [Case(f"{s} {'k=q' if shared else 'k'} {m}", dict(shape=s, mode=m, shared=shared))
            for s, shared in shapes for m in modes]


SPECS = {
    "motion_band_pass": Spec("motion_band_pass", _mbp_make, _mbp_call, _mbp_ref, ("x", "sw", "tw"),
                             _mbp_battery, dict(shape=(1, 2, 5, 9, 11, 3), sp="reflect", tp="replicate", stride=1)),
    "busy_quiet": Spec("busy_quiet", _bq_make, _bq_call, _bq_ref, ("x", "sw", "tw"), _bq_battery,
                       dict(shape=(1, 2, 6, 10, 12, 5), quiet="mean_minus_busy", scale=0.625)),
    "depthwise_conv3d": Spec("depthwise_conv3d", _dwc_make, _dwc_call, _dwc_ref, ("x", "w"), _dwc_battery,
                             dict(shape=(1, 2, 4, 6, 7), k=(3, 3, 3))),
    "temporal_relation": Spec("temporal_relation", _tr_make, _tr_call, _tr_ref, ("f",), _tr_battery,
                              dict(shape=(1, 5, 4, 3, 5))),
    "pixelwise_temporal_projection": Spec("pixelwise_temporal_projection", _pwtp_make, _pwtp_call, _pwtp_ref,
                                          ("x", "basis"), _pwtp_battery, dict(shape=(1, 2, 4, 6, 7, 2, 2, 3))),
    "temporal_squeeze": Spec("temporal_squeeze", _tsp_make, _tsp_call, _tsp_ref, ("x", "basis"), _tsp_battery,
                             dict(shape=(1, 2, 5, 6, 7, 2))),
    "region_attention": Spec("region_attention", _ra_make, _ra_call, _ra_ref, ("q", "v", "k"), _ra_battery,
                             dict(shape=(1, 16, 37), mode="softmax", shared=True)),
}


# ---- running a case ----------------------------------------------------------------------------

def _grads(outputs, inputs, names, weights):
    outs = [o for o in outputs if o.is_floating_point() and o.requires_grad]
    if not outs:
        return {}
    loss = sum((o.float() * w.to(o.device, torch.float32)).sum() if o.dtype in HALF else (o * w.to(o.device, o.dtype)).sum()
               for o, w in zip(outs, weights))
    ts = [inputs[n] for n in names if n in inputs]
    gs = torch.autograd.grad(loss, ts, allow_unused=True)
    return {n: g for n, g in zip([n for n in names if n in inputs], gs)}


def _reference_device(device: torch.device, dtype: torch.dtype) -> torch.device:
    """The same-dtype reference runs where the result was computed (CPU PyTorch lacks some half
    kernels), the float64 one on the CPU."""
    return device


def run_case(spec: Spec, case: Case, backend: str, device, dtype: torch.dtype, backward: bool = True,
             seed: int = 0) -> Result:
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    base = spec.make(case.params, torch.float64, torch.device("cpu"), gen)
    grad_names = tuple(n for n in spec.grad_inputs if n in base) if backward else ()

    def inputs_as(dt, dev):
        out = {}
        for n, t in base.items():
            target = dt
            if n not in ("x", "q", "v", "k", "f") and dt in HALF:
                target = torch.float32  # weights and bases stay float32 for half inputs
            out[n] = t.detach().to(dev, target).requires_grad_(n in grad_names)
        return out

    try:
        got_in = inputs_as(dtype, device)
        got = spec.call(got_in, case.params, backend)
        ref_in = inputs_as(torch.float64, torch.device("cpu"))
        ref = spec.reference(ref_in, case.params)
        same_in = inputs_as(dtype, _reference_device(device, dtype))
        same = spec.reference(same_in, case.params)
        gw = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in ref]
        # the magnitude of the summed terms: the float64 reference at |inputs| (and |g|), at least |ref64|
        abs_in = {n: t.detach().abs().requires_grad_(n in grad_names) for n, t in ref_in.items()}
        ref_abs = spec.reference(abs_in, case.params)
        worst, detail = 0.0, "ok"
        checks = []
        for n, (a, b, c, m) in enumerate(zip(got, ref, same, ref_abs)):
            checks.append(compare(a, b, c, torch.maximum(m.detach().abs(), b.detach().abs()), name=f"output {n}"))
        if grad_names:
            g_got = _grads(got, got_in, grad_names, gw)
            g_ref = _grads(ref, ref_in, grad_names, gw)
            g_same = _grads(same, same_in, grad_names, gw)
            g_abs = _grads(ref_abs, abs_in, grad_names, [w.abs() for w in gw])
            for n in grad_names:
                if g_ref.get(n) is None:
                    continue
                if g_got.get(n) is None:
                    checks.append(dataclasses.replace(compare(g_ref[n], g_ref[n]), name=f"grad {n}",
                                                      problem="no gradient"))
                    continue
                scale = g_ref[n].abs() if g_abs.get(n) is None else torch.maximum(g_abs[n].abs(), g_ref[n].abs())
                checks.append(compare(g_got[n], g_ref[n], g_same[n], scale, name=f"grad {n}"))
        for c in checks:
            if c.ratio > worst or (c.ratio == worst and not c.ok):
                worst = c.ratio
                detail = c.message() if not c.ok else f"{c.name} {c.err:.2e}/{c.bound:.2e}"
        return Result(spec.op, backend, dtype, case.label, worst, detail)
    except Exception as exc:
        return Result(spec.op, backend, dtype, case.label, float("inf"), f"raised {type(exc).__name__}: {exc}")


# ---- the command -------------------------------------------------------------------------------

def dtypes_for(device: torch.device, backend: str) -> tuple:
    if device.type == "cuda" and backend != "reference":
        return (torch.float32, torch.bfloat16, torch.float16)
    return (torch.float32,)


def backends_for(op: str, device: torch.device) -> list:
    from . import _dispatch

    return [b for b, why in _dispatch.reasons(op, device).items() if why is None and b != "reference"] or ["reference"]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def run(device=None, quick=False, ops=None, backends=None, out=sys.stdout, backward=True) -> list:
    """Run the battery; returns the table rows [(op, backend, dtype, cases, worst, failures)]."""
    import vidops  # noqa: F401  (registers the ops)

    device = torch.device(device or default_device())
    plan = []
    for op in ops or SPECS:
        spec = SPECS[op]
        for backend in backends_for(op, device):
            if backends and backend not in backends:
                continue
            for dtype in dtypes_for(device, backend):
                plan.append((spec, backend, dtype, spec.battery(quick)))
    total = sum(len(c) for *_, c in plan)
    print(f"vidops.selftest on {device}: {total} cases ({'quick' if quick else 'full'} battery)", file=out, flush=True)
    t0 = time.perf_counter()
    done, rows, last = 0, [], t0
    for spec, backend, dtype, cases in plan:
        results = []
        for case in cases:
            results.append(run_case(spec, case, backend, device, dtype, backward))
            done += 1
            now = time.perf_counter()
            if now - last > 2.0 or done == total:
                print(f"  {done}/{total} cases, {now - t0:.1f} s", file=out, flush=True)
                last = now
        worst = max((r.worst for r in results), default=0.0)
        rows.append((spec.op, backend, dtype, len(results), worst, [r for r in results if not r.ok]))
    print(format_table(rows), file=out)
    print(f"{total} cases in {time.perf_counter() - t0:.1f} s", file=out, flush=True)
    return rows


def format_table(rows) -> str:
    hdr = f"{'op':30s} {'backend':9s} {'dtype':9s} {'cases':>5s} {'worst err/tol':>13s} pass"
    lines = [hdr, "-" * len(hdr)]
    for op, backend, dtype, n, worst, fails in rows:
        lines.append(f"{op:30s} {backend:9s} {str(dtype).replace('torch.', ''):9s} {n:>5d} {worst:>13.3f} "
                     f"{'yes' if not fails else 'NO'}")
    fails = [f for *_, fs in rows for f in fs]
    if fails:
        lines.append(f"{len(fails)} failing case(s):")
        for r in fails:
            lines.append(f"  {r.op} {r.backend} {r.summary()}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidops.selftest", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--quick", action="store_true", help="a few cases per op")
    p.add_argument("--ops", default="", help=f"comma-separated (default all: {', '.join(SPECS)})")
    p.add_argument("--backends", default="", help="comma-separated (default: every available one)")
    p.add_argument("--forward-only", action="store_true")
    a = p.parse_args(argv)
    ops = [o for o in a.ops.split(",") if o] or None
    for op in ops or ():
        if op not in SPECS:
            p.error(f"unknown op {op!r} (known: {', '.join(SPECS)})")
    rows = run(a.device, a.quick, ops, [b for b in a.backends.split(",") if b] or None,
               backward=not a.forward_only)
    return 1 if any(fails for *_, fails in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
