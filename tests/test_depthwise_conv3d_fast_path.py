"""The public vidops.depthwise_conv3d's fast path for common eager CPU calls (straight to the C++
eager path, without the op's argument coercion, checks and backend choice): it gives what the full
path gives, bit for bit, for the call and its gradients, and every call it must not take (half
precision, a requested backend, bad arguments that the full path reports, empty tensors, autocast,
tensor subclasses) goes down the full path."""
import sys

import pytest
import torch

import vidops
from vidops.nn import DepthwiseConv3d

HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")
pytestmark = pytest.mark.skipif(not HAS_CPU, reason="the C++ CPU kernels are not built")
CL = torch.channels_last_3d


@pytest.fixture
def full_path_calls(monkeypatch):
    """How many calls reached the op's full path (Op.__call__)."""
    op = sys.modules["vidops.ops.depthwise_conv3d"].OP
    calls = []
    original = type(op).__call__

    def counting(self, *args, **kw):
        if self is op:
            calls.append(args)
        return original(self, *args, **kw)

    monkeypatch.setattr(type(op), "__call__", counting)
    return calls


def _leaves(*ts):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in ts]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
@pytest.mark.parametrize("stride,padding,bias", [(1, "same", False), ((1, 2, 2), 1, True), ([2, 1, 3], (0, 2, 1), True)])
def test_plain_calls_skip_the_full_path_and_equal_it(full_path_calls, dtype, layout, stride, padding, bias):
    x = torch.randn(2, 6, 5, 9, 11, dtype=dtype).contiguous(memory_format=layout)
    w = torch.randn(6, 1, 3, 3, 3, dtype=dtype)  # nn.Conv3d's 5-D depthwise weight
    b = torch.randn(6, dtype=dtype) if bias else None
    xf, wf, bf = _leaves(x, w, b)
    y = vidops.depthwise_conv3d(xf, wf, bf, stride, padding)
    assert not full_path_calls
    xs, ws, bs = _leaves(x, w, b)
    with vidops.use_backend("cpu"):  # a requested backend: the full path, same kernels
        ys = vidops.depthwise_conv3d(xs, ws, bs, stride, padding)
    assert len(full_path_calls) == 1
    assert torch.equal(y, ys) and y.stride() == ys.stride()
    g = torch.randn_like(y)
    y.backward(g)
    ys.backward(g)
    for a, c in ((xf, xs), (wf, ws), (bf, bs)):
        if a is not None:
            assert torch.equal(a.grad, c.grad)


def test_the_module_takes_the_fast_path(full_path_calls):
    m = DepthwiseConv3d(8, 3, stride=(1, 2, 2), bias=True)
    x = torch.randn(1, 8, 4, 10, 10).contiguous(memory_format=CL)
    y = m(x)
    assert not full_path_calls
    ref = torch.nn.functional.conv3d(x, m.weight, m.bias, (1, 2, 2), 1, 1, 8)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


class _Sub(torch.Tensor):
    pass


def _full_path_cases():
    x = torch.randn(1, 4, 3, 6, 6)
    w = torch.randn(4, 3, 3, 3)
    return {
        "half x": (lambda: vidops.depthwise_conv3d(x.half(), w), None),
        "weight dtype": (lambda: vidops.depthwise_conv3d(x, w.double()), TypeError),
        "stride 0": (lambda: vidops.depthwise_conv3d(x, w, None, (1, 0, 1)), ValueError),
        "bool stride": (lambda: vidops.depthwise_conv3d(x, w, None, True), ValueError),
        "no output": (lambda: vidops.depthwise_conv3d(torch.randn(1, 4, 1, 6, 6), w, None, 1, 0), ValueError),
        "bias shape": (lambda: vidops.depthwise_conv3d(x, w, torch.randn(3)), ValueError),
        "weight channels": (lambda: vidops.depthwise_conv3d(x, torch.randn(3, 3, 3, 3)), ValueError),
        "grouped weight": (lambda: vidops.depthwise_conv3d(x, torch.randn(4, 2, 3, 3, 3)), ValueError),
        "even kernel same": (lambda: vidops.depthwise_conv3d(x, torch.randn(4, 2, 3, 3)), ValueError),
        "4-D x": (lambda: vidops.depthwise_conv3d(x[0], w), ValueError),
        "empty batch": (lambda: vidops.depthwise_conv3d(x[:0], w), None),
        "backend argument": (lambda: vidops.depthwise_conv3d(x, w, backend="reference"), None),
        "subclass": (lambda: vidops.depthwise_conv3d(x.as_subclass(_Sub), w), None),
        "autocast": (lambda: _under_autocast(lambda: vidops.depthwise_conv3d(x, w)), None),
    }


def _under_autocast(fn):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn()


@pytest.mark.parametrize("case", list(_full_path_cases()))
def test_other_calls_take_the_full_path(full_path_calls, case):
    fn, error = _full_path_cases()[case]
    if error is None:
        fn()
        assert full_path_calls
    else:  # the full path's own error (some come from the public function, before the op)
        with pytest.raises(error, match="vidops.depthwise_conv3d"):
            fn()


def test_a_backend_from_the_environment_takes_the_full_path(full_path_calls, monkeypatch):
    monkeypatch.setenv("VIDOPS_BACKEND_DEPTHWISE_CONV3D", "reference")
    x, w = torch.randn(1, 4, 3, 6, 6), torch.randn(4, 3, 3, 3)
    vidops.depthwise_conv3d(x, w)
    assert full_path_calls
