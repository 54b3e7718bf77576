"""motion_band_pass as a torch.library op: opcheck, torch.compile, module weight shapes, errors."""
import pytest
import torch

import vidops

from conftest import device_backend_params

BACKENDS = device_backend_params("motion_band_pass", interpreted_triton=False)  # triton: test_motion_band_pass_triton.py


def _inputs(device, dtype=torch.float64, C=2, T=6, k=3):
    x = torch.randn(1, C, T, 7, 8, dtype=dtype, device=device)
    sw = torch.randn(C, k, k, dtype=dtype, device=device)
    tw = torch.randn(C, 3, dtype=dtype, device=device)
    return x, sw, tw


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    x, sw, tw = _inputs(device)
    for args in [(x, sw, tw, 3, "reflect", "valid", backend), (x, sw, tw, 1, "zeros", "replicate", backend)]:
        torch.library.opcheck(torch.ops.vidops.motion_band_pass.default, args)
        grad_args = tuple(a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(torch.ops.vidops.motion_band_pass.default, grad_args)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    x, sw, tw = _inputs(device, torch.float32)

    def f(x, sw, tw):
        return vidops.motion_band_pass(x * 2, sw, tw, 1, "reflect", "replicate", backend=backend).relu()

    xs, sws, tws = (t.clone().requires_grad_(True) for t in (x, sw, tw))
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(xs, sws, tws)
    expected = f(x, sw, tw)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert xs.grad is not None and sws.grad is not None and tws.grad is not None


def test_compile_inductor_fullgraph():
    torch._dynamo.reset()
    x, sw, tw = _inputs("cpu", torch.float32)
    f = torch.compile(lambda x: vidops.motion_band_pass(x, sw, tw, 1, "reflect", "replicate") + 1, fullgraph=True)
    torch.testing.assert_close(f(x), vidops.motion_band_pass(x, sw, tw, 1, "reflect", "replicate") + 1)


def test_module_parameter_shapes_are_accepted():
    x, sw, tw = _inputs("cpu")
    a = vidops.motion_band_pass(x, sw, tw)
    b = vidops.motion_band_pass(x, sw.unsqueeze(1), tw.unsqueeze(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_output_is_fresh():
    x, sw, tw = _inputs("cpu", k=1)
    out = vidops.motion_band_pass(x, sw, tw, 1, "zeros", "replicate")
    assert out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(x=torch.randn(2, 3, 6, 8)), ValueError, ["motion_band_pass", "x", "5-D"]),
    (dict(x=torch.randn(1, 3, 6, 8, 8, dtype=torch.float64)), TypeError, ["spatial_weight", "float64"]),
    (dict(x=torch.randint(0, 5, (1, 2, 6, 8, 8))), TypeError, ["x", "floating"]),
    (dict(sw=torch.randn(3, 3, 3)), ValueError, ["spatial_weight", "C=2"]),
    (dict(sw=torch.randn(2, 4, 4)), ValueError, ["spatial_weight", "odd k"]),
    (dict(tw=torch.randn(2, 5)), ValueError, ["temporal_weight", "(C, 3)"]),
    (dict(stride=0), ValueError, ["temporal_stride", "positive"]),
    (dict(sp="circular"), ValueError, ["spatial_padding", "circular"]),
    (dict(tp="same"), ValueError, ["temporal_padding", "same"]),
    (dict(x=torch.randn(1, 2, 2, 8, 8)), ValueError, ["T=2", "valid"]),
    (dict(sw=torch.randn(2, 9, 9), x=torch.randn(1, 2, 6, 4, 8)), ValueError, ["reflect", "H=4"]),
])
def test_bad_inputs_raise_clear_errors(kwargs, exc, words):
    args = dict(x=torch.randn(1, 2, 6, 8, 8), sw=torch.randn(2, 3, 3), tw=torch.randn(2, 3), stride=3,
                sp="reflect", tp="valid")
    args.update(kwargs)
    with pytest.raises(exc) as info:
        vidops.motion_band_pass(args["x"], args["sw"], args["tw"], args["stride"], args["sp"], args["tp"])
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_unknown_or_unavailable_backend_is_explained():
    x, sw, tw = _inputs("cpu")
    with pytest.raises(vidops.BackendUnavailableError, match="unknown backend"):
        vidops.motion_band_pass(x, sw, tw, backend="gpu")
    with pytest.raises(vidops.BackendUnavailableError, match="cuda.*CUDA tensors"):
        vidops.motion_band_pass(x, sw, tw, backend="cuda")


def test_use_backend_context_and_env(monkeypatch):
    x, sw, tw = _inputs("cpu")
    with vidops.use_backend("reference"):
        a = vidops.motion_band_pass(x, sw, tw)
    with vidops.use_backend(motion_band_pass="reference"):
        b = vidops.motion_band_pass(x, sw, tw)
    torch.testing.assert_close(a, b)
    monkeypatch.setenv("VIDOPS_BACKEND_MOTION_BAND_PASS", "cuda")
    with pytest.raises(vidops.BackendUnavailableError, match="VIDOPS_BACKEND_MOTION_BAND_PASS"):
        vidops.motion_band_pass(x, sw, tw)
