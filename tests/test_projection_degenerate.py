"""PWTP and TSP at degenerate bases: zero, rank-deficient (ranks 0..D for D = 1..4), tiny eps,
near-static clips. Every backend that runs here (reference, cpu, triton under the interpreter) is
checked against an independent oracle: the float64 projection onto the column space of A through
the SVD-based pseudo-inverse (torch.linalg.pinv, its autograd for the gradients), with
tolerances relative to the same-dtype reference's distance to that oracle (tests/tolerance.py).

The bases are built rank-deficient in a way that survives the bilinear upsampling: per low-res
pixel A = B C with C (r x D) shared by the sample, so every upsampled A = (sum w B) C has rank r.
"""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vidops
from vidops.reference.pixelwise_temporal_projection import effective_eps, per_pixel_basis

from conftest import backends_for, run_with_cpu_isa
from tolerance import assert_close_to_reference

PWTP = "pixelwise_temporal_projection"
TSP = "temporal_squeeze"
PWTP_BACKENDS = backends_for(PWTP)
TSP_BACKENDS = backends_for(TSP)


# ---- oracles (float64, pseudo-inverse) ------------------------------------------------------------

def _rtol(dtype):
    """Singular values below sqrt(u) * s_max are the null space: the rounding of an exactly
    rank-deficient basis to `dtype` leaves them at about u * s_max."""
    return math.sqrt(torch.finfo(dtype).eps)


def pwtp_oracle(x, basis, rtol):
    N, C, T, H, W = x.shape
    A = per_pixel_basis(basis, T, H, W)                         # (N, H, W, T, D)
    xs = x.permute(0, 3, 4, 2, 1)                               # (N, H, W, T, C)
    p = xs - A @ (torch.linalg.pinv(A, rtol=rtol) @ xs)
    return p.mean(3).permute(0, 3, 1, 2), p.square().sum((1, 2, 3, 4)) / (H * W * C)


def tsp_oracle(x, basis, rtol):
    N, C, K, H, W = x.shape
    xs = x.transpose(1, 2).reshape(N, K, -1)
    y = torch.linalg.pinv(basis, rtol=rtol) @ xs
    l_proj = torch.linalg.vector_norm(xs - basis @ y, dim=1).mean(1)
    return y.reshape(N, -1, C, H, W).transpose(1, 2), l_proj


def tsp_ridge_lu(x, basis, e):
    """The ridge TSP (lam = e trace/D, e for a zero basis) through torch.linalg.solve: an
    independent float64 evaluation of the same function."""
    N, C, K, H, W = x.shape
    G0 = basis.transpose(1, 2) @ basis
    tr = G0.diagonal(dim1=1, dim2=2).sum(-1)
    lam = e * torch.where(tr > 0, tr / basis.shape[2], torch.ones_like(tr))
    G = G0 + lam[:, None, None] * torch.eye(basis.shape[2], dtype=x.dtype)
    xs = x.transpose(1, 2).reshape(N, K, -1)
    y = torch.linalg.solve(G, basis.transpose(1, 2) @ xs)
    l_proj = torch.linalg.vector_norm(xs - basis @ y, dim=1).mean(1)
    return y.reshape(N, -1, C, H, W).transpose(1, 2), l_proj


def with_grads(fn, x, basis, grads=None, **kw):
    """(outputs, (grad_x, grad_basis)) of fn for cotangents `grads` (drawn when None)."""
    xr, br = x.detach().clone().requires_grad_(), basis.detach().clone().requires_grad_()
    out = fn(xr, br, **kw)
    if grads is None:
        grads = [torch.randn(o.shape, dtype=torch.float64) for o in out]
    g = torch.autograd.grad(out, (xr, br), [gi.to(o.dtype) for gi, o in zip(grads, out)])
    return [o.detach() for o in out], g, grads


# ---- bases --------------------------------------------------------------------------------------------

def rank_basis(N, T, D, r, h, w, gen, cond=4.0):
    """(N, T*D, h, w) float64 whose per-pixel A = B C has rank exactly r (after any bilinear
    upsampling): B (T, r) = a shared well-conditioned B0 plus a small per-pixel perturbation,
    C (r, D) orthonormal rows shared by the sample; singular values in [1/cond, 1] roughly."""
    if r == 0:
        return torch.zeros(N, T * D, h, w, dtype=torch.float64)
    U = torch.linalg.qr(torch.randn(N, T, r, generator=gen, dtype=torch.float64))[0]
    s = torch.exp(-torch.rand(N, r, generator=gen, dtype=torch.float64) * math.log(cond))
    B = (U * s[:, None, :])[:, None, None] + 0.05 * torch.randn(N, h, w, T, r, generator=gen, dtype=torch.float64)
    Cm = torch.linalg.qr(torch.randn(N, D, r, generator=gen, dtype=torch.float64))[0].transpose(1, 2)
    A = B @ Cm[:, None, None]                                   # (N, h, w, T, D)
    return A.permute(0, 3, 4, 1, 2).reshape(N, T * D, h, w)


def tsp_rank_basis(N, K, D, r, gen, cond=4.0):
    return rank_basis(N, K, D, r, 1, 1, gen, cond).reshape(N, K, D, 1, 1)[..., 0, 0]


# ---- the check --------------------------------------------------------------------------------------

def _check_op(op, backends, x, basis, eps, names, scales):
    """Every backend vs the pinv oracle, forward and gradients; the same-dtype reference sets the
    noise. Returns the float64 oracle outputs."""
    dtype = x.dtype
    oracle = pwtp_oracle if op == PWTP else tsp_oracle
    fn = getattr(vidops, op)
    o_out, o_grad, cot = with_grads(lambda a, b: oracle(a, b, _rtol(dtype)), x.double(), basis.double())
    r_out, r_grad, _ = with_grads(fn, x, basis, cot, eps=eps, backend="reference")
    want = list(o_out) + list(o_grad)
    ref_same = list(r_out) + list(r_grad)
    if op == TSP and torch.linalg.matrix_rank(basis.double(), rtol=_rtol(dtype)).min() < basis.shape[-1]:
        # y's derivative along the directions that raise the rank of A is the ridge solution's
        # (~ ||p|| / lam, the pseudo-inverse has none): grad_basis against the float64 reference
        # (float64 noise: the same ridge through torch.linalg.solve). That derivative amplifies
        # rounding by ~ 1/lam: a relative uncertainty of about u / e on top of the noise.
        e = effective_eps(eps, dtype)
        want[3] = with_grads(fn, x.double(), basis.double(), cot, eps=eps, backend="reference")[1][1]
        if dtype == torch.float64:
            ref_same[3] = with_grads(lambda a, b: tsp_ridge_lu(a, b, e), x, basis, cot)[1][1]
        scales = list(scales)
        scales[3] = torch.tensor(max(float(scales[3]), want[3].abs().max().item() / (2 * e)))
        # y's null-space components are the ridge solution's too (same ~ u / e uncertainty)
        scales[0] = torch.tensor(max(float(scales[0]), want[0].abs().max().item() / (2 * e)))
    for b in backends:
        out, grad, _ = with_grads(fn, x, basis, cot, eps=eps, backend=b)
        for got, w, rs, name, sc in zip(list(out) + list(grad), want, ref_same, names, scales):
            assert_close_to_reference(got, w, rs, abs_scale=sc, name=f"{op} {b} {name}",
                                      factor=4.0 if name == "grad_basis" else 2.0)
    return want


def check_pwtp(x, basis, eps, backends=PWTP_BACKENDS):
    amp = x.double().abs().max()
    bs = basis.double().abs().max().clamp(min=1e-300)
    scales = [amp, amp.square(), 4 * amp, 4 * amp * amp / bs]
    return _check_op(PWTP, backends, x, basis, eps, ["pbar", "enopr", "grad_x", "grad_basis"], scales)


def check_tsp(x, basis, eps, backends=TSP_BACKENDS):
    amp = x.double().abs().max() * math.sqrt(x.shape[2])
    bs = basis.double().abs().max().clamp(min=1e-300)
    scales = [amp / bs, amp, 4 / bs, 4 * amp / bs / bs]
    return _check_op(TSP, backends, x, basis, eps, ["y", "l_proj", "grad_x", "grad_basis"], scales)


# ---- finding 1: the zero basis with a tiny eps --------------------------------------------------------

@pytest.mark.parametrize("backend", PWTP_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-30, 1e-16, 1e-15, 1e-12, 1e-9, 1e-6])
def test_pwtp_zero_basis_any_eps(backend, dtype, eps):
    x = torch.randn(1, 2, 4, 6, 5, dtype=dtype).requires_grad_()
    basis = torch.zeros(1, 8, 3, 5, dtype=dtype, requires_grad=True)
    pbar, enopr = vidops.pixelwise_temporal_projection(x, basis, eps=eps, backend=backend)
    torch.testing.assert_close(pbar, x.detach().mean(2))        # nothing is projected out
    torch.testing.assert_close(enopr, x.detach().square().sum(2).mean((1, 2, 3)))
    gx, gb = torch.autograd.grad(pbar.sum() + enopr.sum(), (x, basis))
    torch.testing.assert_close(gx, torch.full_like(x, 1 / 4) + 2 * x.detach() / 60)
    assert gb.abs().max() == 0


@pytest.mark.parametrize("backend", TSP_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-30, 1e-16, 1e-12, 1e-9, 1e-6])
def test_tsp_zero_basis_any_eps(backend, dtype, eps):
    x = torch.randn(1, 2, 5, 4, 3, dtype=dtype).requires_grad_()
    basis = torch.zeros(1, 5, 2, dtype=dtype, requires_grad=True)
    y, l_proj = vidops.temporal_squeeze(x, basis, eps, backend=backend)
    assert (y == 0).all()
    torch.testing.assert_close(l_proj, torch.linalg.vector_norm(x.detach(), dim=2).mean((1, 2, 3)))
    gx, gb = torch.autograd.grad(y.sum() + l_proj.sum(), (x, basis))
    # p = x: grad_x is that of mean_j ||x_j||; A = 0 has no scale, and its gradient is 0 by
    # definition (y = G^{-1} A^T x grows as 1/t along A = t V, so no finite derivative exists)
    nrm = torch.linalg.vector_norm(x.detach(), dim=2, keepdim=True)
    torch.testing.assert_close(gx, x.detach() / nrm / 24)     # 1 / (C H W)
    assert gb.abs().max() == 0


# ---- finding 2: rank-deficient bases ---------------------------------------------------------------

def _proportional(N, T, H, W, gen):
    """D = 3 columns a, 2a, 3a (rank 1)."""
    a = torch.randn(N, T, 1, H, W, generator=gen, dtype=torch.float64)
    return torch.cat([a, 2 * a, 3 * a], 2).reshape(N, 3 * T, H, W)


@pytest.mark.parametrize("dtype,eps", [(torch.float32, 1e-12), (torch.float32, 1e-6), (torch.float64, 1e-30),
                                       (torch.float64, 1e-12)])
def test_pwtp_proportional_columns(dtype, eps):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 8, 5, 6, generator=gen, dtype=torch.float64).to(dtype)
    basis = _proportional(1, 8, 5, 6, gen).to(dtype)
    want = check_pwtp(x, basis, eps)
    # the projection onto the single direction a: ENoPR is that of a D = 1 basis
    a = basis.view(1, 8, 3, 5, 6)[:, :, :1].reshape(1, 8, 5, 6)
    torch.testing.assert_close(want[1], pwtp_oracle(x.double(), a.double(), 1e-8)[1])


@pytest.mark.parametrize("dtype,eps", [(torch.float32, 1e-12), (torch.float32, 1e-6), (torch.float64, 1e-30)])
def test_tsp_proportional_columns(dtype, eps):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 6, 4, 5, generator=gen, dtype=torch.float64).to(dtype)
    a = torch.randn(2, 6, 1, generator=gen, dtype=torch.float64)
    check_tsp(x, torch.cat([a, 2 * a, 3 * a], 2).to(dtype), eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("D", [1, 2, 3, 4])
def test_every_rank(dtype, D):
    gen = torch.Generator().manual_seed(10 * D)
    T = 6
    for r in range(D + 1):
        for eps in (1e-6, 1e-13):
            x = torch.randn(1, 2, T, 3, 4, generator=gen, dtype=torch.float64).to(dtype)
            check_pwtp(x, rank_basis(1, T, D, r, 2, 2, gen).to(dtype), eps)
            xs = torch.randn(2, 2, T, 2, 3, generator=gen, dtype=torch.float64).to(dtype)
            check_tsp(xs, tsp_rank_basis(2, T, D, r, gen).to(dtype), eps)


@pytest.mark.skipif("cpu" not in PWTP_BACKENDS, reason="needs the C++ extension")
def test_rank_deficient_cpu_every_isa():
    """The C++ kernels agree with the oracle at every ISA (each run in its own process)."""
    script = """
import sys, torch, vidops
from vidops.reference.pixelwise_temporal_projection import per_pixel_basis
g = torch.Generator().manual_seed(3)
x = torch.randn(1, 3, 8, 5, 19, generator=g)
a = torch.randn(1, 8, 1, 5, 19, generator=g)
b = torch.cat([a, 2 * a, 3 * a], 2).reshape(1, 24, 5, 19)
pbar, enopr = vidops.pixelwise_temporal_projection(x, b, eps=1e-12, backend="cpu")
A = per_pixel_basis(b.double(), 8, 5, 19)
xs = x.double().permute(0, 3, 4, 2, 1)
p = xs - A @ (torch.linalg.pinv(A, rtol=1e-4) @ xs)
print(float((pbar.double() - p.mean(3).permute(0, 3, 1, 2)).abs().max()), float(enopr), float(p.square().mean() * 8))
"""
    for isa in (None, "base", "avx2"):
        err, enopr, want = map(float, run_with_cpu_isa(script, isa).split())
        assert err < 1e-5 and abs(enopr - want) < 1e-5 * want, (isa, err, enopr, want)


# ---- finding 3: near-static clips -------------------------------------------------------------------

def _dct(T, D):
    t = torch.arange(T, dtype=torch.float64)
    return torch.stack([torch.cos(math.pi * (t + 0.5) * d / T) for d in range(D)], 1)   # (T, D)


@pytest.mark.parametrize("D", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_static_clip_keeps_enopr(dtype, D):
    """A static background (1000) with 1e-3 noise and an exact DCT basis: ENoPR is ~1e-9 of x^T x,
    so x^T x - x^T P x would lose it (float32: all of it); the explicit residual keeps it to the
    float32 reference's own accuracy (a few %, the rounding of A^T x at 1000) and to ~1e-11 in
    float64. The truth is the float64 reference of the same (rounded) input, whose ridge bias
    (lam / 8 * 1000 per frame for the DC column) is part of the definition at eps = 1e-6."""
    gen = torch.Generator().manual_seed(4)
    N, C, T, H, W = 2, 3, 8, 8, 8
    x = (1000 + 1e-3 * torch.randn(N, C, T, H, W, generator=gen, dtype=torch.float64)).to(dtype)
    basis = _dct(T, D).reshape(1, T * D, 1, 1).expand(N, T * D, H, W).contiguous().to(dtype)
    truth = vidops.pixelwise_temporal_projection(x.double(), basis.double(), backend="reference")[1]
    assert truth.min() > 5e-6 and truth.max() < 2e-5
    rel = {}
    for b in PWTP_BACKENDS:
        enopr = vidops.pixelwise_temporal_projection(x, basis, backend=b)[1]
        rel[b] = ((enopr.double() - truth).abs() / truth).max().item()
    if dtype == torch.float32:
        assert rel["reference"] < 0.15, rel
        assert all(r <= 2 * rel["reference"] + 1e-3 for r in rel.values()), rel
    else:
        assert all(r < 1e-9 for r in rel.values()), rel
    check_pwtp(x[:, :, :, :4, :5], basis[:, :, :4, :5], 1e-6)
    # TSP on the same clip (one basis per sample)
    check_tsp(x[:, :, :, :4, :5], _dct(T, D).expand(N, T, D).contiguous().to(dtype), 1e-6)


# ---- property: random shapes, dtypes, ranks, scales ----------------------------------------------------

@st.composite
def _cases(draw):
    T = draw(st.integers(2, 9))
    D = draw(st.integers(1, min(4, T - 1)))
    return dict(
        T=T, D=D, r=draw(st.integers(0, D)),
        C=draw(st.integers(1, 3)), H=draw(st.integers(1, 7)), W=draw(st.integers(1, 9)),
        up=draw(st.booleans()), dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        eps=draw(st.sampled_from([1e-6, 1e-10, 1e-14, 1e-30])),
        xscale=draw(st.sampled_from([1e-3, 1.0, 1e3])), offset=draw(st.sampled_from([0.0, 10.0])),
        bscale=draw(st.sampled_from([1e-3, 1.0, 1e3])), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_random_degenerate_bases_match_pinv_oracle(case):
    gen = torch.Generator().manual_seed(case["seed"])
    T, D, r, C, H, W, dt = case["T"], case["D"], case["r"], case["C"], case["H"], case["W"], case["dtype"]
    h, w = ((H + 1) // 2, (W + 2) // 3) if case["up"] else (H, W)
    x = case["xscale"] * (case["offset"] + torch.randn(1, C, T, H, W, generator=gen, dtype=torch.float64))
    basis = case["bscale"] * rank_basis(1, T, D, r, h, w, gen)
    check_pwtp(x.to(dt), basis.to(dt), case["eps"])
    tb = case["bscale"] * tsp_rank_basis(1, T, D, r, gen)
    check_tsp(x.to(dt), tb.to(dt), case["eps"])


def test_effective_eps_floor():
    """The regulariser scale: eps itself down to 8 machine epsilons of the compute dtype."""
    assert effective_eps(1e-6, torch.float64) == 1e-6 and effective_eps(1e-6, torch.float32) == 1e-6
    assert effective_eps(1e-30, torch.float64) == 8 * 2.0 ** -52
    assert effective_eps(1e-30, torch.float32) == effective_eps(1e-30, torch.float16) == 8 * 2.0 ** -23
