"""BQN X3D-M and Busy X3D-M: the authors' keys (1,492 / 565, `base_model.` prefix, `module.`
stripped), parameter counts and multiply-adds, the input-size rule, a finite eval-mode forward at
initialisation, both impls equal in float64, channels_last_3d (tiny clips: 2 segments, 80^2)."""
import json
import os

import pytest
import torch

import vidops.models as M
from test_x3d_models import assert_rel_close
from vidops.models.bqn_x3d import MIN_SIZE, QUIET_SCALE, quiet_map_sizes, resize_frames

DATA = os.path.join(os.path.dirname(__file__), "data", "checkpoint_keys")
SMALL = (1, 3, 6, 80, 80)        # 2 segments of 3 frames, the smallest size the laterals allow (79)


def _spec(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def _random_state_dict(spec, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {name: (torch.tensor(7) if name.endswith("num_batches_tracked") else torch.randn(shape, generator=g))
            for name, shape, _ in spec["keys"]}


@pytest.mark.parametrize("factory,spec,params", [("bqn_x3d_m", "bqn_x3d_m", 8432256), ("busy_x3d_m", "busy_x3d_m", 3794526)])
def test_the_authors_keys_load_strictly(factory, spec, params):
    spec = _spec(spec)
    model = getattr(M, factory)(400)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == [(k, s) for k, s, _ in spec["keys"]]
    assert sum(p.numel() for p in model.parameters()) == spec["num_parameter_elements"] == params
    sd = _random_state_dict(spec)
    ckpt = {"epoch": 1, "state_dict": {"module." + k: v for k, v in sd.items()}}   # main_apex.py's checkpoint
    result = M.load_checkpoint(model, ckpt)
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def test_bqn_thesis_parameter_count_is_one_head_less():
    model = M.bqn_x3d_m(400)
    head = sum(p.numel() for p in model.base_model.blocks[5].path_f.parameters())
    assert head == 1788144
    assert sum(p.numel() for p in model.parameters()) - head == 6644112        # Table 5.9: 6.6M


def test_multiply_adds_at_the_training_input():
    bqn = M.count_flops(M.bqn_x3d_m(400), (1, 3, 48, 256, 256))
    assert round(bqn.gmacs, 2) == 11.00
    assert round(bqn.by_op["busy_quiet"] / 1e9, 2) == 0.77
    assert round((bqn.by_op["convolution"] + bqn.by_op["depthwise_conv3d"]) / 1e9, 2) == 9.96
    busy = M.count_flops(M.busy_x3d_m(400), (1, 3, 48, 224, 224))
    assert round(busy.gmacs, 2) == 5.32


def test_input_size_rule():
    assert quiet_map_sizes(256) == [80, 40, 20, 10, 5]                 # the authors' maps
    assert min(quiet_map_sizes(MIN_SIZE)[1:4]) == 4 and min(quiet_map_sizes(MIN_SIZE - 1)[1:4]) == 3
    model = M.bqn_x3d_m(3, num_segments=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 6, 101, 83)).shape == (1, 3)   # sizes the authors' laterals reject
    with pytest.raises(ValueError, match="BQNX3D: H and W must be >= 79"):
        model(torch.randn(1, 3, 6, 78, 96))
    with pytest.raises(ValueError, match="BQNX3D"):
        model(torch.randn(1, 3, 9, 80, 80))                          # 3 segments for a 2-segment model
    assert model(torch.randn(1, 18, 80, 80)).shape == (1, 3)         # the TSN layout


def test_resize_is_the_authors_factor_where_it_fits():
    """At the authors' sizes the size-matched resize is nn.Upsample(scale_factor) (x1.6, x0.625)."""
    q = torch.randn(1, 4, 3, 40, 40, dtype=torch.float64)
    up = torch.nn.Upsample(scale_factor=1 / QUIET_SCALE, mode="bilinear", align_corners=False)
    want = up(q.transpose(1, 2).reshape(3, 4, 40, 40)).view(1, 3, 4, 64, 64).transpose(1, 2)
    torch.testing.assert_close(resize_frames(q, (64, 64)), want, rtol=1e-13, atol=1e-13)
    cl = resize_frames(q.contiguous(memory_format=torch.channels_last_3d), (64, 64))
    assert cl.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(cl, want, rtol=1e-13, atol=1e-13)


def test_eval_mode_at_initialisation_is_finite():
    """The authors' model gives NaN here (lateral BN gamma 1, band-pass gain ~827 per block)."""
    torch.manual_seed(0)
    model = M.bqn_x3d_m(5, num_segments=2).eval()
    for m in model.modules():
        if isinstance(m, M.bqn_x3d.DuoPath):
            assert torch.equal(m.up[2].weight, torch.zeros_like(m.up[2].weight))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 6, 96, 96) * 2 - 1)
    assert torch.isfinite(out).all()


def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64) + 0.5)
            elif "conv_s" in name or "conv_t.weight" in name and t.dim() == 3:
                t.mul_(0.01)                                       # tame the LoG gain: finite numbers
            else:
                t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * (0.1 if t.dim() == 1 else 0.2))
    return model


@pytest.mark.parametrize("factory", ["bqn_x3d_m", "busy_x3d_m"])
def test_impls_agree_in_float64(factory):
    ref = _randomize(getattr(M, factory)(4, num_segments=2, impl="reference", dropout=0.0).double(), 1)
    fused = getattr(M, factory)(4, num_segments=2, dropout=0.0).double()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(SMALL, dtype=torch.float64)
    res = []
    for model in (ref, fused):
        model.train()
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        (out * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
        res.append((out.detach(), xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    assert_rel_close(res[1][0], res[0][0], msg="output")
    assert_rel_close(res[1][1], res[0][1], msg="grad x")
    floor = 1e-6 * max(float(g.norm()) for g in res[0][2].values())
    for n, g in res[0][2].items():
        assert_rel_close(res[1][2][n], g, msg=n, floor=floor)
    if factory == "bqn_x3d_m":
        assert res[1][2]["base_model.blocks.2.res_blocks.1.up.1.weight"].abs().sum() > 0


def test_channels_last_3d():
    """A channels_last_3d clip keeps its layout through both pathways and the laterals. (The
    lateral 1x1 Conv2d weights are 4-D, so `model.to(memory_format=channels_last_3d)` is not
    possible, and not needed: X3D's 1x1x1 and depthwise weights are the same in both layouts.)"""
    model = _randomize(M.bqn_x3d_m(3, num_segments=2), 2).float().eval()
    x = torch.randn(SMALL)
    seen = []
    for m in model.modules():
        if isinstance(m, M.bqn_x3d.DuoPath):
            m.register_forward_hook(lambda mod, i, out: seen.extend(
                t.is_contiguous(memory_format=torch.channels_last_3d) for t in out))
    with torch.no_grad():
        want = model(x)
        seen.clear()
        got = model(x.to(memory_format=torch.channels_last_3d))
    assert len(seen) == 52 and all(seen)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_export_keeps_the_fused_ops():
    model = M.bqn_x3d_m(4, num_segments=2).eval()
    x = torch.randn(SMALL)
    ep = torch.export.export(model, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function" and "vidops" in str(n.target)}
    assert {"vidops.busy_quiet.default", "vidops.motion_band_pass.default", "vidops.depthwise_conv3d.default"} <= ops
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("factory,shape", [("bqn_x3d_m", SMALL), ("busy_x3d_m", (1, 3, 6, 64, 64))])
def test_compile_fullgraph(factory, shape):
    """aot_eager: every op's fake implementation and autograd formula traced (70 s for BQN on 2 cores)."""
    model = getattr(M, factory)(4, num_segments=2).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True, backend="aot_eager")(x), model(x),
                                   rtol=1e-4, atol=1e-5)
