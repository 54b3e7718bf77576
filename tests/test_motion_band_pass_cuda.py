"""The CUDA backend of motion_band_pass and busy_quiet on a GPU, against the float64 reference.

Skipped without a CUDA device (the same kernels run on the CPU in test_cuda_kernels_emulated.py).
Tolerances are relative to the noise of the reference run in the kernel's dtype (tests/tolerance.py);
half-precision inputs are accumulated in float32 with float32 weights, so the kernels are far more
accurate than that reference.
"""
import pytest
import torch

import vidops
from tolerance import assert_close_to_reference
from vidops import _dispatch
from vidops.reference.busy_quiet import busy_quiet as ref_bq
from vidops.reference.motion_band_pass import motion_band_pass as ref_mbp
from vidops.reference.motion_band_pass import motion_band_pass_backward as ref_mbp_backward


def _cuda_reason():
    if not torch.cuda.is_available():
        return "no CUDA device"
    return _dispatch.reasons("motion_band_pass", torch.device("cuda")).get("cuda")


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))]

DEV = "cuda"
MODES = [  # (spatial_padding, temporal_padding, stride)
    ("reflect", "valid", 3),     # the stem
    ("reflect", "replicate", 1),  # the lateral filter
    ("zeros", "zeros", 2),
    ("zeros", "valid", 1),
    ("reflect", "zeros", 1),
    ("zeros", "replicate", 3),
]
KS = [3, 7, 9, 11]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def make(shape, k, dtype, fp16_safe=True):
    N, C, T, H, W = shape
    x = torch.randn(N, C, T, H, W, device=DEV, dtype=torch.float64)
    if dtype == torch.float16 and fp16_safe:
        x = x * 0.05  # keep outputs of ~|w| * k^2 inside fp16's range
    wd = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    sw = (torch.randn(C, k, k, device=DEV, dtype=torch.float64) * 10).to(wd)
    tw = torch.randn(C, 3, device=DEV, dtype=torch.float64).to(wd)
    return x.to(dtype), sw, tw


def same_dtype_reference(x, sw, tw, *args):
    return ref_mbp(x, sw.to(x.dtype), tw.to(x.dtype), *args)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m[0]}-{m[1]}-s{m[2]}")
def test_forward_matches_reference(mode, k, dtype):
    sp, tp, s = mode
    x, sw, tw = make((2, 3, 9, 37, 45), k, dtype)  # 2 x 2 tiles of 32, partial ones
    out = vidops.motion_band_pass(x, sw, tw, s, sp, tp, backend="cuda")
    x64, sw64, tw64 = x.double(), sw.double(), tw.double()
    ref64 = ref_mbp(x64, sw64, tw64, s, sp, tp)
    scale = ref_mbp(x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    assert out.dtype == dtype and out.is_contiguous() and out.device.type == "cuda"
    assert_close_to_reference(out, ref64, same_dtype_reference(x, sw, tw, s, sp, tp), scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m[0]}-{m[1]}-s{m[2]}")
def test_gradients_match_reference(mode, k, dtype):
    sp, tp, s = mode
    x, sw, tw = make((2, 3, 9, 35, 40), k, dtype)
    xs, sws, tws = (t.clone().requires_grad_(True) for t in (x, sw, tw))
    out = vidops.motion_band_pass(xs, sws, tws, s, sp, tp, backend="cuda")
    grad = torch.randn_like(out, dtype=torch.float64)
    if dtype == torch.float16:
        grad = grad * 0.05
    grad = grad.to(dtype)
    out.backward(grad)
    refs64 = ref_mbp_backward(grad.double(), x.double(), sw.double(), tw.double(), s, sp, tp)
    a, b, c = (t.detach().requires_grad_(True) for t in (x, sw.to(dtype), tw.to(dtype)))
    ref_mbp(a, b, c, s, sp, tp).backward(grad)
    scales = ref_mbp_backward(grad.double().abs(), x.double().abs(), sw.double().abs(), tw.double().abs(), s, sp, tp)
    for name, got, r64, rs, sc, want_dtype in zip(
            ("grad_x", "grad_spatial_weight", "grad_temporal_weight"), (xs.grad, sws.grad, tws.grad), refs64,
            (a.grad, b.grad, c.grad), scales, (x.dtype, sw.dtype, tw.dtype)):
        assert got.dtype == want_dtype, name
        assert_close_to_reference(got, r64, rs, sc, name=name)


@pytest.mark.parametrize("k", [1, 5, 13])
def test_other_kernel_sizes_use_the_run_time_k_kernels(k):
    x, sw, tw = make((1, 2, 6, 33, 70), k, torch.float32)
    for sp, tp, s in MODES[:2]:
        xs, sws, tws = (t.clone().requires_grad_(True) for t in (x, sw, tw))
        out = vidops.motion_band_pass(xs, sws, tws, s, sp, tp, backend="cuda")
        grad = torch.randn_like(out)
        out.backward(grad)
        x64, sw64, tw64 = x.double(), sw.double(), tw.double()
        assert_close_to_reference(out, ref_mbp(x64, sw64, tw64, s, sp, tp), ref_mbp(x, sw, tw, s, sp, tp),
                                  ref_mbp(x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp))
        refs = ref_mbp_backward(grad.double(), x64, sw64, tw64, s, sp, tp)
        same = ref_mbp_backward(grad, x, sw, tw, s, sp, tp)
        scales = ref_mbp_backward(grad.double().abs(), x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
        for got, r, rs, sc in zip((xs.grad, sws.grad, tws.grad), refs, same, scales):
            assert_close_to_reference(got, r, rs, sc)


@pytest.mark.parametrize("layout", ["sliced", "channels_last_3d", "transposed_hw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_strided_inputs_give_bitwise_identical_results(layout, dtype):
    x, sw, tw = make((2, 3, 9, 37, 45), 9, dtype)
    if layout == "sliced":
        xv = torch.randn(3, 5, 10, 40, 48, device=DEV).to(dtype)[1:3, 1:4, :9, 2:39, 1:46]
    elif layout == "channels_last_3d":
        xv = x.to(memory_format=torch.channels_last_3d)
    else:
        xv = x.transpose(3, 4).contiguous().transpose(3, 4)
    assert not xv.is_contiguous()
    xc = xv.contiguous()
    for sp, tp, s in MODES[:2]:
        out = vidops.motion_band_pass(xv, sw, tw, s, sp, tp, backend="cuda")
        torch.testing.assert_close(out, vidops.motion_band_pass(xc, sw, tw, s, sp, tp, backend="cuda"),
                                   rtol=0, atol=0)
        g = torch.randn_like(out)
        xg = xv.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        vidops.motion_band_pass(xg, sw, tw, s, sp, tp, backend="cuda").backward(g)
        xr = xc.detach().clone().requires_grad_(True)
        vidops.motion_band_pass(xr, sw, tw, s, sp, tp, backend="cuda").backward(g)
        torch.testing.assert_close(xg.grad, xr.grad, rtol=0, atol=0)


def test_backward_is_deterministic():
    x, sw, tw = make((2, 3, 8, 70, 66), 7, torch.float32)
    grads = []
    for _ in range(2):
        ins = [t.clone().requires_grad_(True) for t in (x, sw, tw)]
        out = vidops.motion_band_pass(*ins, 1, "reflect", "replicate", backend="cuda")
        out.backward(torch.ones_like(out))
        grads.append([t.grad for t in ins])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_empty_batch():
    x, sw, tw = make((1, 3, 6, 9, 8), 7, torch.float32)
    empty = x[:0].clone().requires_grad_(True)
    swg = sw.clone().requires_grad_(True)
    out = vidops.motion_band_pass(empty, swg, tw, 1, "reflect", "replicate", backend="cuda")
    assert out.shape == (0, 3, 6, 9, 8)
    out.sum().backward()
    assert empty.grad.shape == empty.shape and (swg.grad == 0).all()


def test_runs_on_the_current_stream():
    x, sw, tw = make((2, 3, 24, 64, 64), 9, torch.bfloat16)
    expected = vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid", backend="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid", backend="cuda")
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    x, sw, tw = make((1, 3, 9, 40, 40), 9, torch.float32)
    expected = vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid", backend="cuda")
    out = vidops.motion_band_pass(x.to("cuda:1"), sw.to("cuda:1"), tw.to("cuda:1"), 3, "reflect", "valid",
                                  backend="cuda")
    assert out.device == torch.device("cuda:1")
    torch.testing.assert_close(out.cpu(), expected.cpu(), rtol=0, atol=0)


def test_stem_shape_bf16():
    """The benchmark shape: N=8, C=3, T=24, 224 x 224, k=9, stride 3, bf16 in and out."""
    x, sw, tw = make((8, 3, 24, 224, 224), 9, torch.bfloat16)
    out = vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid", backend="cuda")
    ref32 = ref_mbp(x.float(), sw, tw, 3, "reflect", "valid")
    err = (out.float() - ref32).abs()
    assert (err <= 2 ** -8 * ref32.abs() + 1e-4 * ref32.abs().max()).all()


BQ_CASES = [  # (N, C, S, H, W, quiet, quiet_scale)
    (2, 3, 2, 16, 19, "first", None),
    (1, 3, 3, 17, 16, "mean_minus_busy", None),
    (2, 3, 2, 70, 45, "first", 0.625),
    (1, 2, 2, 70, 45, "mean_minus_busy", 0.625),
    (1, 3, 2, 64, 64, "first", 0.5),
    (1, 2, 1, 40, 67, "mean_minus_busy", 1.7),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", BQ_CASES, ids=lambda c: f"N{c[0]}-C{c[1]}-S{c[2]}-{c[3]}x{c[4]}-{c[5]}-{c[6]}")
def test_busy_quiet_matches_reference(case, dtype):
    N, C, S, H, W, quiet, scale = case
    clip, sw, tw = make((N, C, 3 * S, H, W), 9, dtype)
    busy, q = vidops.busy_quiet(clip, sw, tw, quiet, scale, backend="cuda")
    c64, sw64, tw64 = clip.double(), sw.double(), tw.double()
    b64, q64 = ref_bq(c64, sw64, tw64, quiet, scale)
    bs, qs = ref_bq(clip, sw.to(dtype), tw.to(dtype), quiet, scale)
    b_abs = ref_mbp(c64.abs(), sw64.abs(), tw64.abs(), 3, "reflect", "valid")
    assert busy.dtype == dtype and q.dtype == dtype and q.shape == q64.shape
    assert_close_to_reference(busy, b64, bs, b_abs, name="busy")
    q_scale = ref_bq(c64.abs(), sw64.abs(), tw64.abs(), "first", scale)[1].abs()
    if quiet == "mean_minus_busy":
        q_scale = q_scale + 2 * b_abs.max()
    if scale is not None:  # the bilinear weight carries the rounding of its O(H) source coordinate
        q_scale = q_scale + max(H, W) * q_scale.max()
    assert_close_to_reference(q, q64, qs, q_scale, name="quiet")
