"""The CUDA motion band-pass and busy/quiet kernels, run on the CPU through the host emulation
(tests/cuda_emulation.py), against the float64 reference.

This is the GPU-less check of the CUDA code itself: the same .cu sources and launchers as the
extension, with each block's threads run as fibers in a shuffled order between barriers and
shared memory poisoned with NaN. Shapes are chosen to cross tile borders (32 x 32 tiles), to hit
every padding mode, the compiled kernel sizes (3..11) and the run-time-k kernel (1, 13), the
direct and gathered temporal adjoints, reflect borders with 3 preimages, and the grid-stride loops.
"""
import pytest
import torch

import cuda_emulation as ce
from tolerance import assert_close_to_reference
from vidops.reference.busy_quiet import busy_quiet as ref_bq
from vidops.reference.motion_band_pass import motion_band_pass as ref_mbp
from vidops.reference.motion_band_pass import motion_band_pass_backward as ref_mbp_backward

pytestmark = pytest.mark.skipif(ce.unavailable_reason() is not None,
                                reason=f"CUDA emulation: {ce.unavailable_reason()}")

# (N, C, T, H, W, k, stride, spatial_padding, temporal_padding)
CASES = [
    (2, 3, 24, 13, 17, 9, 3, "reflect", "valid"),      # the stem (one tile)
    (1, 4, 6, 11, 9, 7, 1, "reflect", "replicate"),    # the lateral filter
    (2, 2, 3, 12, 14, 3, 1, "reflect", "replicate"),
    (1, 3, 6, 12, 13, 11, 1, "zeros", "zeros"),
    (1, 2, 7, 9, 10, 5, 2, "zeros", "replicate"),
    (1, 2, 6, 8, 9, 7, 3, "reflect", "valid"),
    (1, 1, 3, 5, 6, 9, 1, "zeros", "valid"),           # kernel larger than the image
    (1, 2, 6, 37, 70, 9, 3, "reflect", "valid"),       # stem, 2 x 3 tiles, partial ones
    (1, 2, 5, 33, 33, 7, 1, "reflect", "replicate"),   # one row and column past a tile
    (1, 1, 7, 65, 40, 11, 2, "reflect", "zeros"),
    (1, 2, 4, 40, 35, 5, 1, "zeros", "replicate"),
    (1, 1, 9, 34, 66, 3, 4, "reflect", "valid"),       # stride 4: frames nobody reads (zeroed g_x)
    (1, 1, 10, 36, 20, 13, 3, "reflect", "replicate"), # run-time k, clamped taps at stride 3
    (1, 1, 5, 12, 12, 1, 1, "zeros", "zeros"),         # k = 1
    (1, 1, 3, 5, 5, 9, 1, "reflect", "valid"),         # H = r + 1: pixels with 3 reflect preimages
    (1, 2, 3, 6, 40, 11, 1, "reflect", "replicate"),   # H = r + 1 with several column tiles
]


def case_id(c):
    N, C, T, H, W, k, s, sp, tp = c
    return f"N{N}-C{C}-T{T}-{H}x{W}-k{k}-s{s}-{sp}-{tp}"


def make_inputs(case, dtype=torch.float64):
    N, C, T, H, W, k, s, sp, tp = case
    x = torch.randn(N, C, T, H, W, dtype=torch.float64).to(dtype)
    sw = torch.randn(C, k, k, dtype=torch.float64) * 10
    tw = torch.randn(C, 3, dtype=torch.float64)
    return x, sw, tw, s, sp, tp


def weights_for(x, sw, tw):
    """float32 master weights for half x, x's dtype otherwise (as vidops.nn passes them)."""
    wd = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return sw.to(wd), tw.to(wd)


def reference_same_dtype(fn, *args):
    try:
        return fn(*args)
    except RuntimeError:  # a reference op without a CPU kernel for this dtype
        return None


@pytest.fixture(scope="module", autouse=True)
def _library():
    ce.library()


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_forward_and_backward_match_reference(case, dtype):
    x, sw, tw, s, sp, tp = make_inputs(case, dtype)
    sw, tw = weights_for(x, sw, tw)
    out = ce.forward(x, sw, tw, s, sp, tp)
    x64, sw64, tw64 = x.double(), sw.double(), tw.double()
    ref64 = ref_mbp(x64, sw64, tw64, s, sp, tp)
    scale = ref_mbp(x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    assert out.dtype == dtype and out.is_contiguous()
    assert_close_to_reference(out, ref64, ref_mbp(x, sw, tw, s, sp, tp), scale, name="out")

    grad = torch.randn(ref64.shape, dtype=torch.float64).to(dtype)
    gx, gsw, gtw = ce.backward(grad, x, sw, tw, s, sp, tp)
    refs64 = ref_mbp_backward(grad.double(), x64, sw64, tw64, s, sp, tp)
    refs_same = ref_mbp_backward(grad, x, sw, tw, s, sp, tp)
    scales = ref_mbp_backward(grad.double().abs(), x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    for name, got, r64, rs, sc in zip(("grad_x", "grad_spatial_weight", "grad_temporal_weight"),
                                      (gx, gsw, gtw), refs64, refs_same, scales):
        assert_close_to_reference(got, r64, rs, sc, name=name)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[8], CASES[9]], ids=case_id)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_io_with_float32_accumulation(case, dtype):
    x, sw, tw, s, sp, tp = make_inputs(case, dtype)
    x = x * 0.01 if dtype == torch.float16 else x  # keep the ~1e3 outputs inside fp16's range
    sw, tw = weights_for(x, sw, tw)
    out = ce.forward(x, sw, tw, s, sp, tp)
    x64, sw64, tw64 = x.double(), sw.double(), tw.double()  # the same (rounded) inputs
    ref64 = ref_mbp(x64, sw64, tw64, s, sp, tp)
    scale = ref_mbp(x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    assert out.dtype == dtype
    # fp32 accumulation: only the final rounding to the half type, far below the same-dtype noise.
    err = (out.double() - ref64).abs()
    assert (err <= torch.finfo(dtype).eps * ref64.abs() + 64 * torch.finfo(torch.float32).eps * scale).all()
    grad = (torch.randn(ref64.shape, dtype=torch.float64) * (0.01 if dtype == torch.float16 else 1)).to(dtype)
    gx, gsw, gtw = ce.backward(grad, x, sw, tw, s, sp, tp)
    assert gx.dtype == dtype and gsw.dtype == torch.float32 and gtw.dtype == torch.float32
    refs64 = ref_mbp_backward(grad.double(), x64, sw64, tw64, s, sp, tp)
    scales = ref_mbp_backward(grad.double().abs(), x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    for name, got, r64, sc in zip(("grad_x", "grad_spatial_weight", "grad_temporal_weight"), (gx, gsw, gtw),
                                  refs64, scales):
        e = (got.double() - r64).abs()
        bound = torch.finfo(got.dtype).eps * r64.abs() + 64 * torch.finfo(torch.float32).eps * sc
        assert (e <= bound).all(), f"{name}: max error {e.max():.3e}"


@pytest.mark.parametrize("layout", ["sliced", "channels_last_3d", "transposed_hw"])
def test_strided_inputs_give_bitwise_identical_results(layout):
    case = (2, 3, 9, 35, 38, 5, 3, "reflect", "valid")
    x, sw, tw, s, sp, tp = make_inputs(case, torch.float32)
    sw, tw = sw.float(), tw.float()
    if layout == "sliced":
        xv = torch.randn(3, 5, 10, 40, 41)[1:3, 1:4, :9, 2:37, 1:39]
    elif layout == "channels_last_3d":
        xv = x.to(memory_format=torch.channels_last_3d)
    else:
        xv = x.transpose(3, 4).contiguous().transpose(3, 4)
    assert not xv.is_contiguous()
    xc = xv.contiguous()
    torch.testing.assert_close(ce.forward(xv, sw, tw, s, sp, tp), ce.forward(xc, sw, tw, s, sp, tp), rtol=0, atol=0)
    grad = torch.randn(2, 3, 3, 35, 38)
    gv = grad.to(memory_format=torch.channels_last_3d)
    for a, b in zip(ce.backward(gv, xv, sw, tw, s, sp, tp), ce.backward(grad, xc, sw, tw, s, sp, tp)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_results_do_not_depend_on_thread_order_or_grid_size(monkeypatch):
    """Race-free and deterministic: other thread interleavings (VIDOPS_EMU_SEED) and a capped grid
    (blocks loop over several tiles, the reduction and gather kernels over several columns)
    give bitwise the same results."""
    case = (2, 2, 7, 37, 40, 7, 1, "reflect", "replicate")
    x, sw, tw, s, sp, tp = make_inputs(case, torch.float32)
    sw, tw = sw.float(), tw.float()
    grad = torch.randn(2, 2, 7, 37, 40)
    base = [ce.forward(x, sw, tw, s, sp, tp), *ce.backward(grad, x, sw, tw, s, sp, tp)]
    for env in ({"VIDOPS_EMU_SEED": "7"}, {"VIDOPS_EMU_SEED": "99"}, {"VIDOPS_EMU_MAX_GRID": "3"}):
        with monkeypatch.context() as m:
            for key, val in env.items():
                m.setenv(key, val)
            again = [ce.forward(x, sw, tw, s, sp, tp), *ce.backward(grad, x, sw, tw, s, sp, tp)]
        for a, b in zip(base, again):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_empty_batch():
    x = torch.zeros(0, 3, 6, 9, 8)
    sw, tw = torch.randn(3, 7, 7), torch.randn(3, 3)
    out = ce.forward(x, sw, tw, 1, "reflect", "replicate")
    assert out.shape == (0, 3, 6, 9, 8)
    gx, gsw, gtw = ce.backward(torch.zeros(0, 3, 6, 9, 8), x, sw, tw, 1, "reflect", "replicate")
    assert gx.shape == x.shape and (gsw == 0).all() and (gtw == 0).all()


def test_malformed_problem_is_reported_not_run():
    x = torch.randn(1, 1, 3, 8, 8)
    with pytest.raises(RuntimeError, match="odd"):
        ce.forward(x, torch.randn(1, 4, 4), torch.randn(1, 3), 1, "zeros", "valid")
    with pytest.raises(RuntimeError, match="reflect"):
        ce.forward(torch.randn(1, 1, 3, 3, 8), torch.randn(1, 9, 9), torch.randn(1, 3), 1, "reflect", "valid")


BQ_CASES = [  # (N, C, S, H, W, quiet, quiet_scale)
    (2, 3, 2, 16, 19, "first", None),
    (1, 3, 3, 17, 16, "mean_minus_busy", None),
    (2, 3, 2, 16, 21, "first", 0.625),
    (1, 2, 1, 13, 18, "mean_minus_busy", 0.625),
    (1, 3, 2, 15, 15, "first", 0.5),
    (1, 2, 1, 70, 45, "mean_minus_busy", 0.625),  # resized outputs whose sources straddle tiles
    (1, 1, 2, 40, 67, "mean_minus_busy", 1.7),    # upsampling
    (1, 1, 1, 33, 65, "first", 0.3),
    (1, 2, 2, 64, 64, "mean_minus_busy", 0.5),    # tile-aligned sizes
]


@pytest.mark.parametrize("case", BQ_CASES, ids=lambda c: f"N{c[0]}-C{c[1]}-S{c[2]}-{c[3]}x{c[4]}-{c[5]}-{c[6]}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_busy_quiet_matches_reference(case, dtype):
    N, C, S, H, W, quiet, scale = case
    clip = torch.randn(N, C, 3 * S, H, W, dtype=torch.float64).to(dtype)
    sw = (torch.randn(C, 9, 9, dtype=torch.float64) * 10).to(dtype)
    tw = torch.randn(C, 3, dtype=torch.float64).to(dtype)
    busy, q = ce.busy_quiet(clip, sw, tw, quiet, scale)
    b64, q64 = ref_bq(clip.double(), sw.double(), tw.double(), quiet, scale)
    bs, qs = ref_bq(clip, sw, tw, quiet, scale)
    b_abs = ref_mbp(clip.double().abs(), sw.double().abs(), tw.double().abs(), 3, "reflect", "valid")
    assert busy.dtype == dtype and q.dtype == dtype and q.shape == q64.shape
    assert_close_to_reference(busy, b64, bs, b_abs, name="busy")
    q_scale = ref_bq(clip.double().abs(), sw.double().abs(), tw.double().abs(), "mean_minus_busy"
                     if quiet == "mean_minus_busy" else "first", scale)[1].abs()
    if quiet == "mean_minus_busy":
        q_scale = q_scale + 2 * b_abs.abs().max()
    if scale is not None:  # the bilinear weight carries the rounding of its O(H) source coordinate
        q_scale = q_scale + max(H, W) * q_scale.max()
    assert_close_to_reference(q, q64, qs, q_scale, name="quiet")


def test_busy_quiet_first_without_resize_is_an_exact_copy():
    clip = torch.randn(1, 3, 6, 20, 37).to(torch.bfloat16)
    sw, tw = torch.randn(3, 9, 9), torch.randn(3, 3)
    _, q = ce.busy_quiet(clip, sw, tw, "first", None)
    torch.testing.assert_close(q, clip[:, :, 0::3], rtol=0, atol=0)
