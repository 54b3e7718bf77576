"""DAN-X3D-XS / -M: PWTP on every segment into X3D; (logits, ENoPR) like dan_tsm_resnet50; the
joint training step (thesis Algorithm 1) gives the gradients it defines; both impls equal in
float64; parameter counts and multiply-adds (tiny clips: 2 segments of 4 frames, 32^2)."""
import pytest
import torch
import torch.nn.functional as F

import vidops.models as M
from test_x3d_models import assert_rel_close

TINY = dict(num_segments=2, frames_per_segment=4)
X = (1, 3, 8, 32, 32)


def _randomize(model, seed=0):
    """Every residual branch of the X3D active (fresh X3D zeroes each block's last BN gamma) with
    BN gamma in [0.5, 1.5] and small betas; the convs keep their initialisation, so the network
    stays well conditioned and float64 rounding is not amplified beyond recognition."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.classifier.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=g))
                m.bias.copy_(torch.empty_like(m.bias).normal_(0, 0.1, generator=g))
                m.running_var.copy_(torch.empty_like(m.running_var).uniform_(0.5, 1.5, generator=g))
    return model


@pytest.mark.parametrize("factory,shape,params,gmacs", [("dan_x3d_xs", (1, 3, 32, 160, 160), 3803960, 0.70),
                                                         ("dan_x3d_m", (1, 3, 48, 224, 224), 3800219, 4.98)])
def test_size_and_multiply_adds(factory, shape, params, gmacs):
    model = getattr(M, factory)(400)
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(p.numel() for p in model.classifier.parameters()) == 3794274      # pytorchvideo's X3D
    count = M.count_flops(model, shape)
    assert round(count.gmacs, 2) == gmacs
    assert count.by_op["pixelwise_temporal_projection"] > 0 and count.by_op["depthwise_conv3d"] > 0


def test_defaults_are_the_thesis_configurations():
    xs, m = M.dan_x3d_xs(10), M.dan_x3d_m(10)
    assert (xs.num_segments, xs.frames_per_segment, xs.pwtp.T) == (4, 8, 8)
    assert (m.num_segments, m.frames_per_segment, m.pwtp.T) == (16, 3, 3)
    assert xs.classifier.x3d.blocks[5].pool.pool_size == (4, 5, 5)
    assert m.classifier.x3d.blocks[5].pool.pool_size == (16, 7, 7)
    assert len(m.classifier.x3d.blocks[3].res_blocks) == 11


def test_forward_is_x3d_on_the_dynamic_appearance():
    model = _randomize(M.dan_x3d_xs(5, dropout=0.0, **TINY)).eval()
    x = torch.randn(X)
    with torch.no_grad():
        logits, enopr = model(x)
        segments = x.view(1, 3, 2, 4, 32, 32).transpose(1, 2).reshape(2, 3, 4, 32, 32)
        pbar, e = model.pwtp(segments)
        want = model.classifier.x3d(pbar.view(1, 2, 3, 32, 32).transpose(1, 2))
        per_segment = model.classifier(pbar)
    assert logits.shape == (1, 5) and enopr.shape == (1,)
    torch.testing.assert_close(logits, want)
    torch.testing.assert_close(enopr, e.mean().view(1))
    torch.testing.assert_close(per_segment, want.expand(2, 5))           # every segment carries the clip's logits
    with torch.no_grad():
        assert torch.equal(model(x.view(1, 3, 8, 32, 32).transpose(1, 2).reshape(1, 24, 32, 32))[0], logits)


def test_joint_training_step_gradients():
    torch.manual_seed(0)
    model = _randomize(M.dan_x3d_xs(5, dropout=0.0, **TINY)).double().train()
    x = torch.randn(X, dtype=torch.float64)
    target = torch.tensor([3])
    p1, p2 = list(model.pwtp.parameters()), list(model.classifier.parameters())
    logits, enopr = model(x)
    l2 = F.cross_entropy(logits, target)
    g2 = torch.autograd.grad(l2, p1 + p2, retain_graph=True, allow_unused=True)
    g1 = torch.autograd.grad(enopr.mean(), p1, allow_unused=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = model.joint_training_step(opt, x, target, alpha=0.25)
    assert out["alpha"] == 0.25 and abs(out["l2"] - l2.item()) < 1e-9
    for p, a, b in zip(p1, g1, g2[:len(p1)]):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(p.grad, 0.25 * a + 0.75 * b, rtol=1e-7, atol=1e-10)
    for p, b in zip(p2, g2[len(p1):]):
        torch.testing.assert_close(p.grad, b, rtol=1e-7, atol=1e-10)
    assert 0.0 <= model.joint_training_step(opt, x, target)["alpha"] <= 1.0         # MGDA


def test_impls_agree_in_float64():
    ref = _randomize(M.dan_x3d_xs(5, impl="reference", dropout=0.0, **TINY)).double()
    fused = M.dan_x3d_xs(5, dropout=0.0, **TINY).double()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(X, dtype=torch.float64)
    res = []
    for model in (ref, fused):
        # eval: at these tiny shapes a train-mode BatchNorm sees 2 values per channel in stage 4,
        # and its normalisation turns 1e-16 differences into 1e-5
        model.eval()
        xi = x.clone().requires_grad_(True)
        logits, enopr = model(xi)
        (logits.sum() + enopr.sum()).backward()
        res.append((logits.detach(), enopr.detach(), xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    for a, b, what in zip(res[1][:3], res[0][:3], ("logits", "enopr", "grad x")):
        assert_rel_close(a, b, msg=what)
    floor = 1e-6 * max(float(g.norm()) for g in res[0][3].values())
    for n, g in res[0][3].items():
        assert_rel_close(res[1][3][n], g, msg=n, floor=floor)


def test_bad_arguments():
    with pytest.raises(ValueError, match="frames_per_segment"):
        M.dan_x3d_m(4, frames_per_segment=1)
    with pytest.raises(ValueError, match="DynamicAppearanceX3D"):
        M.dan_x3d_xs(4, **TINY)(torch.randn(1, 3, 7, 32, 32))


def test_export_keeps_the_fused_ops():
    model = M.dan_x3d_xs(4, **TINY).eval()
    x = torch.randn(X)
    ep = torch.export.export(model, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function" and "vidops" in str(n.target)}
    assert {"vidops.pixelwise_temporal_projection.default", "vidops.depthwise_conv3d.default"} <= ops
    with torch.no_grad():
        for a, b in zip(ep.module()(x), model(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_compile_fullgraph():
    model = M.dan_x3d_xs(4, **TINY).eval()
    x = torch.randn(X)
    with torch.no_grad():
        for a, b in zip(torch.compile(model, fullgraph=True, backend="aot_eager")(x), model(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
