"""vidops.models: every model runs forward and backward in both impls ("vidops": the fused ops;
"reference": the authors'-style plain PyTorch) and both give the same outputs and gradients from
the same weights (float64); the parameter counts are the authors' and the thesis's; the TSN input
layout equals the clip layout; a whole TSM model compiles with fullgraph=True; the DAN runs a joint
training step with MGDA."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vidops
import vidops.models as M
from vidops.nn.temporal_shift import TemporalShift
from vidops.reference.temporal_shift import temporal_shift_slice_copy as shift_slice_copy

# Relative agreement of the two impls in float64: both sum the same terms in other orders, so
# they differ by rounding only, amplified through the train-mode BatchNorms (measured: <= 3e-11
# of each tensor's largest entry for the RNL model); a wrong wiring or formula gives O(1e-2..1).
REL_TOL = 1e-9
# Gradients that are zero in exact arithmetic (a bias right before a train-mode BatchNorm, the
# logit bias of a softmax) come out as rounding noise in both impls; below this fraction of the
# model's largest gradient both runs must simply agree that they are (numerically) zero.
ZERO_TOL = 1e-9


def _activate(model: nn.Module) -> nn.Module:
    """Make every zero-initialised residual branch active (BN gamma/beta of the laterals, RNL and
    attention blocks; the channel gate's and SE's last Linear), so the comparison sees them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=g))
                m.bias.copy_(torch.empty_like(m.bias).normal_(0, 0.1, generator=g))
            for name in ("W_v2", "W2"):
                lin = getattr(m, name, None)
                if isinstance(lin, nn.Linear):
                    lin.weight.copy_(torch.empty_like(lin.weight).normal_(0, 0.05, generator=g))
                    lin.bias.copy_(torch.empty_like(lin.bias).normal_(0, 0.05, generator=g))
    return model


def _forward_backward(model, x):
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    g = torch.Generator().manual_seed(2)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], x.grad, grads


def _assert_rel_close(a, b, name, zero_scale=0.0):
    assert a.shape == b.shape, name
    assert torch.isfinite(a).all() and torch.isfinite(b).all(), f"{name}: non-finite"
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-300)
    if scale <= ZERO_TOL * zero_scale:
        return  # numerically zero in both runs
    err = (a - b).abs().max().item()
    assert err <= REL_TOL * scale, f"{name}: max abs difference {err:.3e} > {REL_TOL:g} x {scale:.3e}"


def _to_tsn(x):
    N, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(N, T * C, H, W)


CASES = {
    "tsm": (lambda: M.tsm_resnet50(5, num_segments=3, dropout=0.0), (2, 3, 3, 32, 32)),
    "bqn": (lambda: M.bqn_resnet50(5, num_segments=2, dropout=0.0), (1, 3, 6, 56, 56)),
    "rnl": (lambda: M.rnl_tsm_resnet50(5, num_segments=3, dropout=0.0), (2, 3, 3, 48, 48)),
    "se+rnl-dot": (lambda: M.rnl_tsm_resnet50(5, num_segments=3, attention="se+rnl", mode="dot", dropout=0.0),
                   (2, 3, 3, 32, 32)),
    "cpa": (lambda: M.rnl_tsm_resnet50(5, num_segments=3, attention="cpa", dropout=0.0), (2, 3, 3, 32, 32)),
    "se+cpa": (lambda: M.rnl_tsm_resnet50(5, num_segments=2, attention="se+cpa", dropout=0.0), (2, 3, 2, 32, 32)),
    "nl": (lambda: M.nl_tsm_resnet50(5, num_segments=3, dropout=0.0), (2, 3, 3, 48, 48)),
    "dan": (lambda: M.dan_tsm_resnet50(5, num_segments=2, frames_per_segment=4, dropout=0.0), (2, 3, 8, 32, 32)),
    "tesnet": (lambda: M.tesnet_resnet50(5, K=5, D=2, dropout=0.0), (2, 3, 5, 32, 32)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_impls_agree_forward_and_backward(case):
    build, shape = CASES[case]
    model = _activate(build()).double().train()
    x = torch.randn(shape, dtype=torch.float64)
    assert M.impls(model) == {"vidops"}
    out_v, gx_v, grads_v = _forward_backward(model, x)
    with torch.no_grad():
        out_tsn = model(_to_tsn(x))
    for a, b in zip(out_v, out_tsn if isinstance(out_tsn, tuple) else (out_tsn,)):
        _assert_rel_close(a, b, f"{case}: TSN layout vs clip layout")
    M.set_impl(model, "reference")
    assert M.impls(model) == {"reference"}
    out_r, gx_r, grads_r = _forward_backward(model, x)
    for i, (a, b) in enumerate(zip(out_v, out_r)):
        _assert_rel_close(a, b, f"{case}: output {i}")
    _assert_rel_close(gx_v, gx_r, f"{case}: input gradient")
    assert grads_v.keys() == grads_r.keys()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads_v) == trainable, f"{case}: parameters without gradient: {sorted(trainable - set(grads_v))}"
    largest = max(g.abs().max().item() for g in grads_v.values())
    for n in grads_v:
        _assert_rel_close(grads_v[n], grads_r[n], f"{case}: gradient of {n}", zero_scale=largest)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_thesis_table_4_6():
    """Table 4.6 (M parameters, 400 classes): baseline 24.33, +5 NL 31.69, +5 RNL 35.48,
    +5 [SE+RNL] 35.95, +5 SE 24.79 (the SE reduction 16 reproduces it)."""
    with torch.device("meta"):
        tsm = M.tsm_resnet50(400)
        nl = M.nl_tsm_resnet50(400)
        rnl = M.rnl_tsm_resnet50(400)
        rnl_no_gate = M.rnl_tsm_resnet50(400, channel_gate=False)
        se_rnl = M.rnl_tsm_resnet50(400, attention="se+rnl")
        cpa = M.rnl_tsm_resnet50(400, attention="cpa")
        se_cpa = M.rnl_tsm_resnet50(400, attention="se+cpa")
    assert _count(tsm) == 24_327_632
    assert _count(nl) == 31_686_096
    assert _count(rnl) == 35_747_025  # the released model: + the channel gate (263,937)
    assert round(_count(rnl_no_gate) / 1e6, 2) == 35.48
    assert round(_count(se_rnl) / 1e6, 2) == 35.95
    se = _count(se_rnl) - _count(rnl_no_gate)
    assert round((_count(tsm) + se) / 1e6, 2) == 24.79
    pyramid = 1 + 27 + 147 + 243
    assert _count(cpa) - _count(tsm) == 2 * (pyramid + 2 * 512) + 3 * (pyramid + 2 * 1024)
    assert _count(se_cpa) - _count(cpa) == se


def test_dan_and_tesnet_parts():
    dan = M.dan_tsm_resnet50(400, num_segments=8, frames_per_segment=8, D=1)
    assert _count(dan.pwtp) == 9_686  # PWTP config #7 at T=8, D=1 (the thesis's 9.7k)
    assert _count(dan.classifier) == 24_327_632
    assert dan.classifier.state_dict().keys() == M.tsm_resnet50(400).state_dict().keys()
    tes = M.tesnet_resnet50(400)
    assert _count(tes.tsp) == 10 * 10 + 30 * 10
    assert not any(isinstance(m, TemporalShift) for m in tes.modules())


def test_dan_joint_training_step_with_mgda():
    torch.manual_seed(0)
    model = M.dan_tsm_resnet50(3, num_segments=2, frames_per_segment=4, dropout=0.0).train()
    x = torch.randn(2, 3, 8, 32, 32)
    target = torch.tensor([0, 2])
    # the two gradients on the PWTP parameters, from the model's own forward
    logits, enopr = model(x)
    l1, l2 = enopr.mean(), F.cross_entropy(logits, target)
    p1, p2 = list(model.pwtp.parameters()), list(model.classifier.parameters())
    g1 = torch.autograd.grad(l1, p1, retain_graph=True, allow_unused=True)
    g2 = torch.autograd.grad(l2, p1 + p2, allow_unused=True)
    before = [p.detach().clone() for p in p1 + p2]
    lr = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = model.joint_training_step(opt, x, target)
    alpha = out["alpha"]
    assert 0.0 <= alpha <= 1.0
    assert out["l1"] == pytest.approx(l1.item(), rel=1e-5)
    assert out["l2"] == pytest.approx(l2.item(), rel=1e-5)
    assert alpha == pytest.approx(vidops.mgda_alpha(g1, g2[:len(p1)]).item(), rel=1e-4, abs=1e-6)
    for p, a, b, old in zip(p1, g1, g2[:len(p1)], before):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        want = alpha * a + (1 - alpha) * b
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(p.detach(), old - lr * want, rtol=1e-4, atol=1e-7)
    moved = sum(int(not torch.equal(p.detach(), old)) for p, old in zip(p1 + p2, before))
    assert moved > len(p1)  # both the PWTP and the classifier took the step
    for p, b in zip(p2, g2[len(p1):]):
        torch.testing.assert_close(p.grad, torch.zeros_like(p) if b is None else b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compile_whole_tsm_fullgraph(backend):
    """fullgraph=True fails on any graph break; aot_eager also traces every op's fake
    implementation and autograd formula. Inductor's code generation for a whole ResNet-50 takes
    minutes on a small CPU, so it runs with the slow tests."""
    model = M.tsm_resnet50(4, num_segments=2).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, fullgraph=True, backend=backend)(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["rnl", "bqn", "dan"])
def test_compile_models_with_fused_ops_fullgraph(case):
    build = {"rnl": lambda: M.rnl_tsm_resnet50(4, num_segments=2),
             "bqn": lambda: M.bqn_resnet50(4, num_segments=2),
             "dan": lambda: M.dan_tsm_resnet50(4, num_segments=2, frames_per_segment=3)}[case]
    shape = {"rnl": (1, 3, 2, 32, 32), "bqn": (1, 3, 6, 56, 56), "dan": (1, 3, 6, 32, 32)}[case]
    model = build().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_set_impl_and_bad_impl():
    model = M.rnl_tsm_resnet50(3, num_segments=2).eval()
    kinds = {type(m).__name__ for m in model.modules() if hasattr(m, "impl")}
    assert {"TemporalShift", "DiagonalwiseRegionNonLocal", "ChannelGate"} <= kinds
    assert M.set_impl(model, "reference") is model and M.impls(model) == {"reference"}
    with pytest.raises(ValueError, match="impl"):
        M.set_impl(model, "fast")
    with pytest.raises(ValueError, match="impl"):
        M.tsm_resnet50(3, impl="fast")
    model.base_model.layer2[0].nl.impl = "fast"
    with pytest.raises(ValueError, match="DiagonalwiseRegionNonLocal: impl"):
        model(torch.randn(1, 3, 2, 32, 32))


def test_bad_inputs_name_the_model():
    tsm = M.tsm_resnet50(3, num_segments=2)
    with pytest.raises(ValueError, match="TSMResNet50.*\\(N, 3, 2, H, W\\)"):
        tsm(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="TSMResNet50"):
        tsm(torch.randn(1, 9, 32, 32))
    bqn = M.bqn_resnet50(3, num_segments=1)
    with pytest.raises(ValueError, match="BQNResNet50: H and W must be >= 56"):
        bqn(torch.randn(1, 3, 3, 48, 48))
    with pytest.raises(ValueError, match="BQNResNet50"):
        bqn(torch.randn(1, 3, 2, 64, 64))
    with pytest.raises(ValueError, match="num_classes"):
        M.tsm_resnet50(0)
    with pytest.raises(ValueError, match="attention"):
        M.rnl_tsm_resnet50(3, attention="gc")


@pytest.mark.parametrize("C", [8, 20])
def test_temporal_shift_layer_as_the_models_use_it(C):
    """Both impls of the models' shift layer are TSM's shift: fold = C // 8 channels from t+1, the
    next fold from t-1, zeros at the ends, the rest unchanged."""
    T, N = 3, 2
    x = torch.randn(N * T, C, 4, 5, dtype=torch.float64)
    v = x.view(N, T, C, 4, 5)
    fold = C // 8
    want = torch.zeros_like(v)
    for t in range(T):
        if t + 1 < T:
            want[:, t, :fold] = v[:, t + 1, :fold]
        if t >= 1:
            want[:, t, fold:2 * fold] = v[:, t - 1, fold:2 * fold]
        want[:, t, 2 * fold:] = v[:, t, 2 * fold:]
    want = want.view_as(x)
    assert torch.equal(shift_slice_copy(x, T), want)
    assert torch.equal(vidops.temporal_shift(x, T, backend="reference"), want)
    conv = nn.Conv2d(C, 2, 1).double()
    for impl in ("vidops", "reference"):
        layer = TemporalShift(conv, T, impl=impl)
        assert layer.net is conv and layer.num_segments == T and layer.fold_div == 8 and layer.impl == impl
        torch.testing.assert_close(layer(x), conv(want), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="TemporalShift.*num_segments"):
        TemporalShift(conv, 0)
    with pytest.raises(ValueError, match="temporal_shift.*multiple of num_segments"):
        TemporalShift(conv, 4)(x)
