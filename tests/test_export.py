"""Every model and op exports the way PyTorch users export:

- torch.export.export keeps each vidops op as one node (the exported program gives the eager
  outputs exactly: the same kernels run);
- the plain `torch.onnx.export(model, (clip,), path, dynamo=True)`, with no vidops argument, gives
  standard ONNX operators only, which onnxruntime runs within float32 noise of the model (the
  noise: the eager float32 model's own error against float64);
- so does torch.onnx.export of an ExportedProgram, and vidops.export.export_onnx (a thin
  convenience over the plain call).
"""
import copy
import importlib.util

import pytest
import torch
from torch import nn

import vidops
import vidops.export
import vidops.models as M
from vidops import _op, onnx_support
from vidops._tolerance import compare

# (model, clip shape): every vidops op appears in one of them (checked below)
MODELS = {
    "tsm": (lambda: M.tsm_resnet50(5, num_segments=3, dropout=0.0), (2, 3, 3, 32, 32)),
    "bqn": (lambda: M.bqn_resnet50(5, num_segments=2, dropout=0.0), (1, 3, 6, 56, 56)),
    "rnl": (lambda: M.rnl_tsm_resnet50(5, num_segments=3, dropout=0.0), (2, 3, 3, 48, 48)),
    "nl": (lambda: M.nl_tsm_resnet50(5, num_segments=3, dropout=0.0), (2, 3, 3, 48, 48)),
    "dan": (lambda: M.dan_tsm_resnet50(5, num_segments=2, frames_per_segment=4, dropout=0.0), (2, 3, 8, 32, 32)),
    "tesnet": (lambda: M.tesnet_resnet50(5, K=5, D=2, dropout=0.0), (2, 3, 5, 32, 32)),
}
X3D_MODELS = {  # the X3D family, where this build has it
    "x3d_xs": (lambda: M.x3d_xs(5, dropout=0.0), (1, 3, 4, 64, 64)),
    "busy_x3d_m": (lambda: M.busy_x3d_m(5, num_segments=2, dropout=0.0), (1, 3, 6, 64, 64)),
    "bqn_x3d_m": (lambda: M.bqn_x3d_m(5, num_segments=2, dropout=0.0), (1, 3, 6, 80, 80)),
    "dan_x3d_xs": (lambda: M.dan_x3d_xs(5, num_segments=2, frames_per_segment=4, dropout=0.0), (1, 3, 8, 64, 64)),
}
MODELS.update({k: v for k, v in X3D_MODELS.items() if hasattr(M, k)})

_ONNX_MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_onnx = pytest.mark.skipif(bool(_ONNX_MISSING), reason=f"ONNX export needs {', '.join(_ONNX_MISSING)} "
                                "(pip install onnx onnxscript onnxruntime)")

_cache = {}
_exported = {}


def _export(name):
    """torch.export of the model, once per model for the tests below."""
    if name not in _exported:
        model, x, _, _ = _model(name)
        _exported[name] = torch.export.export(model, (x,))
    return _exported[name]


def _model(name):
    """(eval model, clip, eager outputs, float64 outputs of the same weights), built once."""
    if name not in _cache:
        build, shape = MODELS[name]
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = _tuple(model(x))
            out64 = _tuple(copy.deepcopy(model).double()(x.double()))
        _cache[name] = (model, x, out, out64)
    return _cache[name]


def _tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _vidops_ops(graph) -> set:
    return {n.target.name().split("::")[1].split(".")[0] for n in graph.nodes
            if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
            and n.target.namespace == "vidops"}


def _check_onnx(path, program, inputs, out, out64, what):
    """Standard ONNX domains only, and onnxruntime's outputs within float32 noise of the model."""
    import onnxruntime

    nodes = program.model_proto.graph.node
    domains = {n.domain for n in nodes}
    assert domains <= {"", "ai.onnx"}, f"{what}: non-standard ONNX domains {domains}"
    assert not any("vidops" in n.op_type for n in nodes), f"{what}: a vidops node reached ONNX"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    got = session.run(None, feeds)
    assert len(got) == len(out)
    for i, (g, o, o64) in enumerate(zip(got, out, out64)):
        # the error the eager float32 model has against float64 sets the noise
        c = compare(torch.from_numpy(g), o64, o, name=f"{what} output {i} (onnxruntime)", factor=4.0)
        assert c.ok, c.message()
    return nodes


def test_every_op_has_its_onnx_decomposition_registered():
    registered = onnx_support.register_all()
    assert set(registered) == set(_op.OPS)
    from torch._decomp import decomposition_table
    for name in _op.OPS:
        assert onnx_support.overload(name) in decomposition_table, name


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_export_keeps_the_fused_ops(name):
    model, x, out, _ = _model(name)
    ep = _export(name)
    assert _vidops_ops(ep.graph), f"{name}: no vidops op in the exported graph"
    with torch.no_grad():
        got = _tuple(ep.module()(x))
    for g, o in zip(got, out, strict=True):
        torch.testing.assert_close(g, o, rtol=0, atol=0)  # the same kernels run


def test_every_op_is_in_some_exported_model():
    seen = set()
    for name in MODELS:
        seen |= _vidops_ops(_export(name).graph)
    assert seen == set(_op.OPS), f"ops no model exercises: {set(_op.OPS) - seen}"


def test_decompose_leaves_no_vidops_op():
    model, x, out, _ = _model("rnl")
    ep = vidops.export.decompose(_export("rnl"))
    assert not _vidops_ops(ep.graph)
    with torch.no_grad():
        got = ep.module()(x)
    torch.testing.assert_close(got, out[0])


@needs_onnx
@pytest.mark.parametrize("name", MODELS)
def test_plain_torch_onnx_export_runs_in_onnxruntime(name, tmp_path):
    model, x, out, out64 = _model(name)
    path = tmp_path / f"{name}.onnx"
    program = torch.onnx.export(model, (x,), str(path), dynamo=True)  # the call users make, nothing else
    _check_onnx(path, program, (x,), out, out64, name)


@needs_onnx
def test_onnx_export_of_an_exported_program(tmp_path):
    """torch.export first (vidops ops kept), then the ONNX exporter's own decomposition."""
    model, x, out, out64 = _model("rnl")
    ep = _export("rnl")
    assert _vidops_ops(ep.graph)
    path = tmp_path / "rnl_ep.onnx"
    program = torch.onnx.export(ep, (x,), str(path), dynamo=True)
    _check_onnx(path, program, (x,), out, out64, "rnl (ExportedProgram)")


# ---- every op alone, tiny shapes, through the plain call ----------------------------------------

class _Call(nn.Module):
    def __init__(self, fn, **tensors):
        super().__init__()
        self.fn = fn
        for k, v in tensors.items():
            self.register_buffer(k, v)

    def forward(self, *xs):
        return self.fn(self, *xs)


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _r(*shape, seed=0):
    return torch.randn(*shape, generator=_g(seed))


def _mbp_weights(C, k):
    sw = vidops.log_kernel(1.1, k).expand(C, k, k).contiguous()
    return sw, vidops.temporal_band_pass_init().expand(C, 3).contiguous()


OP_CASES = {
    "temporal_shift": lambda: (_Call(lambda m, x: vidops.temporal_shift(x, 3, 8)), (_r(6, 16, 5, 7),)),
    "depthwise_conv3d (same, no bias)": lambda: (
        _Call(lambda m, x: vidops.depthwise_conv3d(x, m.w), w=_r(4, 3, 5, 3, seed=1)), (_r(2, 4, 5, 9, 7),)),
    "depthwise_conv3d (stride, padding, bias)": lambda: (
        _Call(lambda m, x: vidops.depthwise_conv3d(x, m.w, m.b, stride=(1, 2, 2), padding=(0, 1, 2)),
              w=_r(4, 2, 3, 4, seed=1), b=_r(4, seed=2)), (_r(2, 4, 5, 9, 8),)),
    "motion_band_pass": lambda: (
        _Call(lambda m, x: vidops.motion_band_pass(x, m.sw, m.tw), **dict(zip(("sw", "tw"), _mbp_weights(3, 5)))),
        (_r(1, 3, 4, 9, 8),)),
    "motion_band_pass (stem: stride 3, valid)": lambda: (
        _Call(lambda m, x: vidops.motion_band_pass(x, m.sw, m.tw, 3, "reflect", "valid"),
              **dict(zip(("sw", "tw"), _mbp_weights(3, 5)))), (_r(1, 3, 6, 9, 8),)),
    "busy_quiet": lambda: (
        _Call(lambda m, x: vidops.busy_quiet(x, m.sw, m.tw), **dict(zip(("sw", "tw"), _mbp_weights(3, 5)))),
        (_r(1, 3, 6, 9, 8),)),
    "temporal_relation": lambda: (_Call(lambda m, f: vidops.temporal_relation(f)), (_r(2, 3, 5, 2, 3),)),
    "pixelwise_temporal_projection": lambda: (
        _Call(lambda m, x, b: vidops.pixelwise_temporal_projection(x, b)), (_r(2, 3, 4, 6, 5), _r(2, 8, 3, 3, seed=1))),
    "temporal_squeeze": lambda: (
        _Call(lambda m, x, b: vidops.temporal_squeeze(x, b)), (_r(2, 3, 5, 4, 3), _r(2, 5, 2, seed=1))),
    "region_attention (softmax)": lambda: (
        _Call(lambda m, q, v: vidops.region_attention(q, v)), (_r(2, 4, 2, 3, 3), _r(2, 5, 2, 3, 3, seed=1))),
    "region_attention (cosine_relu, keys)": lambda: (
        _Call(lambda m, q, v, k: vidops.region_attention(q, v, k, mode="cosine_relu")),
        (_r(2, 4, 10), _r(2, 5, 10, seed=1), _r(2, 4, 10, seed=2))),
}


def test_the_op_cases_cover_every_op():
    seen = set()
    for name, case in OP_CASES.items():
        module, inputs = case()
        seen |= _vidops_ops(torch.export.export(module, inputs).graph)
    assert seen == set(_op.OPS), f"ops without an ONNX case: {set(_op.OPS) - seen}"


@needs_onnx
@pytest.mark.parametrize("name", list(OP_CASES))
def test_plain_torch_onnx_export_of_each_op(name, tmp_path):
    module, inputs = OP_CASES[name]()
    with torch.no_grad():
        out = _tuple(module(*inputs))
        out64 = _tuple(module.double()(*[t.double() for t in inputs]))
    module.float().eval()
    path = tmp_path / "op.onnx"
    program = torch.onnx.export(module, inputs, str(path), dynamo=True)
    nodes = _check_onnx(path, program, inputs, out, out64, name)
    if name.startswith("depthwise_conv3d"):
        # one standard Conv with group = C, the strides and pads of the call
        convs = [n for n in nodes if n.op_type == "Conv"]
        assert len(convs) == 1, [n.op_type for n in nodes]
        attrs = {a.name: a for a in convs[0].attribute}
        assert attrs["group"].i == inputs[0].shape[1]
        if "stride" in name:
            assert list(attrs["strides"].ints) == [1, 2, 2]
            assert list(attrs["pads"].ints) == [0, 1, 2, 0, 1, 2]
            assert len(convs[0].input) == 3  # the bias goes into the Conv


def test_dynamic_batch_export_keeps_the_op():
    """With symbolic shapes the fake-tensor pass reads the registered decomposition: the op must
    still be one node, and the program right at another batch size."""
    module, (x,) = OP_CASES["temporal_shift"]()
    x = torch.cat([x, x.flip(0)])  # batch 4 segments of 3 -> N*T = 12
    batch = torch.export.Dim("batch")
    ep = torch.export.export(module, (x,), dynamic_shapes=(({0: 3 * batch},),))
    assert _vidops_ops(ep.graph) == {"temporal_shift"}
    y = _r(9, 16, 5, 7, seed=5)
    torch.testing.assert_close(ep.module()(y), module(y), rtol=0, atol=0)


@needs_onnx
def test_export_onnx_is_the_plain_call(tmp_path):
    module, inputs = OP_CASES["depthwise_conv3d (stride, padding, bias)"]()
    with torch.no_grad():
        out = _tuple(module(*inputs))
        out64 = _tuple(module.double()(*[t.double() for t in inputs]))
    module.float().eval()
    path = tmp_path / "dw.onnx"
    program = vidops.export.export_onnx(module, inputs, str(path))
    _check_onnx(path, program, inputs, out, out64, "export_onnx")


def test_export_onnx_names_what_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("no onnxscript")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    module, inputs = OP_CASES["temporal_shift"]()
    with pytest.raises(ImportError, match="export_onnx: needs the onnx and onnxscript"):
        vidops.export.export_onnx(module, inputs)


def test_compile_with_dynamic_shapes_keeps_working():
    """A compiled function called at a second batch size is retraced with symbolic shapes; the
    fake-tensor pass then reads the registered decompositions. Outputs stay right."""
    def f(x, clip, basis, kbasis, q, v, w):
        y = vidops.temporal_shift(x, 2, 8)
        p, e = vidops.pixelwise_temporal_projection(clip, basis)
        s, lp = vidops.temporal_squeeze(clip, kbasis)
        a = vidops.region_attention(q, v)
        d = vidops.depthwise_conv3d(clip, w, stride=(1, 2, 2))
        return y.sum() + p.sum() + e.sum() + s.sum() + lp.sum() + a.sum() + d.sum()

    torch._dynamo.reset()
    g = torch.compile(f, fullgraph=True, backend="aot_eager")
    w = _r(3, 3, 3, 3, seed=9)
    for n in (2, 3, 4):
        args = (_r(2 * n, 16, 5, 5, seed=n), _r(n, 3, 4, 6, 6, seed=n + 1), _r(n, 8, 3, 3, seed=n + 2),
                _r(n, 4, 2, seed=n + 3), _r(n, 4, 10, seed=n + 4), _r(n, 5, 10, seed=n + 5), w)
        torch.testing.assert_close(g(*args), f(*args), rtol=1e-4, atol=1e-3)
