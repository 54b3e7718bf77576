"""vidops.motion_band_pass: every available backend against the float64 reference (operators.md §1.1)."""
import pytest
import torch

import vidops
from vidops.reference.motion_band_pass import motion_band_pass as ref_mbp
from vidops.reference.motion_band_pass import motion_band_pass_backward as ref_mbp_backward

from conftest import device_backend_params
from tolerance import assert_close_to_reference

OP = "motion_band_pass"
BACKENDS = device_backend_params(OP, interpreted_triton=False)  # triton: test_motion_band_pass_triton.py

# (N, C, T, H, W, k, stride, spatial_padding, temporal_padding): sizes that are not multiples of
# any block size, odd k from 3 to 11, T not a power of two.
CASES = [
    (2, 3, 24, 13, 17, 9, 3, "reflect", "valid"),    # the stem
    (1, 4, 6, 11, 9, 7, 1, "reflect", "replicate"),  # the lateral filter
    (2, 2, 3, 12, 14, 3, 1, "reflect", "replicate"),
    (1, 3, 6, 12, 13, 11, 1, "zeros", "zeros"),
    (1, 2, 7, 9, 10, 5, 2, "zeros", "replicate"),
    (1, 2, 6, 8, 9, 7, 3, "reflect", "valid"),       # reflect with H = k - 1 (r = 3 < 8)
    (1, 1, 3, 5, 6, 9, 1, "zeros", "valid"),         # kernel larger than the image
]


def case_id(c):
    N, C, T, H, W, k, s, sp, tp = c
    return f"N{N}-C{C}-T{T}-{H}x{W}-k{k}-s{s}-{sp}-{tp}"


def make_inputs(case, dtype=torch.float64, device="cpu"):
    N, C, T, H, W, k, s, sp, tp = case
    x = torch.randn(N, C, T, H, W, dtype=dtype, device=device)
    # Per-channel weights that differ, LoG-like magnitudes so the cancellation is realistic.
    sw = torch.randn(C, k, k, dtype=dtype, device=device) * 10
    tw = torch.randn(C, 3, dtype=dtype, device=device)
    return x, sw, tw, s, sp, tp


def abs_scale(x, sw, tw, s, sp, tp):
    """The formula on |x|, |weights|: the magnitude of the summed terms (rounding bound)."""
    return ref_mbp(x.double().abs(), sw.double().abs(), tw.double().abs(), s, sp, tp)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_forward_matches_reference(device, backend, dtype, case):
    x, sw, tw, s, sp, tp = make_inputs(case, dtype, device)
    out = vidops.motion_band_pass(x, sw, tw, s, sp, tp, backend=backend)
    ref64 = ref_mbp(x.double(), sw.double(), tw.double(), s, sp, tp)
    ref_same = ref_mbp(x, sw, tw, s, sp, tp)
    assert out.dtype == dtype and out.is_contiguous()
    assert_close_to_reference(out, ref64, ref_same, abs_scale(x, sw, tw, s, sp, tp))


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_backward_matches_reference_autograd(device, backend, dtype, case):
    x, sw, tw, s, sp, tp = make_inputs(case, dtype, device)
    xs, sws, tws = (t.clone().requires_grad_(True) for t in (x, sw, tw))
    out = vidops.motion_band_pass(xs, sws, tws, s, sp, tp, backend=backend)
    grad = torch.randn_like(out)
    out.backward(grad)
    # Oracle: autograd through the authors' formulation in float64 (and in the same dtype, for noise).
    grads64, grads_same = [], []
    for dt, acc in ((torch.float64, grads64), (dtype, grads_same)):
        a, b, c = (t.detach().to(dt).requires_grad_(True) for t in (x, sw, tw))
        ref_mbp(a, b, c, s, sp, tp).backward(grad.to(dt))
        acc.extend([a.grad, b.grad, c.grad])
    # Rounding scale of each gradient: the adjoint formulas on absolute values.
    scales = ref_mbp_backward(grad.double().abs(), x.double().abs(), sw.double().abs(), tw.double().abs(), s, sp, tp)
    for name, got, g64, gs, sc in zip(("grad_x", "grad_spatial_weight", "grad_temporal_weight"),
                                      (xs.grad, sws.grad, tws.grad), grads64, grads_same, scales):
        assert got.dtype == dtype
        assert_close_to_reference(got, g64, gs, sc, name=name)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_float64(device, backend):
    for case in [(1, 2, 4, 6, 7, 3, 1, "reflect", "replicate"), (1, 2, 6, 5, 6, 3, 3, "reflect", "valid"),
                 (1, 1, 5, 4, 5, 5, 2, "zeros", "zeros")]:
        x, sw, tw, s, sp, tp = make_inputs(case, torch.float64, device)
        inputs = tuple(t.requires_grad_(True) for t in (x, sw, tw))
        assert torch.autograd.gradcheck(
            lambda a, b, c: vidops.motion_band_pass(a, b, c, s, sp, tp, backend=backend), inputs)


@pytest.mark.parametrize("layout", ["sliced", "channels_last_3d", "transposed_hw"])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs_give_identical_results(device, backend, layout):
    case = (2, 3, 9, 11, 13, 5, 3, "reflect", "valid")
    x, sw, tw, s, sp, tp = make_inputs(case, torch.float32, device)
    if layout == "sliced":
        big = torch.randn(3, 5, 10, 14, 15, device=device)
        xv = big[1:3, 1:4, :9, 2:13, 1:14]
    elif layout == "channels_last_3d":
        xv = x.to(memory_format=torch.channels_last_3d)
    else:
        xv = x.transpose(3, 4).contiguous().transpose(3, 4)
    xc = xv.contiguous()
    assert not xv.is_contiguous()
    out = vidops.motion_band_pass(xv, sw, tw, s, sp, tp, backend=backend)
    expected = vidops.motion_band_pass(xc, sw, tw, s, sp, tp, backend=backend)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # Gradients for a non-contiguous input too.
    xg = xv.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    g = torch.randn_like(out)
    vidops.motion_band_pass(xg, sw, tw, s, sp, tp, backend=backend).backward(g)
    xr = xc.detach().clone().requires_grad_(True)
    vidops.motion_band_pass(xr, sw, tw, s, sp, tp, backend=backend).backward(g)
    torch.testing.assert_close(xg.grad, xr.grad, rtol=0, atol=0)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_batch_one_and_empty_batch(device, backend):
    case = (1, 3, 6, 9, 8, 7, 1, "reflect", "replicate")
    x, sw, tw, s, sp, tp = make_inputs(case, torch.float32, device)
    out = vidops.motion_band_pass(x, sw, tw, s, sp, tp, backend=backend)
    assert out.shape == (1, 3, 6, 9, 8)
    empty = x[:0].clone().requires_grad_(True)
    out0 = vidops.motion_band_pass(empty, sw, tw, s, sp, tp, backend=backend)
    assert out0.shape == (0, 3, 6, 9, 8)
    out0.sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_large_finite_inputs_give_no_nan(device, backend):
    x = torch.full((1, 2, 6, 10, 11), 3e4, device=device)
    x[..., ::2] = -3e4
    sw = torch.full((2, 9, 9), 300.0, device=device)
    tw = torch.tensor([[-1.0, 2.0, -1.0]] * 2, device=device) / 3
    out = vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid", backend=backend)
    assert torch.isfinite(out).all()


def test_static_video_gives_zero_band_pass():
    """The temporal filter [-1, 2, -1]/3 removes anything constant in time (a [verified] property
    of the reference: ~2e-5 in float32 from round-off)."""
    frame = torch.randn(1, 3, 1, 16, 16, dtype=torch.float64)
    x = frame.expand(1, 3, 6, 16, 16)
    sw = vidops.log_kernel(1.1, 9, torch.float64).expand(3, 9, 9)
    tw = vidops.temporal_band_pass_init(torch.float64).expand(3, 3)
    out = vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid")
    assert out.abs().max() < 1e-9


def test_temporal_first_formulation_equals_the_authors():
    for case in CASES:
        x, sw, tw, s, sp, tp = make_inputs(case)
        a = ref_mbp(x, sw, tw, s, sp, tp)
        b = vidops.reference.motion_band_pass_temporal_first(x, sw, tw, s, sp, tp)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)


def test_replicate_padding_is_not_zero_padding():
    """The lateral reference repeats the edge frames; zeros would change boundary frames a lot."""
    x, sw, tw, s, sp, _ = make_inputs((1, 2, 5, 8, 8, 3, 1, "reflect", "replicate"))
    rep = vidops.motion_band_pass(x, sw, tw, 1, "reflect", "replicate")
    zer = vidops.motion_band_pass(x, sw, tw, 1, "reflect", "zeros")
    torch.testing.assert_close(rep[:, :, 1:-1], zer[:, :, 1:-1])
    assert (rep[:, :, 0] - zer[:, :, 0]).abs().max() > 1e-3
