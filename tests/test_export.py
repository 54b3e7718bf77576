"""Every model exports: torch.export keeps the vidops ops (the exported program gives the eager
outputs), and the ONNX export through the ops' reference decompositions uses standard ONNX
operators only and runs in onnxruntime with the eager outputs at float32 noise."""
import copy
import importlib.util

import pytest
import torch

import vidops
import vidops.export
import vidops.models as M
from vidops import _op
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
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    import onnxruntime

    model, x, out, out64 = _model(name)
    path = str(tmp_path / f"{name}.onnx")
    program = vidops.export.export_onnx(model, (x,), path)
    nodes = program.model_proto.graph.node
    domains = {n.domain for n in nodes}
    assert domains <= {"", "ai.onnx"}, f"{name}: non-standard ONNX domains {domains}"
    assert not any("vidops" in n.op_type for n in nodes)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert len(got) == len(out)
    for i, (g, o, o64) in enumerate(zip(got, out, out64)):
        # the error the eager float32 model has against float64 sets the noise
        c = compare(torch.from_numpy(g), o64, o, name=f"{name} output {i} (onnxruntime)", factor=4.0)
        assert c.ok, c.message()


def test_export_onnx_names_what_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("no onnxscript")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    model, x, _, _ = _model("tsm")
    with pytest.raises(ImportError, match="export_onnx: needs the onnx and onnxscript"):
        vidops.export.export_onnx(model, (x,))
