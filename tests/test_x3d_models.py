"""X3D-XS/S/M/L: pytorchvideo's keys, parameter counts and multiply-adds; the depthwise convs
are vidops.nn.DepthwiseConv3d; impl "vidops" and "reference" agree in float64 (outputs and
gradients); channels_last_3d end to end; the head's pooling rule; torch.compile and torch.export
(tiny clips: 1 x 3 x 4 x 32^2, every full-size count on the meta device)."""
import copy
import json
import os

import pytest
import torch
import torch.nn.functional as F

import vidops.models as M
from vidops.nn import DepthwiseConv3d

DATA = os.path.join(os.path.dirname(__file__), "data", "checkpoint_keys")
TINY = (1, 3, 4, 32, 32)


def _spec(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def assert_rel_close(got, want, tol=1e-9, msg="", floor=1e-300):
    """||got - want|| <= tol max(||want||, floor): float64 accumulation-order noise through a deep
    network (the two impls sum the depthwise taps in different orders). `floor`: the scale below
    which a gradient is rounding noise (a parameter whose exact gradient is 0, e.g. a bias
    followed only by train-mode BatchNorms)."""
    err = (got - want).norm() / max(float(want.norm()), floor)
    assert err <= tol, f"{msg} relative L2 error {float(err):.3g} > {tol:g}"


def randomize(model, seed=0):
    """Every parameter and BatchNorm statistic random (fresh X3D zeroes each block's last BN, which
    would hide the depthwise convs behind a zero residual branch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64) + 0.5)
            elif name.endswith(("norm.weight", "_a.weight", "_b.0.weight", "_c.weight", "pre_norm.weight")) and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64) * 0.5 + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * (0.1 if t.dim() == 1 else 0.3))
    return model


@pytest.mark.parametrize("name,spec", [("x3d_xs", "x3d_xs_pytorchvideo"), ("x3d_s", "x3d_s_pytorchvideo"),
                                       ("x3d_m", "x3d_m_pytorchvideo"), ("x3d_l", "x3d_l_pytorchvideo")])
def test_keys_shapes_order_and_parameters_are_pytorchvideos(name, spec):
    spec = _spec(spec)
    model = getattr(M, name)(400)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == [(k, shape) for k, shape, _ in spec["keys"]]
    assert len(got) == spec["num_keys"] == (1141 if name == "x3d_l" else 563)
    assert sum(p.numel() for p in model.parameters()) == spec["num_parameter_elements"]
    assert spec["num_parameter_elements"] == (6153384 if name == "x3d_l" else 3794274)


def test_slowfast_layout_has_the_stage1_shortcut_norm():
    model = M.x3d_m(400, layout="slowfast")
    sd = model.state_dict()
    assert len(sd) == 568 and sum(p.numel() for p in model.parameters()) == 3794322
    extra = set(sd) - set(M.x3d_m(400).state_dict())
    assert extra == {f"blocks.1.res_blocks.0.branch1_norm.{p}"
                     for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    with pytest.raises(ValueError, match="layout"):
        M.x3d_m(400, layout="mmaction")


def test_depthwise_convs_are_vidops_layers():
    model = M.x3d_m(10)
    dw = {n: m for n, m in model.named_modules() if isinstance(m, DepthwiseConv3d)}
    assert "blocks.0.conv.conv_xy" in dw and dw["blocks.0.conv.conv_xy"].kernel_size == (5, 1, 1)
    assert len(dw) == 1 + 3 + 5 + 11 + 7
    assert not any(isinstance(m, torch.nn.Conv3d) and m.groups > 1 for m in model.modules())
    for s in range(1, 5):
        assert tuple(dw[f"blocks.{s}.res_blocks.0.branch2.conv_b"].stride) == (1, 2, 2)
        assert tuple(dw[f"blocks.{s}.res_blocks.1.branch2.conv_b"].stride) == (1, 1, 1)
    assert not any(isinstance(m, torch.nn.Softmax) for m in model.modules())
    assert sum(isinstance(m, torch.nn.SiLU) for m in model.modules()) == 26
    assert M.impls(model) == {"vidops"} and M.impls(M.x3d_m(10, impl="reference")) == {"reference"}


@pytest.mark.parametrize("name,shape,gmacs", [("x3d_xs", (1, 3, 4, 160, 160), 0.60), ("x3d_s", (1, 3, 13, 160, 160), 1.96),
                                              ("x3d_m", (1, 3, 16, 224, 224), 4.73), ("x3d_l", (1, 3, 16, 312, 312), 18.37)])
def test_conv_multiply_adds_are_the_model_zoos(name, shape, gmacs):
    counts = {impl: M.count_flops(getattr(M, name)(400, impl=impl), shape) for impl in ("vidops", "reference")}
    conv = {impl: c.by_op.get("convolution", 0) + c.by_op.get("depthwise_conv3d", 0) for impl, c in counts.items()}
    assert conv["vidops"] == conv["reference"]
    assert counts["vidops"].by_op.get("depthwise_conv3d", 0) > 0      # the fused op is counted, strides included
    assert round(conv["vidops"] / 1e9, 2) == gmacs


def _pair(build, seed=0):
    ref = randomize(build("reference").double(), seed)
    fused = build("vidops").double()
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("train,layout", [(False, "slowfast"), (True, "pytorchvideo")])
def test_impls_agree_in_float64(train, layout):
    """Eval mode: the vidops impl folds the BatchNorms into the convs; train mode: as written."""
    ref, fused = _pair(lambda impl: M.x3d_xs(7, impl=impl, dropout=0.0, layout=layout))
    x = torch.randn(TINY, dtype=torch.float64)
    w = torch.randn(1, 7, dtype=torch.float64)
    grads = []
    for model in (ref, fused):
        model.train(train)
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        (out * w).sum().backward()
        grads.append((out.detach(), xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (o1, gx1, gp1), (o2, gx2, gp2) = grads
    assert_rel_close(o2, o1, msg="output")
    assert_rel_close(gx2, gx1, msg="grad x")
    floor = 1e-6 * max(float(g.norm()) for g in gp1.values())
    for n in gp1:
        assert_rel_close(gp2[n], gp1[n], msg=n, floor=floor)
    # the depthwise weights do get a gradient: a residual branch is alive
    assert gp2["blocks.2.res_blocks.0.branch2.conv_b.weight"].abs().sum() > 0


def test_eval_mode_vidops_folds_the_batchnorms():
    model = randomize(M.x3d_xs(3, layout="slowfast"))
    ran = []
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.register_forward_hook(lambda mod, i, o, n=n: ran.append(n))
    x = torch.randn(TINY)
    with torch.no_grad():
        model.eval()(x)
        assert ran == ["blocks.5.pool.pre_norm"]           # every other BN folded into its conv
        ran.clear()
        M.set_impl(model, "reference")(x)
        assert len(ran) == sum(
            isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
        ran.clear()
        M.set_impl(model, "vidops").train()(x)
        assert len(ran) == sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())


def test_channels_last_3d_end_to_end():
    model = randomize(M.x3d_xs(5)).eval()
    x = torch.randn(TINY)
    with torch.no_grad():
        want = model(x)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    layouts = {}

    def hook(name):
        def fn(module, inp, out):
            layouts[name] = out.is_contiguous(memory_format=torch.channels_last_3d)
        return fn

    # PyTorch's own CPU conv returns NCDHW for some channels_last_3d inputs at these tiny shapes;
    # the depthwise convs, every block and the stem keep the layout
    for n, m in cl.named_modules():
        if isinstance(m, (DepthwiseConv3d, M.x3d.X3DResBlock, M.x3d.X3DStem)):
            m.register_forward_hook(hook(n))
    xi = x.to(memory_format=torch.channels_last_3d).requires_grad_(True)
    out = cl(xi)
    torch.testing.assert_close(out.detach(), want, rtol=1e-4, atol=1e-5)
    not_cl = [n for n, ok in layouts.items() if not ok]
    assert len(layouts) == 26 + 26 + 1 + 1 and not not_cl, not_cl
    out.sum().backward()
    assert xi.grad.is_contiguous(memory_format=torch.channels_last_3d)


def test_head_pool_rule():
    """Kernel (frames, ceil(crop/32), ceil(crop/32)) with stride 1, clipped to the feature map."""
    model = randomize(M.x3d_xs(6, frames=2, crop=64, dropout=0.0)).eval()   # pool (2, 2, 2)
    head = model.blocks[-1]
    assert head.pool.pool_size == (2, 2, 2)

    def by_hand(feat, kernel):
        p = head.pool
        y = F.relu(p.pre_norm(p.pre_conv(feat)))
        y = F.avg_pool3d(y, kernel, stride=1)
        y = F.relu(p.post_conv(y))
        logits = head.proj(y.permute(0, 2, 3, 4, 1))        # per position, then averaged
        return logits.mean((1, 2, 3))

    with torch.no_grad():
        for shape, kernel in (((1, 3, 2, 64, 64), (2, 2, 2)),     # the training size: global average
                              ((1, 3, 3, 96, 96), (2, 2, 2)),     # larger: slides, logits averaged
                              ((1, 3, 1, 32, 32), (1, 1, 1))):    # smaller: the whole map
            x = torch.randn(shape)
            feat = model.features(x)
            torch.testing.assert_close(model(x), by_hand(feat, kernel), rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    model = M.x3d_xs(3)
    with pytest.raises(ValueError, match="X3D: input must be a clip"):
        model(torch.randn(1, 12, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        M.x3d_s(0)
    with pytest.raises(ValueError, match="impl"):
        M.x3d_m(3, impl="fast")


def test_export_keeps_the_depthwise_op():
    model = randomize(M.x3d_xs(4)).eval()
    x = torch.randn(TINY)
    ep = torch.export.export(model, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any("vidops.depthwise_conv3d" in o for o in ops), ops
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), rtol=1e-5, atol=1e-6)


def test_compile_fullgraph():
    model = randomize(M.x3d_xs(4)).eval()
    x = torch.randn(TINY).to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_bench_breakdown_knows_the_depthwise_convs():
    from vidops.bench.breakdown import layer_breakdown, layer_kind

    assert layer_kind(DepthwiseConv3d(4, 3)) == "depthwise conv"
    assert layer_kind(torch.nn.Conv3d(4, 4, 3, groups=4)) == "depthwise conv"
    assert layer_kind(torch.nn.Conv3d(4, 8, 3, groups=4)) is None and layer_kind(torch.nn.Conv3d(4, 4, 1)) is None
    model = M.x3d_xs(3)
    x = torch.randn(TINY)
    ms = layer_breakdown(model, lambda: model(x).sum().backward())
    assert ms["depthwise conv"] > 0 and ms["rest"] > 0
    assert abs(ms["depthwise conv"] + ms["rest"] - ms["total"]) < 1e-6 * ms["total"] + 1e-9


def test_plain_onnx_export_runs_in_onnxruntime(tmp_path):
    """nn.SiLU where pytorchvideo's custom Swish broke ONNX export; the depthwise op becomes a
    standard Conv (the op's registered decomposition)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = randomize(M.x3d_xs(4)).eval()
    x = torch.randn(TINY)
    path = tmp_path / "x3d_xs.onnx"
    program = torch.onnx.export(model, (x,), str(path), dynamo=True)
    kinds = {n.op_type for n in program.model_proto.graph.node}
    assert "Conv" in kinds and not any("vidops" in k for k in kinds)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-5)
