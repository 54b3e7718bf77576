"""The input contracts of the ops and modules: fresh outputs, empty batches and zero-size
dimensions on every backend, clear errors for the wrong kind of argument."""
import math

import numpy as np
import pytest
import torch

import vidops
import vidops.nn as vnn

from conftest import backends_for


def _shares_memory(out, t):
    return out.numel() > 0 and out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()


def _bq_weights(C=1, k=3):
    return torch.randn(C, k, k), torch.randn(C, 3)


# ---- 9: outputs are fresh, empty batches give empty outputs --------------------------------------

@pytest.mark.parametrize("backend", backends_for("busy_quiet"))
def test_busy_quiet_outputs_never_alias_the_clip(backend):
    clip = torch.randn(1, 1, 3, 8, 8)
    sw, tw = _bq_weights()
    busy, quiet = vidops.busy_quiet(clip, sw, tw, backend=backend)
    assert not _shares_memory(quiet, clip) and not _shares_memory(busy, clip)
    torch.testing.assert_close(quiet, clip[:, :, 0::3])
    quiet.add_(1)  # writing the output leaves the clip alone
    assert not torch.equal(quiet, clip[:, :, 0::3])


@pytest.mark.parametrize("backend", backends_for("busy_quiet"))
def test_busy_quiet_empty_batch(backend):
    clip = torch.randn(0, 2, 6, 8, 8, requires_grad=True)
    sw, tw = _bq_weights(2)
    sw.requires_grad_(True)
    for quiet, scale in (("first", None), ("mean_minus_busy", 0.5)):
        busy, q = vidops.busy_quiet(clip, sw, tw, quiet, scale, backend=backend)
        assert busy.shape == (0, 2, 2, 8, 8) and q.shape == (0, 2, 2, *((4, 4) if scale else (8, 8)))
        assert busy._base is None and q._base is None
        (busy.sum() + q.sum()).backward()
        assert clip.grad.shape == clip.shape and torch.equal(sw.grad, torch.zeros_like(sw))


def test_busy_quiet_split_module_fresh_and_empty():
    m = vnn.BusyQuietSplit(2, kernel_size=3)
    clip = torch.randn(1, 2, 3, 8, 8)
    busy, quiet = m(clip)
    assert not _shares_memory(quiet, clip)
    busy, quiet = m(torch.randn(0, 2, 6, 8, 8))
    assert busy.shape == quiet.shape == (0, 2, 2, 8, 8)
    m4 = vnn.BusyQuietSplit(2, kernel_size=3, num_segments=2)
    busy, quiet = m4(torch.randn(0, 6, 8, 8))
    assert busy.shape == quiet.shape == (0, 2, 8, 8)


# ---- 10: empty batches through the attention modules --------------------------------------------

@pytest.mark.parametrize("make", [lambda: vnn.ChannelGate(8), lambda: vnn.SpatioTemporalSE(8),
                                  lambda: vnn.AttentionChain(8, kernel=(3, 3, 3)),
                                  lambda: vnn.AttentionChain(8, spatial="cpa"),
                                  lambda: vnn.RegionNonLocal(8, kernel=3)],
                         ids=["ChannelGate", "SpatioTemporalSE", "AttentionChain", "AttentionChain-cpa",
                              "RegionNonLocal"])
def test_attention_modules_take_empty_batches(make):
    m = make().eval()
    x = torch.randn(0, 8, 2, 4, 4, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape


# ---- 11: zero-size C, T, H, W agree on every backend --------------------------------------------

ZERO_MBP = [((1, 0, 4, 6, 6), 0, "reflect"), ((1, 2, 4, 0, 6), 2, "zeros"), ((1, 2, 4, 6, 0), 2, "zeros"),
            ((0, 2, 4, 6, 6), 2, "reflect")]


@pytest.mark.parametrize("shape,C,padding", ZERO_MBP, ids=["C0", "H0", "W0", "N0"])
def test_motion_band_pass_zero_sizes_agree(shape, C, padding):
    x = torch.randn(shape, requires_grad=True)
    sw, tw = torch.randn(C, 3, 3, requires_grad=True), torch.randn(C, 3, requires_grad=True)
    for backend in backends_for("motion_band_pass"):
        y = vidops.motion_band_pass(x, sw, tw, 1, padding, "replicate", backend=backend)
        assert y.shape == (shape[0], C, 4, shape[3], shape[4]), backend
        gx, gs, gt = torch.autograd.grad(y.sum(), (x, sw, tw))
        assert gx.shape == x.shape and torch.equal(gs, torch.zeros_like(gs)) and gt.abs().sum() == 0, backend


def test_motion_band_pass_zero_frames_is_one_clear_error_everywhere():
    x, sw, tw = torch.randn(1, 2, 0, 6, 6), torch.randn(2, 3, 3), torch.randn(2, 3)
    for backend in backends_for("motion_band_pass"):
        with pytest.raises(ValueError, match=r"vidops.motion_band_pass: x has T=0 frames"):
            vidops.motion_band_pass(x, sw, tw, backend=backend)


@pytest.mark.parametrize("shape", [(1, 0, 4, 5, 6), (1, 3, 0, 5, 6), (1, 3, 4, 0, 6), (1, 3, 4, 5, 0),
                                   (0, 3, 4, 5, 6)], ids=["C0", "T0", "H0", "W0", "N0"])
def test_depthwise_conv3d_zero_sizes_agree(shape):
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(shape[1], 3, 3, 3, requires_grad=True)
    for backend in backends_for("depthwise_conv3d"):
        y = vidops.depthwise_conv3d(x, w, backend=backend)
        assert y.shape == x.shape, backend
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w)), backend


def test_busy_quiet_zero_channels_agree():
    clip = torch.randn(1, 0, 6, 8, 8)
    sw, tw = _bq_weights(0)
    for backend in backends_for("busy_quiet"):
        busy, q = vidops.busy_quiet(clip, sw, tw, "first", 0.5, backend=backend)
        assert busy.shape == (1, 0, 2, 8, 8) and q.shape == (1, 0, 2, 4, 4), backend


# ---- 12: non-tensor weights and sparse inputs -----------------------------------------------------

@pytest.mark.parametrize("bad", [0.5, [[1.0]], np.ones((1, 3, 3)), None], ids=["float", "list", "numpy", "None"])
def test_non_tensor_weights_are_named(bad):
    x, (sw, tw) = torch.randn(1, 1, 3, 8, 8), _bq_weights()
    kind = type(bad).__name__
    with pytest.raises(TypeError, match=rf"vidops.motion_band_pass: spatial_weight must be a torch.Tensor, got {kind}"):
        vidops.motion_band_pass(x, bad, tw)
    with pytest.raises(TypeError, match=rf"vidops.motion_band_pass: temporal_weight must be a torch.Tensor, got {kind}"):
        vidops.motion_band_pass(x, sw, bad)
    with pytest.raises(TypeError, match=rf"vidops.busy_quiet: spatial_weight must be a torch.Tensor, got {kind}"):
        vidops.busy_quiet(x, bad, tw)
    with pytest.raises(TypeError, match=rf"vidops.busy_quiet: clip must be a torch.Tensor, got {kind}"):
        vidops.busy_quiet(bad, sw, tw)


def _sparse_calls():
    sp = lambda t: t.to_sparse()  # noqa: E731
    x5 = torch.randn(1, 2, 3, 8, 8)
    sw, tw = torch.randn(2, 3, 3), torch.randn(2, 3)
    return [
        ("motion_band_pass", "x", lambda: vidops.motion_band_pass(sp(x5), sw, tw)),
        ("motion_band_pass", "spatial_weight", lambda: vidops.motion_band_pass(x5, sp(sw), tw)),
        ("busy_quiet", "clip", lambda: vidops.busy_quiet(sp(x5), sw, tw)),
        ("busy_quiet", "temporal_weight", lambda: vidops.busy_quiet(x5, sw, sp(tw))),
        ("depthwise_conv3d", "x", lambda: vidops.depthwise_conv3d(sp(x5), torch.randn(2, 3, 3, 3))),
        ("depthwise_conv3d", "weight", lambda: vidops.depthwise_conv3d(x5, sp(torch.randn(2, 3, 3, 3)))),
        ("temporal_relation", "f", lambda: vidops.temporal_relation(sp(x5))),
        ("pixelwise_temporal_projection", "x",
         lambda: vidops.pixelwise_temporal_projection(sp(x5), torch.randn(1, 3, 4, 4))),
        ("pixelwise_temporal_projection", "basis",
         lambda: vidops.pixelwise_temporal_projection(x5, sp(torch.randn(1, 3, 4, 4)))),
        ("temporal_squeeze", "basis", lambda: vidops.temporal_squeeze(x5, sp(torch.randn(1, 3, 1)))),
        ("temporal_squeeze", "x", lambda: vidops.temporal_squeeze(sp(x5), torch.randn(1, 3, 1))),
        ("region_attention", "q", lambda: vidops.region_attention(sp(torch.randn(1, 4, 9)), torch.randn(1, 4, 9))),
        ("region_attention", "v", lambda: vidops.region_attention(torch.randn(1, 4, 9), sp(torch.randn(1, 4, 9)))),
        ("region_attention", "k", lambda: vidops.region_attention(torch.randn(1, 4, 9), torch.randn(1, 4, 9),
                                                                 sp(torch.randn(1, 4, 9)))),
    ]


@pytest.mark.parametrize("op,arg,call", _sparse_calls(), ids=[f"{o}-{a}" for o, a, _ in _sparse_calls()])
def test_sparse_inputs_are_rejected_by_name(op, arg, call):
    with pytest.raises(TypeError, match=rf"vidops.{op}: {arg} must be a dense \(strided\) tensor, got a torch.sparse_coo"):
        call()


# ---- 13: busy_quiet's argument names and numbers; backend type --------------------------------------

def test_busy_quiet_names_its_clip():
    sw, tw = _bq_weights()
    with pytest.raises(ValueError, match=r"vidops.busy_quiet: clip must be 5-D"):
        vidops.busy_quiet(torch.randn(1, 3, 8, 8), sw, tw)
    with pytest.raises(TypeError, match=r"vidops.busy_quiet: spatial_weight must have clip's dtype"):
        vidops.busy_quiet(torch.randn(1, 1, 3, 8, 8, dtype=torch.float64), sw, tw.double())
    with pytest.raises(ValueError, match=r"vidops.busy_quiet: clip has T=0 frames"):
        vidops.busy_quiet(torch.randn(1, 1, 0, 8, 8), sw, tw)


@pytest.mark.parametrize("scale,exc,text", [(math.inf, ValueError, "positive finite number"),
                                            (math.nan, ValueError, "positive finite number"),
                                            (-1.0, ValueError, "positive finite number"),
                                            (1e10, ValueError, "too large to allocate"),
                                            (True, TypeError, "quiet_scale must be a real number or None, got bool"),
                                            ("0.5", TypeError, "quiet_scale must be a real number or None, got str")])
def test_busy_quiet_quiet_scale(scale, exc, text):
    sw, tw = _bq_weights()
    with pytest.raises(exc, match=rf"vidops.busy_quiet: .*{text}"):
        vidops.busy_quiet(torch.randn(1, 1, 3, 8, 8), sw, tw, quiet_scale=scale)


def test_bools_are_not_numbers():
    with pytest.raises(ValueError, match=r"vidops.log_kernel: sigma"):
        vidops.log_kernel(True, 3)
    with pytest.raises(ValueError, match=r"vidops.log_kernel: k"):
        vidops.log_kernel(1.0, True)
    x, sw, tw = torch.randn(1, 1, 3, 8, 8), *_bq_weights()
    with pytest.raises(TypeError, match=r"vidops.motion_band_pass: temporal_stride must be an int, got bool"):
        vidops.motion_band_pass(x, sw, tw, True)
    with pytest.raises(TypeError, match=r"vidops.temporal_squeeze: eps must be a real number, got bool"):
        vidops.temporal_squeeze(torch.randn(1, 2, 3, 4, 4), torch.rand(1, 3, 1), True)


@pytest.mark.parametrize("bad", [3, 1.5, ["cpu"]])
def test_backend_of_the_wrong_type(bad):
    sw, tw = _bq_weights()
    with pytest.raises(TypeError, match=r"vidops.busy_quiet: backend must be a str"):
        vidops.busy_quiet(torch.randn(1, 1, 3, 8, 8), sw, tw, backend=bad)
    with pytest.raises(TypeError, match=r"vidops.depthwise_conv3d: backend must be a str"):
        vidops.depthwise_conv3d(torch.randn(1, 1, 3, 8, 8), torch.randn(1, 3, 3, 3), backend=bad)


# ---- 15: the modules name themselves and their arguments --------------------------------------------

@pytest.mark.parametrize("cls", [vnn.MotionBandPass, vnn.BusyQuietSplit])
def test_band_pass_modules_check_their_arguments(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"vidops.nn.{name}: channels must be a positive int, got -1"):
        cls(-1)
    with pytest.raises(ValueError, match=rf"vidops.nn.{name}: kernel_size must be a positive odd int, got 4"):
        cls(3, kernel_size=4)
    with pytest.raises(ValueError, match=rf"vidops.nn.{name}: sigma must be a positive finite number, got 0"):
        cls(3, sigma=0)


def test_band_pass_lateral_reports_its_own_inputs():
    m = vnn.BandPassLateral(4, kernel_size=3)
    x = torch.randn(4, 3, 8)
    with pytest.raises(ValueError, match=r"vidops.nn.BandPassLateral: q must be \(N, C, T, H, W\) or \(N\*T, C, H, W\), got shape \(4, 3, 8\)"):
        m(x, x)
