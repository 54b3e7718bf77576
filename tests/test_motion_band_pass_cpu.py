"""The C++ CPU kernels of the motion band-pass family, beyond the all-backend tests: every odd k,
frame widths around the vector widths, reflect borders with H = r + 1, strides > 1 with every
temporal padding, half inputs, strided grads, every ISA path, thread-count independence."""
import pytest
import torch

import vidops
from vidops.reference.busy_quiet import busy_quiet as ref_bq
from vidops.reference.motion_band_pass import motion_band_pass as ref_mbp
from vidops.reference.motion_band_pass import motion_band_pass_backward as ref_bwd

from conftest import backends_for, run_with_cpu_isa
from tolerance import assert_close_to_reference

pytestmark = pytest.mark.skipif("cpu" not in backends_for("motion_band_pass"),
                                reason="vidops._C has no CPU motion band-pass kernel")

fwd = torch.ops.vidops._motion_band_pass_fwd
bwd = torch.ops.vidops._motion_band_pass_bwd


def _inputs(N, C, T, H, W, k, dtype=torch.float64, wdtype=None):
    x = torch.randn(N, C, T, H, W, dtype=dtype)
    sw = (torch.randn(C, k, k) * 10).to(wdtype or dtype)  # per-channel weights that differ
    tw = torch.randn(C, 3).to(wdtype or dtype)
    return x, sw, tw


def _check_all(x, sw, tw, s, sp, tp, factor=2.0):
    """Forward and the three gradients of the kernels against the float64 reference."""
    d = lambda t: t.double()  # noqa: E731
    out = fwd(x, sw, tw, s, sp, tp)
    ref64 = ref_mbp(d(x), d(sw), d(tw), s, sp, tp)
    same = None if x.dtype in (torch.float16, torch.bfloat16) else ref_mbp(x, sw, tw, s, sp, tp)
    assert out.dtype == x.dtype and out.is_contiguous()
    assert_close_to_reference(out, ref64, same, ref_mbp(d(x).abs(), d(sw).abs(), d(tw).abs(), s, sp, tp),
                              factor=factor)
    g = torch.randn(out.shape).to(x.dtype)
    got = bwd(g, x, sw, tw, s, sp, tp)
    want = ref_bwd(d(g), d(x), d(sw), d(tw), s, sp, tp)
    same = (None,) * 3 if x.dtype in (torch.float16, torch.bfloat16) else ref_bwd(g, x, sw, tw, s, sp, tp)
    scales = ref_bwd(d(g).abs(), d(x).abs(), d(sw).abs(), d(tw).abs(), s, sp, tp)
    for name, a, b, c, sc, dt in zip(("grad_x", "grad_sw", "grad_tw"), got, want, same, scales,
                                     (x.dtype, sw.dtype, tw.dtype)):
        assert a.dtype == dt and a.is_contiguous()
        assert_close_to_reference(a, b, c, sc, name=name, factor=factor)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9, 11])
@pytest.mark.parametrize("sp", ["reflect", "zeros"])
def test_every_odd_k_with_reflect_border_at_its_limit(k, sp):
    r = (k - 1) // 2
    H = r + 1  # the smallest frame reflect accepts
    for W in (r + 1, 17, 33):
        _check_all(*_inputs(1, 2, 4, max(H, 1), max(W, 1), k), 1, sp, "replicate")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("W", [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 56, 65])
def test_frame_widths_around_the_vector_widths(W, dtype):
    """float32 frames at least 4 wide take the vectorised temporal fill (one vector width chosen
    per frame width, the last vector of a row overlapping), narrower ones the generic loops."""
    _check_all(*_inputs(1, 2, 6, 9, W, 3 if W < 5 else 5, dtype), 3, "zeros" if W < 5 else "reflect", "valid")
    _check_all(*_inputs(1, 1, 3, 6, W, 1, dtype), 2, "reflect", "zeros")


@pytest.mark.parametrize("k", [3, 5, 7, 9, 11])
def test_float32_unrolled_stencils_every_k_row_remainder_and_width(k):
    """float32 runs stencils with k unrolled at compile time: every spec k, frame heights with
    each remainder mod the 4-row block, widths below, between and above 1 and 2 vectors."""
    r = (k - 1) // 2
    for H, W in ((max(r + 1, 5), 14), (max(r + 1, 6), 9), (max(r + 1, 7), 23), (8, 33), (13, 56)):
        _check_all(*_inputs(2, 3, 5, H, W, k, torch.float32), 1, "reflect", "replicate")
        _check_all(*_inputs(1, 2, 6, H, W, k, torch.float32), 3, "zeros", "valid")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [3, 5, 7, 9, 11])
def test_narrow_frames_through_the_flat_row(k, dtype):
    """Frames narrower than an AVX2 vector (8 floats, 4 doubles) run the forward stencil as one flat
    row of the padded pitch (its positions past each row's end dropped): heights and widths that
    give flat rows of 1 to more than 8 vectors, so every tail block size and the unrolled and
    run-time k meet; the wider ones beside them take the row kernel."""
    r = (k - 1) // 2
    for H, W in ((r + 1, r + 1), (r + 2, 7), (7, 7), (4 + r, 5), (14, 14), (2 * k, r + 3), (1, 9), (3, 15)):
        sp = "reflect" if H > r and W > r else "zeros"
        _check_all(*_inputs(2, 3, 5, H, W, k, dtype), 1, sp, "replicate")


@pytest.mark.parametrize("s", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("tp", ["valid", "replicate", "zeros"])
def test_temporal_strides_and_paddings(s, tp):
    # T not a multiple of the stride: trailing frames no tap reads get a zero gradient
    for T in (3, 7, 11):
        _check_all(*_inputs(2, 2, T, 8, 10, 3), s, "reflect", tp)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(dtype):
    # float32 weights with half x (the master-weight case), and half weights
    for wdtype in (torch.float32, dtype):
        x, sw, tw = _inputs(1, 3, 6, 12, 19, 5, dtype, wdtype)
        _check_all(x, sw, tw, 1, "reflect", "replicate")
        _check_all(x, sw, tw, 3, "zeros", "valid")


def test_float32_matches_float64_reference_at_the_stem_shape():
    x, sw, tw = _inputs(1, 3, 6, 112, 112, 9, torch.float32)
    sw = vidops.log_kernel(1.1, 9, torch.float32).expand(3, 9, 9) + sw / 100
    _check_all(x, sw.contiguous(), tw, 3, "reflect", "valid")


def test_strided_x_and_grad_give_identical_results():
    x, sw, tw = _inputs(2, 3, 7, 10, 12, 5, torch.float32)
    g = torch.randn(2, 3, 7, 10, 12)
    for xv, gv in [(x.to(memory_format=torch.channels_last_3d), g.to(memory_format=torch.channels_last_3d)),
                   (x.transpose(3, 4).contiguous().transpose(3, 4), g.transpose(0, 2).contiguous().transpose(0, 2)),
                   (torch.randn(2, 3, 14, 10, 24)[:, :, ::2, :, ::2], torch.randn(3, 3, 7, 10, 12)[1:])]:
        x1, g1 = xv.contiguous(), gv.contiguous()
        assert torch.equal(fwd(xv, sw, tw, 1, "reflect", "replicate"), fwd(x1, sw, tw, 1, "reflect", "replicate"))
        for a, b in zip(bwd(gv, xv, sw, tw, 1, "reflect", "replicate"), bwd(g1, x1, sw, tw, 1, "reflect", "replicate")):
            assert torch.equal(a, b)


def test_empty_tensors():
    for shape in [(0, 3, 6, 9, 9), (2, 0, 6, 9, 9), (1, 2, 6, 0, 9), (1, 2, 6, 9, 0)]:
        x = torch.randn(shape)
        sw, tw = torch.randn(shape[1], 3, 3), torch.randn(shape[1], 3)
        out = fwd(x, sw, tw, 1, "zeros", "replicate")
        assert out.shape == shape
        gx, gs, gt = bwd(torch.randn(shape), x, sw, tw, 1, "zeros", "replicate")
        assert gx.shape == shape and gs.shape == sw.shape and gt.shape == tw.shape
        assert not gs.any() and not gt.any() and not gx.any()


def test_results_do_not_depend_on_the_thread_count():
    x, sw, tw = _inputs(3, 4, 8, 20, 23, 7, torch.float32)
    g = torch.randn(3, 4, 8, 20, 23)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append((fwd(x, sw, tw, 1, "reflect", "replicate"),) + bwd(g, x, sw, tw, 1, "reflect", "replicate"))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_wrong_arguments_raise():
    x, sw, tw = _inputs(1, 2, 6, 8, 8, 3, torch.float32)
    # padding names are checked once, in Python (the C++ op checks what its indexing needs)
    with pytest.raises(ValueError, match="motion_band_pass: spatial_padding"):
        vidops.motion_band_pass(x, sw, tw, 1, "circular", "valid", backend="cpu")
    with pytest.raises(ValueError, match="motion_band_pass: temporal_padding"):
        vidops.motion_band_pass(x, sw, tw, 1, "reflect", "same", backend="cpu")
    with pytest.raises(RuntimeError, match="spatial_weight"):
        fwd(x, sw[:, :2, :2], tw, 1, "reflect", "valid")
    with pytest.raises(RuntimeError, match="reflect padding"):
        fwd(x[..., :1], sw, tw, 1, "reflect", "valid")
    with pytest.raises(RuntimeError, match="grad_out"):
        bwd(torch.randn(1, 2, 5, 8, 8), x, sw, tw, 1, "reflect", "valid")


@pytest.mark.parametrize("scale", [None, 0.625, 0.5, 0.37, 1.3, 1.01])
@pytest.mark.parametrize("quiet", ["first", "mean_minus_busy"])
def test_busy_quiet_scales(quiet, scale):
    for dtype in (torch.float64, torch.float32):
        clip, sw, tw = _inputs(2, 3, 6, 40, 27, 9, dtype)
        busy, q = torch.ops.vidops._busy_quiet_fwd(clip.to(memory_format=torch.channels_last_3d), sw, tw, quiet,
                                                   -1.0 if scale is None else scale)
        b64, q64 = ref_bq(clip.double(), sw.double(), tw.double(), quiet, scale)
        bs, qs = ref_bq(clip, sw, tw, quiet, scale)
        assert busy.is_contiguous() and q.is_contiguous() and q.shape == q64.shape
        b_abs = ref_mbp(clip.double().abs(), sw.double().abs(), tw.double().abs(), 3, "reflect", "valid")
        assert_close_to_reference(busy, b64, bs, b_abs, name="busy")
        # quiet's terms are at most busy's (plus the frames): busy's scale bounds its rounding
        assert_close_to_reference(q, q64, qs, b_abs + clip.double().abs().max(), name="quiet")
        if quiet == "first" and scale is None:
            assert torch.equal(q, clip[:, :, 0::3])


_ISA_SCRIPT = r"""
import torch, vidops
from vidops.reference.motion_band_pass import motion_band_pass as ref, motion_band_pass_backward as rb
torch.manual_seed(0)
worst = 0.0
for (T, s, tp, sp, H, W, k) in [(6, 3, 'valid', 'reflect', 13, 37, 9), (5, 1, 'replicate', 'zeros', 9, 20, 7),
                                (4, 2, 'zeros', 'reflect', 7, 5, 5), (3, 1, 'valid', 'reflect', 6, 70, 11),
                                (5, 1, 'replicate', 'reflect', 12, 6, 11), (4, 1, 'replicate', 'reflect', 7, 7, 7)]:
  for dt, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):  # float32: the unrolled-k stencils
    x = torch.randn(2, 2, T, H, W, dtype=torch.float64)
    sw, tw = torch.randn(2, k, k, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    y = torch.ops.vidops._motion_band_pass_fwd(x.to(dt), sw.to(dt), tw.to(dt), s, sp, tp)
    g = torch.randn_like(y)
    got = (y,) + torch.ops.vidops._motion_band_pass_bwd(g, x.to(dt), sw.to(dt), tw.to(dt), s, sp, tp)
    want = (ref(x, sw, tw, s, sp, tp),) + rb(g.double(), x, sw, tw, s, sp, tp)
    for a, b in zip(got, want):
        worst = max(worst, ((a.double() - b).abs().max() / b.abs().max()).item() / tol)
print(worst)
"""


@pytest.mark.parametrize("isa", ["base", "avx2"])
def test_every_isa_path(isa):
    """The kernels pick AVX-512, AVX2+FMA or baseline code at run time; VIDOPS_CPU_ISA caps it."""
    out = run_with_cpu_isa(_ISA_SCRIPT, isa)
    assert float(out.strip().splitlines()[-1]) < 1.0  # error / the dtype's tolerance
