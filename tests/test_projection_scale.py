"""PWTP and TSP do not depend on the scale of the basis.

The projection onto the column space of A is the same for s A (s != 0): pbar, ENoPR, l_proj, the
gradient w.r.t. x and TSP's s y are invariant, and the gradient w.r.t. the basis scales as 1/s.
Property: for random x and bases of every rank 0..D (D = 1..4), on every backend that runs here,
each quantity at basis * 10^k, brought back to the k = 0 frame, agrees with the float64
reference at k = 0 within the noise of the same-dtype reference at k = 0 (so a backend that is
wrong at every scale of its own cannot set its own tolerance), over the whole range the dtype
represents after squaring: k = -150..150 in float64, -18..18 in float32.
"""
import pytest
import torch

import vidops
from vidops.reference.pixelwise_temporal_projection import effective_eps

from conftest import backends_for
from test_projection_degenerate import rank_basis, tsp_rank_basis
from tolerance import assert_close_to_reference

PWTP = "pixelwise_temporal_projection"
TSP = "temporal_squeeze"
EPS = 1e-6
T = 6
# both ends of the range, the exponents where lam = e trace/D would under/overflow unscaled, and a
# few in between; Triton runs under the interpreter here (slow): the ends and one inside
KS = {torch.float64: (-150, -149, -137, -100, -51, -10, -1, 3, 10, 52, 100, 141, 149, 150),
      torch.float32: (-18, -17, -15, -12, -9, -4, -1, 2, 6, 10, 13, 16, 17, 18)}
KS_INTERPRETED = {torch.float64: (-150, -10, 150), torch.float32: (-18, -9, 18)}


def _run(op, x, basis, cot, backend, s):
    """Outputs and gradients of `op` at basis (already multiplied by s), in the k = 0 frame (float64):
    TSP's y times s, grad_basis times s; the y cotangent is s times cot's so the loss is the same."""
    xr, br = x.detach().clone().requires_grad_(), basis.detach().clone().requires_grad_()
    out = getattr(vidops, op)(xr, br, EPS, backend=backend)
    gouts = [c.to(o.dtype) for c, o in zip(cot, out)]
    if op == TSP:
        gouts[0] = (cot[0] * s).to(out[0].dtype)
    gx, gb = torch.autograd.grad(out, (xr, br), gouts)
    res = [o.detach().double() for o in out] + [gx.double(), gb.double() * s]
    if op == TSP:
        res[0] = res[0] * s
    return res


def _cases(op, dtype):
    gen = torch.Generator().manual_seed(7 if op == PWTP else 8)
    for D in range(1, 5):
        for r in range(D + 1):
            if op == PWTP:
                x = torch.randn(1, 2, T, 3, 4, generator=gen, dtype=torch.float64)
                basis = rank_basis(1, T, D, r, 2, 2, gen)
            else:
                x = torch.randn(2, 2, T, 2, 3, generator=gen, dtype=torch.float64)
                basis = tsp_rank_basis(2, T, D, r, gen)
            yield D, r, x.to(dtype), basis


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("op", [PWTP, TSP])
def test_outputs_and_gradients_do_not_depend_on_the_basis_scale(op, dtype):
    names = ["pbar", "enopr", "grad_x", "grad_basis"] if op == PWTP else ["y", "l_proj", "grad_x", "grad_basis"]
    e = effective_eps(EPS, dtype)
    for D, r, x, basis in _cases(op, dtype):
        gen = torch.Generator().manual_seed(100 * D + r)
        with torch.no_grad():
            shapes = [o.shape for o in getattr(vidops, op)(x.double(), basis, EPS, backend="reference")]
        cot = [torch.randn(sh, generator=gen, dtype=torch.float64) for sh in shapes]
        want = _run(op, x.double(), basis, cot, "reference", 1.0)                  # float64, k = 0
        same = _run(op, x, basis.to(dtype), cot, "reference", 1.0)                 # the dtype's noise
        # magnitudes of the summed terms; rank-deficient bases: y's null-space components and the
        # gradient w.r.t. the basis along rank-raising directions carry a relative u / e
        # (the documented ridge uncertainty), on top of the noise; in TSP the y cotangent reaches
        # grad_x through the same null-space solve
        scales = [w.abs().max() for w in want]
        scales[2] = scales[2] + 4 * (1 + x.double().abs().max())
        if r < D:
            scales[3] = scales[3] / (2 * e)
            if op == TSP:
                scales[0] = scales[0] / (2 * e)
                scales[2] = scales[2] / (2 * e)
        for b in backends_for(op):
            ks = KS_INTERPRETED[dtype] if b == "triton" and not torch.cuda.is_available() else KS[dtype]
            for k in ks:
                s = 10.0 ** k
                got = _run(op, x, (basis * s).to(dtype), cot, b, s)
                for g, w, sm, sc, name in zip(got, want, same, scales, names):
                    assert_close_to_reference(g.to(dtype), w, sm, abs_scale=sc, factor=4.0,
                                              name=f"{op} {b} {dtype} D={D} rank={r} basis*1e{k}: {name}")


# near a subnormal basis the basis gradient (~ 1/|A|) lies beyond the dtype's range: the Triton
# interpreter's numpy reports that overflow
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("op", [PWTP, TSP])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_subnormal_and_huge_basis_entries(op, dtype):
    """A basis whose largest entry is subnormal, or near the largest float, still projects (the
    power-of-two scale is clamped to the normal numbers) with finite gradients wherever they are
    representable (near a subnormal basis y and grad_basis ~ 1/|A| overflow in float32 by nature)."""
    fi = torch.finfo(dtype)
    gen = torch.Generator().manual_seed(3)
    if op == PWTP:
        x = torch.randn(1, 2, T, 3, 4, generator=gen, dtype=torch.float64).to(dtype)
        basis = torch.rand(1, 2 * T, 2, 2, generator=gen, dtype=torch.float64) + 0.5
    else:
        x = torch.randn(2, 2, T, 2, 3, generator=gen, dtype=torch.float64).to(dtype)
        basis = torch.rand(2, T, 2, generator=gen, dtype=torch.float64) + 0.5
    for b in backends_for(op):
        for s in (fi.smallest_normal * 2.0 ** -3, fi.max / 4):   # entries in [0.5, 1.5) * s
            br = (basis * s).to(dtype)
            # the projection of the rounded basis (subnormal entries keep only some bits)
            ref = getattr(vidops, op)(x.double(), br.double() / s, EPS, backend="reference")[1]
            br.requires_grad_()
            xr = x.clone().requires_grad_()
            out = getattr(vidops, op)(xr, br, EPS, backend=b)
            gx, gb = torch.autograd.grad(out[1].sum(), (xr, br))
            assert torch.isfinite(gx).all(), (b, s)
            assert s < 1 or torch.isfinite(gb).all(), (b, s)
            torch.testing.assert_close(out[1].double(), ref, rtol=64 * fi.eps, atol=0,
                                       msg=lambda m: f"{op} {b} scale {s:g}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_reference_pow2_scale_is_frexps_power_of_two(dtype):
    """The reference's export-friendly pow2_scale (log2 with a one-step correction) equals
    2^-frexp(m).exponent, clamped to the normal numbers, at every power of two, its neighbours,
    subnormals, the extremes and 0 (the kernels take the same from m's exponent bits)."""
    from vidops.reference.pixelwise_temporal_projection import pow2_scale
    fi = torch.finfo(dtype)
    lo, hi = (-149, 128) if dtype == torch.float32 else (-1074, 1024)
    p2 = 2.0 ** torch.arange(lo, hi, dtype=torch.float64)
    m = torch.cat([p2, p2 * (1 - 2.0 ** -30), p2 * (1 + 2.0 ** -30), p2 * 1.5,
                   torch.tensor([0.0, fi.max, fi.smallest_normal])]).to(dtype)
    m = m[torch.isfinite(m)]
    _, ex = torch.frexp(m)
    lim = 126 if dtype == torch.float32 else 1022
    want = torch.where(m > 0, torch.ldexp(torch.ones_like(m), -ex.clamp(-lim, lim)), torch.zeros_like(m))
    assert torch.equal(pow2_scale(m), want)
