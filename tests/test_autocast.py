"""torch.autocast: every op's rule (the dtypes it takes under autocast) and every vidops.nn
module's forward and backward under torch.autocast("cpu", dtype=torch.bfloat16)."""
import pytest
import torch

import vidops
import vidops.nn as vnn

BF16 = torch.bfloat16


def autocast():
    return torch.autocast("cpu", dtype=BF16)


def _same(a, b):
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert x.dtype == y.dtype and x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=0, atol=0)


# ---- each op's rule: under autocast == outside autocast on the dtypes the rule documents ---------

def test_band_pass_takes_x_as_is_and_float32_weights():
    x = torch.randn(1, 2, 4, 9, 9)
    sw, tw = torch.randn(2, 3, 3), torch.randn(2, 3)
    for xin in (x, x.to(BF16)):
        with autocast():
            got = vidops.motion_band_pass(xin, sw.to(BF16), tw.to(BF16))
        _same(got, vidops.motion_band_pass(xin, sw.to(BF16).float(), tw.to(BF16).float()))
    clip = torch.randn(1, 2, 6, 9, 9)
    with autocast():
        got = vidops.busy_quiet(clip, sw.to(BF16), tw, "mean_minus_busy", 0.5)
    _same(got, vidops.busy_quiet(clip, sw.to(BF16).float(), tw, "mean_minus_busy", 0.5))


def test_depthwise_conv3d_on_cpu_takes_x_as_is():
    x, w = torch.randn(1, 3, 4, 5, 6), torch.randn(3, 3, 3, 3)
    for xin in (x, x.to(BF16)):
        with autocast():
            got = vidops.depthwise_conv3d(xin, w)
        _same(got, vidops.depthwise_conv3d(xin, w))
        assert got.dtype == xin.dtype


def test_projections_take_the_basis_in_x_dtype():
    x, basis = torch.randn(2, 3, 4, 5, 6), torch.randn(2, 8, 3, 3).to(BF16)
    with autocast():
        got = vidops.pixelwise_temporal_projection(x, basis)
    _same(got, vidops.pixelwise_temporal_projection(x, basis.float()))
    x, basis = torch.randn(2, 3, 5, 4, 4), torch.rand(2, 5, 2).to(BF16)
    with autocast():
        got = vidops.temporal_squeeze(x, basis)
    _same(got, vidops.temporal_squeeze(x, basis.float()))


def test_temporal_relation_and_attention_take_what_autocast_hands_them():
    f = torch.randn(2, 3, 4, 3, 5).to(BF16)
    with autocast():
        got = vidops.temporal_relation(f)
    _same(got, vidops.temporal_relation(f))
    q, v = torch.randn(2, 16, 30).to(BF16), torch.randn(2, 8, 30)
    with autocast():
        got = vidops.region_attention(q, v)          # bf16 q with fp32 v meet in fp32
        shared = vidops.region_attention(q, v.to(BF16))
    _same(got, vidops.region_attention(q.float(), v))
    _same(shared, vidops.region_attention(q, v.to(BF16)))
    assert shared.dtype == BF16


def test_backends_run_with_autocast_off():
    """Inside a backend the float32 GEMMs of the cpu region attention stay float32 (the fault was
    "s must be a contiguous float32/float64 matrix, got BFloat16" from the C++ block step)."""
    q, v = torch.randn(1, 8, 300).to(BF16), torch.randn(1, 8, 300).to(BF16)
    q.requires_grad_(True)
    with autocast():
        y = vidops.region_attention(q, v, backend="cpu")
        y.float().sum().backward()
    want = vidops.region_attention(q.detach(), v, backend="cpu")
    _same(y.detach(), want)
    assert torch.isfinite(q.grad.float()).all()


# ---- every module under autocast ---------------------------------------------------------------

def _modules():
    # built at collection time: seeded here, so the weights and inputs do not depend on what the
    # collection drew before (the unscaled RNL softmax in bf16 is far off for some draws)
    torch.manual_seed(0)
    N, C, T, H, W = 2, 8, 4, 12, 12
    video = torch.randn(N, C, T, H, W)
    clip3 = torch.randn(N, 3, 6, 20, 20)
    return [
        ("MotionBandPass", vnn.MotionBandPass(3, kernel_size=5), (torch.randn(N, 3, 4, 12, 12),)),
        ("MotionBandPass-stem", vnn.MotionBandPass(3, kernel_size=5, temporal_stride=3), (clip3,)),
        ("BusyQuietSplit", vnn.BusyQuietSplit(3, kernel_size=5, quiet="mean_minus_busy", quiet_scale=0.5), (clip3,)),
        ("BandPassLateral", vnn.BandPassLateral(C, kernel_size=5), (video, torch.randn_like(video))),
        ("PixelWiseTemporalProjection", vnn.PixelWiseTemporalProjection(3, T=4, D=1, conv_channels=6,
                                                                        kernel_size=3, stride=4),
         (torch.randn(N, 3, 4, 16, 16),)),
        ("TemporalSqueezePooling", vnn.TemporalSqueezePooling(K=4, D=2), (video,)),
        ("RegionNonLocal", vnn.RegionNonLocal(C, kernel=(3, 3, 3)), (video,)),
        ("RegionNonLocal-cosine", vnn.RegionNonLocal(C, kernel=3, mode="cosine_softmax"), (video,)),
        ("NonLocal", vnn.NonLocal(C), (video,)),
        ("ChannelGate", vnn.ChannelGate(C), (video,)),
        ("SpatioTemporalSE", vnn.SpatioTemporalSE(C), (video,)),
        ("ConvPyramidAttention", vnn.ConvPyramidAttention(C), (video,)),
        ("AttentionChain", vnn.AttentionChain(C, kernel=(3, 3, 3)), (video,)),
        ("AttentionChain-cpa", vnn.AttentionChain(C, spatial="cpa", channel="se"), (video,)),
    ]


def _randomise(module):
    """Non-zero BN gamma/beta so the residual branches carry a gradient."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
            if isinstance(m, torch.nn.Linear) and m.weight.abs().sum() == 0:
                m.weight.normal_(0, 0.1)


@pytest.mark.parametrize("name,module,inputs", _modules(), ids=[m[0] for m in _modules()])
def test_module_forward_and_backward_under_cpu_bf16_autocast(name, module, inputs):
    _randomise(module)
    inputs = tuple(t.clone().requires_grad_(True) for t in inputs)
    with autocast():
        out = module(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    assert all(torch.isfinite(o.float()).all() for o in outs), name
    for t in inputs:
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert all(g is None or torch.isfinite(g).all() for g in grads), name
    # the same module without autocast agrees to bf16 accuracy (a wrong rule is far off)
    with torch.no_grad():
        ref = module(*(t.detach() for t in inputs))
    for o, r in zip(outs, ref if isinstance(ref, tuple) else (ref,)):
        err = (o.detach().float() - r.float()).abs().max()
        assert err <= 0.1 * r.float().abs().max() + 1e-3, (name, float(err))
