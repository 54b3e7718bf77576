"""Kernel-specific tests of the Triton motion band-pass family (forward, backward, busy_quiet).

On a GPU-less machine they run under the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), which costs ~1 ms per Triton operation: shapes are tiny and chosen to hit
the tiling (several row chunks and column strips), every padding mode and stride, mirrored
borders with k close to H, and the layouts. Every result is compared with the float64 reference
within the reference's own error in the same dtype (tests/tolerance.py).
"""
import pytest
import torch

import vidops
from vidops import _dispatch
from vidops.reference.busy_quiet import busy_quiet as ref_busy_quiet
from vidops.reference.motion_band_pass import motion_band_pass as ref_forward
from vidops.reference.motion_band_pass import motion_band_pass_backward as ref_backward

from tolerance import assert_close_to_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if _dispatch.reasons("motion_band_pass", torch.device(DEVICE))["triton"] is not None:
    pytest.skip("the triton backend cannot run here: "
                + str(_dispatch.reasons("motion_band_pass", torch.device(DEVICE))["triton"]),
                allow_module_level=True)

from vidops._triton import kernels  # noqa: E402

mbp = kernels("motion_band_pass")
bq = kernels("busy_quiet")


def _inputs(N, C, T, H, W, k, dtype=torch.float32, wdtype=None):
    """x and per-channel weights that differ between channels (a scaled LoG-like centre plus
    noise, so the output has the operator's real dynamic range)."""
    wdtype = wdtype or dtype
    x = torch.randn(N, C, T, H, W, dtype=torch.float64)
    sw = torch.randn(C, k, k, dtype=torch.float64) * 0.2
    sw[:, k // 2, k // 2] += torch.arange(1, C + 1, dtype=torch.float64)
    tw = torch.tensor([-1.0, 2.0, -1.0], dtype=torch.float64) / 3
    tw = tw + 0.1 * torch.randn(C, 3, dtype=torch.float64)
    return x.to(DEVICE, dtype), sw.to(DEVICE, wdtype), tw.to(DEVICE, wdtype)


def _check_fwd_bwd(x, sw, tw, s, sp, tp, **cfg):
    """Kernel forward and backward against the float64 reference, bounded by the same-dtype
    reference's error."""
    x64, sw64, tw64 = x.double(), sw.double(), tw.double()
    out = mbp.forward(x, sw, tw, s, sp, tp, **cfg)
    assert out.dtype == x.dtype and out.is_contiguous()
    ref64 = ref_forward(x64, sw64, tw64, s, sp, tp)
    same = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    ref_same = ref_forward(x.to(same), sw.to(same), tw.to(same), s, sp, tp)
    scale = ref_forward(x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    assert_close_to_reference(out, ref64, ref_same, scale, name="out")

    g = torch.randn(ref64.shape, dtype=torch.float64, device=x.device).to(x.dtype)
    gx, gs, gt = mbp.backward(g, x, sw, tw, s, sp, tp, **cfg)
    assert gx.dtype == x.dtype and gs.dtype == sw.dtype and gt.dtype == tw.dtype
    assert gs.shape == sw.shape and gt.shape == tw.shape and gx.shape == x.shape
    refs64 = ref_backward(g.double(), x64, sw64, tw64, s, sp, tp)
    refs_same = ref_backward(g.to(same), x.to(same), sw.to(same), tw.to(same), s, sp, tp)
    scales = ref_backward(g.double().abs(), x64.abs(), sw64.abs(), tw64.abs(), s, sp, tp)
    for name, a, r64, rs, sc in zip(("grad_x", "grad_spatial_weight", "grad_temporal_weight"),
                                    (gx, gs, gt), refs64, refs_same, scales):
        assert_close_to_reference(a, r64, rs, sc, name=name)


# (N, C, T, H, W, k, stride, spatial_padding, temporal_padding, launch overrides)
CASES = [
    (1, 2, 4, 7, 9, 3, 1, "reflect", "replicate", {}),                   # the lateral mode
    (1, 2, 4, 5, 7, 3, 1, "zeros", "replicate", {}),
    (1, 2, 6, 5, 6, 3, 2, "reflect", "zeros", {}),
    (2, 1, 6, 6, 5, 3, 2, "zeros", "zeros", {}),
    (1, 1, 3, 9, 19, 7, 3, "reflect", "valid", dict(block_w=16, rows=4)),  # stem mode, tiled
    (1, 1, 3, 10, 11, 9, 3, "reflect", "valid", {}),
    (1, 1, 3, 6, 7, 11, 3, "reflect", "valid", {}),                     # r = H - 1: double mirrors
    (1, 1, 3, 5, 6, 11, 1, "zeros", "valid", {}),                       # kernel larger than the image
    (1, 1, 24, 3, 4, 3, 3, "reflect", "valid", {}),                     # T = 24
    (1, 1, 4, 5, 4, 1, 1, "reflect", "replicate", {}),                  # k = 1
]


@pytest.mark.parametrize("N,C,T,H,W,k,s,sp,tp,cfg", CASES,
                         ids=[f"{c[7]}-{c[8]}-s{c[6]}-k{c[5]}-T{c[2]}-{c[3]}x{c[4]}" for c in CASES])
def test_matches_reference_float32(N, C, T, H, W, k, s, sp, tp, cfg):
    _check_fwd_bwd(*_inputs(N, C, T, H, W, k), s, sp, tp, **cfg)


def test_matches_reference_float64_tiled():
    _check_fwd_bwd(*_inputs(1, 1, 3, 6, 17, 5, torch.float64), 1, "reflect", "replicate", block_w=16, rows=3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_float32_weights(dtype):
    """Half x with float32 weights: read as is, accumulated in float32 (much closer to the
    float64 result than the reference run in float32 on the rounded input needs)."""
    _check_fwd_bwd(*_inputs(1, 2, 3, 6, 7, 3, dtype, wdtype=torch.float32), 3, "reflect", "valid")


def test_layouts_give_identical_results():
    """channels_last_3d and sliced (non-contiguous) x give bit-identical outputs and gradients."""
    x, sw, tw = _inputs(1, 2, 3, 5, 6, 3)
    big = torch.randn(2, 3, 5, 7, 9, device=DEVICE)
    big[1, 0:2, 1:4, 1:6, 2:8] = x[0]
    sliced = big[1:2, 0:2, 1:4, 1:6, 2:8]
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    assert not sliced.is_contiguous() and not cl.is_contiguous()
    sw_t = sw.transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous weights too
    out = mbp.forward(x, sw, tw, 1, "reflect", "replicate")
    g = torch.randn_like(out)
    grads = mbp.backward(g, x, sw, tw, 1, "reflect", "replicate")
    for xv, swv in ((sliced, sw), (cl, sw_t)):
        assert torch.equal(mbp.forward(xv, swv, tw, 1, "reflect", "replicate"), out)
        for a, b in zip(mbp.backward(g, xv, swv, tw, 1, "reflect", "replicate"), grads):
            assert torch.equal(a, b)


def test_int64_offsets_path(monkeypatch):
    """The int64 vector-offset variants (used when a tensor spans 2^31 elements) on a small case."""
    monkeypatch.setattr(mbp, "needs_int64", lambda *ts: True)
    monkeypatch.setattr(bq, "needs_int64", lambda *ts: True)
    _check_fwd_bwd(*_inputs(1, 2, 3, 5, 6, 3), 1, "zeros", "replicate")
    clip, sw, tw = _inputs(1, 1, 3, 6, 7, 3)
    for quiet in ("first", "mean_minus_busy"):
        busy, q = bq.forward(clip, sw, tw, quiet, 0.5)
        rb, rq = ref_busy_quiet(clip, sw, tw, quiet, 0.5)
        torch.testing.assert_close(busy, rb)
        torch.testing.assert_close(q, rq)


def test_empty_batch():
    x, sw, tw = _inputs(0, 2, 6, 5, 5, 3)
    out = mbp.forward(x, sw, tw, 3, "reflect", "valid")
    assert out.shape == (0, 2, 2, 5, 5)
    gx, gs, gt = mbp.backward(out, x, sw, tw, 3, "reflect", "valid")
    assert gx.shape == x.shape
    assert torch.equal(gs, torch.zeros_like(sw)) and torch.equal(gt, torch.zeros_like(tw))
    b, q = bq.forward(x, sw, tw, "first", 0.5)
    assert b.shape == (0, 2, 2, 5, 5) and q.shape == (0, 2, 2, 2, 2)


@pytest.mark.parametrize("C,s,sp,tp", [(2, 1, "reflect", "replicate"), (1, 2, "zeros", "zeros")])
def test_gradcheck_float64(C, s, sp, tp):
    x, sw, tw = (t.requires_grad_() for t in _inputs(1, C, 3, 4, 4, 3, torch.float64))
    fn = lambda x, sw, tw: vidops.motion_band_pass(x, sw, tw, s, sp, tp, backend="triton")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, sw, tw), fast_mode=True)


def test_opcheck():
    x, sw, tw = (t.requires_grad_() for t in _inputs(1, 2, 3, 4, 5, 3))
    torch.library.opcheck(torch.ops.vidops.motion_band_pass.default,
                          (x, sw, tw, 3, "reflect", "valid", "triton"))


def test_torch_compile_fullgraph():
    """The custom op traces into one graph. aot_eager keeps the test fast: inductor gives the same
    result but spends ~30 s compiling on a CPU-only box."""
    x, sw, tw = _inputs(1, 2, 3, 4, 5, 3)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(x, sw, tw):
        return vidops.motion_band_pass(x, sw, tw, 3, "reflect", "valid", backend="triton") * 2.0

    torch.testing.assert_close(f(x, sw, tw), 2.0 * mbp.forward(x, sw, tw, 3, "reflect", "valid"))


# ---- busy_quiet ------------------------------------------------------------------------------------

BQ_CASES = [
    ("first", None, 5, {}),
    ("mean_minus_busy", None, 3, {}),
    ("first", 0.625, 5, dict(block_w=16, rows=4)),      # fused resize across chunks and strips
    ("mean_minus_busy", 0.625, 3, dict(block_w=16, rows=4)),
    ("first", 1.5, 3, {}),                              # upsampling quiet
]


@pytest.mark.parametrize("quiet,scale,k,cfg", BQ_CASES, ids=[f"{c[0]}-{c[1]}-k{c[2]}" for c in BQ_CASES])
def test_busy_quiet_matches_reference(quiet, scale, k, cfg):
    clip, sw, tw = _inputs(1, 2, 3, 9, 19, k)
    busy, q = bq.forward(clip, sw, tw, quiet, scale, **cfg)
    rb64, rq64 = ref_busy_quiet(clip.double(), sw.double(), tw.double(), quiet, scale)
    rb32, rq32 = ref_busy_quiet(clip, sw, tw, quiet, scale)
    sb, sq = ref_busy_quiet(clip.double().abs(), sw.double().abs(), tw.double().abs(), quiet, scale)
    if quiet == "mean_minus_busy":  # |mean - busy| <= mean|x| + |busy|
        sq = ref_busy_quiet(clip.double().abs(), sw.double().abs(), tw.double().abs(), "first", scale)[1] + sq
    assert busy.is_contiguous() and q.is_contiguous() and busy.dtype == q.dtype == clip.dtype
    assert_close_to_reference(busy, rb64, rb32, sb, name="busy")
    assert_close_to_reference(q, rq64, rq32, sq, name="quiet")


def test_busy_quiet_op_autograd_channels_last():
    """Through vidops.busy_quiet(backend="triton"): the outputs of a channels_last_3d clip and the
    gradients (busy through the motion band-pass backward) match the reference's autograd."""
    clip, sw, tw = _inputs(1, 2, 3, 6, 7, 3, torch.float64)
    clip = clip.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    sw.requires_grad_()
    tw.requires_grad_()
    busy, q = vidops.busy_quiet(clip, sw, tw, "mean_minus_busy", 0.5, backend="triton")
    rb, rq = ref_busy_quiet(clip, sw, tw, "mean_minus_busy", 0.5)
    torch.testing.assert_close(busy, rb)
    torch.testing.assert_close(q, rq)
    gb, gq = torch.randn_like(busy), torch.randn_like(q)
    got = torch.autograd.grad((busy, q), (clip, sw, tw), (gb, gq))
    want = torch.autograd.grad((rb, rq), (clip, sw, tw), (gb, gq))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
