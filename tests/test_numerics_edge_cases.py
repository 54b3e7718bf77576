"""Finite inputs that used to give inf, NaN or silently wrong numbers, each against float64 truth:
the reference motion band-pass in half precision, the cosine modes of region_attention at huge
|q|, the cpu softmax backward with shared keys in saturated attention, log_kernel at extreme
sigma, mgda_alpha at extreme gradient scales and its argument checks, scale_schedule's checks."""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

import vidops
from conftest import device_backend_params
from tolerance import assert_close_to_reference, eps
from vidops.reference.motion_band_pass import motion_band_pass_backward as mbp_backward64

shared_keys = importlib.import_module("vidops.ops._region_attention_shared_keys")
log_kernel_mod = importlib.import_module("vidops.ops.log_kernel")


# ---- motion band-pass, reference backend, half precision -----------------------------------------

def _stem(dtype):
    torch.manual_seed(0)
    x = (torch.randn(1, 3, 6, 16, 16, dtype=torch.float64) * 30).to(dtype)
    sw = vidops.log_kernel(1.1, 9).expand(3, 9, 9).contiguous() + torch.randn(3, 9, 9) / 100
    tw = vidops.temporal_band_pass_init().expand(3, 3).contiguous() + torch.randn(3, 3) / 10
    g = torch.randn(1, 3, 2, 16, 16, dtype=torch.float64).to(dtype)
    return x, sw, tw, g


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16), ids=str)
def test_reference_mbp_half_precision_accumulates_in_float32(dtype):
    """The stem's temporal-weight gradient (~2.7e5 for this input, beyond float16's 65504) was
    +-inf in float16 on the reference backend; the half path now computes in float32 and returns
    x's dtype for the output and grad_x, the weights' dtype (float32) for the weight gradients."""
    x, sw, tw, g = _stem(dtype)
    args = (3, "reflect", "valid")
    xr, swr, twr = x.clone().requires_grad_(), sw.clone().requires_grad_(), tw.clone().requires_grad_()
    out = vidops.motion_band_pass(xr, swr, twr, *args, backend="reference")
    out.backward(g)
    assert out.dtype == dtype and xr.grad.dtype == dtype
    assert swr.grad.dtype == torch.float32 and twr.grad.dtype == torch.float32
    # truth: float64 on the same (half-rounded) inputs; scale: the same sums over |terms|
    x64, sw64, tw64, g64 = (t.double() for t in (x, sw, tw, g))
    from vidops.reference.motion_band_pass import motion_band_pass as mbp64
    want = mbp64(x64, sw64, tw64, *args)
    gx, gs, gt = mbp_backward64(g64, x64, sw64, tw64, *args)
    assert gt.abs().max() > 65504                       # the case: the true value overflows fp16
    abs_out = mbp64(x64.abs(), sw64.abs(), tw64.abs(), *args)
    agx, ags, agt = mbp_backward64(g64.abs(), x64.abs(), sw64.abs(), tw64.abs(), *args)
    # half outputs: one rounding to the dtype on top of float32 accumulation
    half = 2 * eps(dtype)
    for name, got, w, scale in (("out", out, want, abs_out), ("grad_x", xr.grad, gx, agx)):
        assert torch.isfinite(got).all(), name
        err = (got.double() - w).abs()
        assert (err <= half * w.abs() + 8 * eps(torch.float32) * scale.abs().max()).all(), name
    for name, got, w, scale in (("grad_spatial_weight", swr.grad, gs, ags), ("grad_temporal_weight", twr.grad, gt, agt)):
        assert_close_to_reference(got, w, None, scale, name=name)


# ---- region_attention cosine modes at huge |q| ----------------------------------------------------

RA_BACKENDS = device_backend_params("region_attention")


def _cosine_truth(q, v, k, g, mode):
    """(dq, dk) of the cosine formula by plain autograd (F.normalize) in q's dtype."""
    q = q.clone().requires_grad_()
    k = None if k is None else k.clone().requires_grad_()
    qn = F.normalize(q, dim=1)
    kn = qn if k is None else F.normalize(k, dim=1)
    s = torch.bmm(kn.transpose(1, 2), qn)
    a = torch.softmax(s, 1) if mode == "cosine_softmax" else torch.relu(s) / s.shape[1]
    torch.bmm(v, a).backward(g)
    return q.grad, None if k is None else k.grad


@pytest.mark.parametrize("device,backend", RA_BACKENDS)
@pytest.mark.parametrize("mode", ("cosine_softmax", "cosine_relu"))
@pytest.mark.parametrize("shared", (True, False), ids=("shared", "separate"))
@pytest.mark.parametrize("scale", (1e14, 1e18, 1e-14))
def test_region_attention_cosine_backward_at_extreme_norms(device, backend, mode, shared, scale):
    """dq (and dk) of the cosine modes for |q| ~ scale in float32: the normalisation's adjoint
    r g - r^3 (x.g) x lost its r^3 term to underflow (30-89% wrong at 1e14-1e18); as
    r (g - xhat (xhat.g)) it is as accurate as float32 autograd of the same formula."""
    torch.manual_seed(1)
    N, d, L = 2, 8, 19
    q = torch.randn(N, d, L, dtype=torch.float64) * scale
    k = None if shared else torch.randn(N, d, L, dtype=torch.float64) * scale
    v = torch.randn(N, d, L, dtype=torch.float64)
    g = torch.randn(N, d, L, dtype=torch.float64)
    want = _cosine_truth(q, v, k, g, mode)
    same = _cosine_truth(q.float(), v.float(), None if k is None else k.float(), g.float(), mode)
    qf = q.float().to(device).requires_grad_()
    kf = None if k is None else k.float().to(device).requires_grad_()
    y = vidops.region_attention(qf, v.float().to(device), kf, mode, backend=backend)
    y.backward(g.float().to(device))
    assert_close_to_reference(qf.grad.cpu(), want[0], same[0], name="grad_q")
    if not shared:
        assert_close_to_reference(kf.grad.cpu(), want[1], same[1], name="grad_k")


# ---- cpu softmax backward with shared keys, saturated attention ----------------------------------

def _softmax_truth(q, v, g):
    q = q.double().requires_grad_()
    a = torch.softmax(torch.bmm(q.transpose(1, 2), q), 1)
    torch.bmm(v.double(), a).backward(g.double())
    return q.grad


def _sdpa_math(q, v, g):
    """dq of the same attention through SDPA's plain (math) path in q's dtype."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = q.clone().requires_grad_()
    qt = q.transpose(1, 2).unsqueeze(1)
    with sdpa_kernel([SDPBackend.MATH]):
        out = F.scaled_dot_product_attention(qt, qt, v.transpose(1, 2).unsqueeze(1), scale=1.0)
    out.squeeze(1).transpose(1, 2).backward(g)
    return q.grad


def _grad_steps():
    steps = [pytest.param(shared_keys.softmax_block_grad_torch, id="torch")]
    if vidops._ext.has_kernel("_region_attention_softmax_block_grad", "CPU"):
        steps.append(pytest.param(None, id="cpp"))
    return steps


SATURATED = {
    # one-hot attention: logits ~1e6 apart, the true dq is exactly 0
    "scaled_1e3": (1, 4, 64, 1e3),
    # RNL block shapes: d = 256, unit-variance features, no 1/sqrt(d): self logit ~256, others
    # ~N(0, 16), so 1 - P_jj ~ e^-200 and the true dq ~1e-64
    "rnl_d256": (1, 256, 300, 1.0),
}


@pytest.mark.parametrize("grad_step", _grad_steps())
@pytest.mark.parametrize("case", SATURATED)
@pytest.mark.parametrize("chunk", (1 << 23, 4096), ids=("one_block", "blocks"))
def test_cpu_shared_keys_softmax_backward_saturated(grad_step, case, chunk):
    """Saturated attention: max |dq| was 1.2 (scaled_1e3) and 7.5e-5 (rnl_d256) against a truth
    of ~0, from dS = P (dP - D) with dP and D = g.y two rounded dots of size |g||v| whose exact
    difference is 0; the dominant weights' g.(v - y) form brings it to SDPA's noise (0 here)."""
    N, d, L, scale = SATURATED[case]
    torch.manual_seed(2)
    q = torch.randn(N, d, L) * scale
    v = torch.randn(N, d, L) * scale
    g = torch.randn(N, d, L)
    y, lse = shared_keys.softmax_forward(q, v, chunk)
    dq, dv = shared_keys.backward(g, q, v, True, chunk, lse, y, grad_step)
    want = _softmax_truth(q, v, g)
    sdpa = _sdpa_math(q, v, g)
    assert_close_to_reference(dq, want, sdpa, name="grad_q")
    # the public op (cpu backend) too
    qr = q.clone().requires_grad_()
    vidops.region_attention(qr, v, None, "softmax", backend="cpu").backward(g)
    assert_close_to_reference(qr.grad, want, sdpa, name="grad_q (op)")


@pytest.mark.parametrize("grad_step", _grad_steps())
@pytest.mark.parametrize("logit_std", (0.3, 1.0, 2.0, 4.0, 8.0))
def test_cpu_shared_keys_softmax_backward_near_saturation(grad_step, logit_std):
    """Between uniform and one-hot attention (P_max from ~0.05 to ~1 - 1e-12) the shared-keys
    backward stays within the noise of the same-dtype SDPA math path."""
    torch.manual_seed(3)
    N, d, L = 2, 32, 150
    q = torch.randn(N, d, L) * (logit_std ** 0.5 * d ** -0.25)
    v = torch.randn(N, d, L)
    g = torch.randn(N, d, L)
    for chunk in (1 << 23, 4096):
        y, lse = shared_keys.softmax_forward(q, v, chunk)
        dq, _ = shared_keys.backward(g, q, v, True, chunk, lse, y, grad_step)
        want = _softmax_truth(q, v, g)
        assert_close_to_reference(dq, want, _sdpa_math(q, v, g), name="grad_q")


@pytest.mark.skipif(not vidops._ext.has_kernel("_region_attention_softmax_block_grad", "CPU"),
                    reason="C++ CPU kernel not built")
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("A,B,diag", [(5, 5, True), (17, 33, False), (40, 23, False), (37, 37, True)])
def test_cpu_softmax_block_grad_dominant_entries_match_the_twin(A, B, diag, dtype):
    """The C++ block step with the dominant-entry form (g_t, v_t, y_t given) against its twin:
    peaked rows so that some weights of either orientation exceed DOMINANT_P."""
    torch.manual_seed(A * 100 + B)
    L, dv = 80, 12
    a0, b0 = 3, (3 if diag else 80 - B)
    s = torch.randn(A, B, dtype=torch.float64) * 6
    lse_a = s.logsumexp(1) + torch.rand(A, dtype=torch.float64) * 0.1
    lse_b = s.logsumexp(0) + torch.rand(B, dtype=torch.float64) * 0.1
    dp1, dp2t = torch.randn(A, B, dtype=torch.float64), torch.randn(A, B, dtype=torch.float64)
    d_a, d_b = torch.randn(A, dtype=torch.float64), torch.randn(B, dtype=torch.float64)
    g_t, v_t, y_t = (torch.randn(L, dv, dtype=torch.float64) for _ in range(3))
    base = [s, dp1, dp2t, lse_a, lse_b, d_a, d_b]
    got = [t.to(dtype).clone() for t in base]
    want = [t.to(dtype).double().clone() for t in base]
    if diag:
        got[2] = got[4] = got[6] = want[2] = want[4] = want[6] = None
    p1 = torch.exp(s - lse_a.unsqueeze(-1))
    assert (p1 > shared_keys.DOMINANT_P).any() and (p1 < shared_keys.DOMINANT_P).any()
    extra = (g_t.to(dtype), v_t.to(dtype), y_t.to(dtype), a0, b0)
    torch.ops.vidops._region_attention_softmax_block_grad(*got, *extra)
    shared_keys.softmax_block_grad_torch(*want, *(t.to(dtype).double() for t in extra[:3]), a0, b0)
    fi = torch.finfo(dtype)
    x = (want[0].clamp_min(1e-300).log().abs() + 4).max()
    scale = want[0] * (dp1.abs() + d_a.abs().unsqueeze(-1) + (g_t.abs() @ (v_t.abs() + y_t.abs()).t()).max())
    if not diag:
        scale = scale + want[2] * (dp2t.abs() + d_b.abs() + (g_t.abs() @ (v_t.abs() + y_t.abs()).t()).max())
    bound = (4 * x + dv) * fi.eps * scale + fi.tiny
    assert ((got[0].double() - want[0]).abs() <= x * fi.eps * want[0] + fi.tiny).all(), "p1"
    assert ((got[1].double() - want[1]).abs() <= bound).all(), "ds"


# ---- log_kernel at extreme sigma ------------------------------------------------------------------

def _impulse(k, dtype):
    out = torch.zeros(k, k, dtype=dtype)
    out[k // 2, k // 2] = 1
    return out


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("k", (1, 3, 9))
def test_log_kernel_tiny_and_huge_sigma(dtype, k):
    """log_kernel(1e-7, 3) was all NaN in float32 (-1/(pi s^4) (1 - r^2/2s^2) overflowed to inf,
    times exp(...) = 0); tiny sigma now gives the unit impulse, huge sigma the box 1/k^2, both
    the limits of the float64 formula, and never NaN."""
    for sigma in (1e-7, 1e-12, 1e-30, 1e-200, 5e-324):
        kern = vidops.log_kernel(sigma, k, dtype)
        assert kern.dtype == dtype and torch.isfinite(kern).all(), sigma
        torch.testing.assert_close(kern, _impulse(k, dtype), rtol=0, atol=0)
    for sigma in (1e10, 1e30, 1e200, 1e308):
        kern = vidops.log_kernel(sigma, k, dtype)
        assert torch.isfinite(kern).all(), sigma
        torch.testing.assert_close(kern, torch.full((k, k), 1.0 / (k * k), dtype=dtype),
                                   rtol=4 * eps(dtype), atol=0)


@pytest.mark.parametrize("sigma", (1e-8, 1e-7, 2e-7, 1e-6, 1e-3, 0.1, 0.3, 1.1, 5.0, 1e3, 1e9, 1e10))
def test_log_kernel_float32_against_float64_across_sigma(sigma):
    """Across the switch to the constant-free form the float32 kernel stays within the float32
    construction's own error (the cancellation in sum(L): |K|_1 eps) of the float64 one."""
    k32 = vidops.log_kernel(sigma, 9, torch.float32)
    k64 = vidops.log_kernel(sigma, 9, torch.float64)
    assert torch.isfinite(k32).all()
    l1 = k64.abs().sum().item()
    assert (k32.double() - k64).abs().max().item() <= 64 * l1 * l1 * eps(torch.float32)


def test_log_kernel_keeps_the_authors_float32_construction():
    """Ordinary sigma still take the step-by-step float32 construction (bit for bit)."""
    for sigma, k in ((1.1, 9), (0.9, 3), (0.9, 7), (2.0, 5)):
        ax = torch.arange(k, dtype=torch.float32)
        xx, yy = torch.meshgrid(ax, ax, indexing="ij")
        m = (k - 1) / 2
        r2 = (xx - m) ** 2 + (yy - m) ** 2
        raw = -1.0 / (math.pi * sigma ** 4) * (1 - r2 / (2 * sigma ** 2)) * torch.exp(-r2 / (2 * sigma ** 2))
        assert torch.equal(vidops.log_kernel(sigma, k), raw / raw.sum())


# ---- mgda_alpha -----------------------------------------------------------------------------------

def _alpha64(g1, g2):
    a, b = g1.double().flatten(), g2.double().flatten()
    d = a - b
    den = d.dot(d)
    return 0.5 if den == 0 else min(1.0, max(0.0, (-d.dot(b) / den).item()))


@pytest.mark.parametrize("scale", (1e-38, 1e-30, 1e-23, 1e-10, 1.0, 1e10, 1e19, 1e25, 1e35))
def test_mgda_alpha_is_scale_free_in_float32(scale):
    """float32 gradients of |g| >~ 1e19 gave NaN (||g1 - g2||^2 overflowed) and |g| <~ 1e-23
    gave 0.5 (it underflowed to 0) where the answer is 1; alpha does not depend on the scale."""
    g1, g2 = torch.tensor([1.0, 1.0]) * scale, torch.tensor([2.0, 2.0]) * scale
    assert vidops.mgda_alpha(g1, g2).item() == 1.0
    torch.manual_seed(4)
    for _ in range(5):
        u1, u2 = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64) * 0.7 + 0.3
        want = _alpha64(u1, u2)
        f1, f2 = (u1 * scale).float(), (u2 * scale).float()
        # float32 inputs carry a relative rounding of eps32 (more for subnormal scales)
        tol = 1e-5 if scale >= 1e-30 else 1e-2
        got = vidops.mgda_alpha([f1[:20], f1[20:].reshape(5, 6)], [f2[:20], f2[20:].reshape(5, 6)])
        assert got.dtype == torch.float32 and math.isfinite(got.item())
        assert abs(got.item() - want) <= tol, (scale, got.item(), want)


def test_mgda_alpha_refuses_mismatched_or_bad_gradients():
    ones, zeros = torch.ones, torch.zeros
    with pytest.raises(ValueError, match=r"vidops\.mgda_alpha: g1 and g2 .* 2 and 1"):
        vidops.mgda_alpha([ones(2), 100 * ones(3)], [zeros(2)])       # was -0.0 (truncated)
    with pytest.raises(ValueError, match=r"vidops\.mgda_alpha: g1 and g2 must have the same shape"):
        vidops.mgda_alpha(ones(2, 3), ones(3, 2))                      # equal length, other shape
    with pytest.raises(ValueError, match=r"vidops\.mgda_alpha: g1\[1\] and g2\[1\] must have the same shape"):
        vidops.mgda_alpha([ones(2), ones(2, 3)], [ones(2), ones(6)])
    with pytest.raises(TypeError, match=r"vidops\.mgda_alpha: g1 must be a real floating-point"):
        vidops.mgda_alpha(ones(3, dtype=torch.complex64), ones(3))    # was a warning
    with pytest.raises(TypeError, match=r"vidops\.mgda_alpha: g2\[0\] must be a real floating-point"):
        vidops.mgda_alpha([ones(3)], [ones(3, dtype=torch.complex128)])
    with pytest.raises(TypeError, match=r"vidops\.mgda_alpha: g1 must be a tensor or a sequence"):
        vidops.mgda_alpha(1.0, 2.0)
    with pytest.raises(TypeError, match=r"vidops\.mgda_alpha: g1 must be a tensor or a sequence"):
        vidops.mgda_alpha(None, None)
    with pytest.raises(TypeError, match=r"vidops\.mgda_alpha: g2\[0\] must be a tensor"):
        vidops.mgda_alpha([ones(2)], [[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"vidops\.mgda_alpha: g1 must be a real floating-point"):
        vidops.mgda_alpha(torch.tensor([1, 2]), ones(2))
    # None entries still mean zero, on either side
    assert vidops.mgda_alpha([None, ones(2)], [ones(3), 2 * ones(2)]).item() == pytest.approx(
        _alpha64(torch.cat([zeros(3), ones(2)]), torch.cat([ones(3), 2 * ones(2)])))


# ---- scale_schedule -------------------------------------------------------------------------------

@pytest.mark.parametrize("total", (float("nan"), float("inf"), 2.5, "100", None, 0, -3, True))
def test_scale_schedule_total_steps_must_be_a_positive_int(total):
    with pytest.raises(ValueError, match=r"vidops\.scale_schedule: total_steps must be a positive int, got"):
        vidops.scale_schedule(3, total)


@pytest.mark.parametrize("kwargs,name", [
    (dict(step=None), "step"), (dict(step=float("nan")), "step"), (dict(step="1"), "step"),
    (dict(gamma=float("nan")), "gamma"), (dict(gamma="0.2"), "gamma"), (dict(gamma=None), "gamma"),
    (dict(lam=float("nan")), "lam"), (dict(lam="0.3"), "lam"), (dict(lam=None), "lam"),
])
def test_scale_schedule_names_the_bad_argument(kwargs, name):
    args = dict(step=3, total_steps=100, gamma=0.2, lam=0.3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"vidops\.scale_schedule: {name} must"):
        vidops.scale_schedule(**args)
    # numpy-style integers are ints
    assert vidops.scale_schedule(torch.tensor(3).item(), 100) == vidops.scale_schedule(3, 100)
