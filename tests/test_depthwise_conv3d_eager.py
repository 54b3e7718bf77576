"""The eager CPU call path of vidops.depthwise_conv3d (vidops::_depthwise_conv3d_autograd, forward and
autograd in C++): taken by plain eager calls, equal bit for bit to the custom op on the cpu backend,
only the gradients autograd asks for, gradcheck, and every caller that must see the custom op
(torch.compile, TorchScript tracing, dispatch modes, autocast, empty inputs, create_graph) still does;
saved inputs, checkpointing and inference mode behave as with any autograd op."""
import sys

import pytest
import torch
import torch.utils.checkpoint
from torch.utils._python_dispatch import TorchDispatchMode

import vidops
from vidops.nn import DepthwiseConv3d

HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")
pytestmark = pytest.mark.skipif(not HAS_CPU, reason="the C++ CPU kernels are not built")
CL = torch.channels_last_3d
EAGER_NODE = "DepthwiseConv3dFunction"


def _op():
    return sys.modules["vidops.ops.depthwise_conv3d"].OP


def _custom_op(x, w, b, s, p):
    """The same call through the custom op, cpu backend (what torch.compile and export see)."""
    return torch.ops.vidops.depthwise_conv3d.default(x, w, b, list(s), list(p), "cpu")


def _inputs(layout, dtype, bias, C=5, size=(5, 9, 11)):
    x = torch.randn(2, C, *size, dtype=dtype)
    if layout == "cl3d":
        x = x.contiguous(memory_format=CL)
    elif layout == "strided":
        x = torch.randn(2, C, size[0], size[1], 2 * size[2], dtype=dtype)[..., ::2]
    w = torch.randn(C, 3, 3, 3, dtype=dtype)
    b = torch.randn(C, dtype=dtype) if bias else None
    return x, w, b


def _leaves(*ts):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in ts]


@pytest.mark.parametrize("layout", ["ncdhw", "cl3d", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stride,padding,bias", [((1, 1, 1), (1, 1, 1), False), ((1, 2, 2), (1, 1, 1), True),
                                                 ((2, 1, 3), (0, 2, 1), True)])
def test_eager_path_equals_the_custom_op_bitwise(layout, dtype, stride, padding, bias):
    x, w, b = _inputs(layout, dtype, bias)
    xe, we, be = _leaves(x, w, b)
    xc, wc, bc = _leaves(x, w, b)
    ye = vidops.depthwise_conv3d(xe, we, be, stride, padding)
    yc = _custom_op(xc, wc, bc, stride, padding)
    assert EAGER_NODE in ye.grad_fn.name() and EAGER_NODE not in yc.grad_fn.name()
    assert torch.equal(ye, yc)
    assert ye.is_contiguous(memory_format=CL) == yc.is_contiguous(memory_format=CL)
    g = torch.randn_like(ye)
    ye.backward(g)
    yc.backward(g)
    assert torch.equal(xe.grad, xc.grad) and torch.equal(we.grad, wc.grad)
    assert xe.grad.stride() == xc.grad.stride()
    if bias:
        assert torch.equal(be.grad, bc.grad)


def test_gradcheck_through_the_eager_path():
    x, w, b = _leaves(*_inputs("cl3d", torch.float64, True, C=3, size=(3, 5, 6)))
    assert EAGER_NODE in vidops.depthwise_conv3d(x, w, b, (1, 2, 2), 1).grad_fn.name()
    assert torch.autograd.gradcheck(lambda x, w, b: vidops.depthwise_conv3d(x, w, b, (1, 2, 2), 1), (x, w, b))


def test_only_the_gradients_autograd_asks_for():
    x, w, b = _inputs("cl3d", torch.float64, True)
    g = torch.randn(2, 5, 5, 9, 11, dtype=torch.float64)
    for need in "xwb":
        xe, we, be = (t.detach().clone().requires_grad_(n == need) for t, n in zip((x, w, b), "xwb"))
        xr, wr, br = (t.detach().clone().requires_grad_(n == need) for t, n in zip((x, w, b), "xwb"))
        y = vidops.depthwise_conv3d(xe, we, be, 1, 1)
        assert EAGER_NODE in y.grad_fn.name()
        y.backward(g)
        torch.nn.functional.conv3d(xr, wr.unsqueeze(1), br, 1, 1, 1, 5).backward(g)
        for mine, ref, n in ((xe, xr, "x"), (we, wr, "w"), (be, br, "b")):
            if n == need:
                torch.testing.assert_close(mine.grad, ref.grad)
            else:
                assert mine.grad is None


def test_the_module_takes_the_eager_path_with_its_5d_weight():
    m = DepthwiseConv3d(4, 3, (1, 2, 2), 1, bias=True).double()
    x = torch.randn(1, 4, 3, 7, 8, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_(True)
    y = m(x)
    assert EAGER_NODE in y.grad_fn.name()
    y.square().sum().backward()
    ref = torch.nn.Conv3d(4, 4, 3, (1, 2, 2), 1, groups=4).double()
    ref.load_state_dict(m.state_dict())
    xr = x.detach().clone().requires_grad_(True)
    ref(xr).square().sum().backward()
    for a, e in ((x.grad, xr.grad), (m.weight.grad, ref.weight.grad), (m.bias.grad, ref.bias.grad)):
        torch.testing.assert_close(a, e)


class _Names(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_dispatch_modes_tracing_and_autocast_see_the_custom_op():
    x, w, _ = _inputs("cl3d", torch.float32, False)
    with _Names() as mode:
        vidops.depthwise_conv3d(x, w)
    assert "vidops.depthwise_conv3d.default" in mode.names
    assert not any("_autograd" in n for n in mode.names)
    traced = torch.jit.trace(lambda x: vidops.depthwise_conv3d(x, w, None, 1, 1), (x,), check_trace=False)
    assert "vidops::depthwise_conv3d" in str(traced.graph)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = vidops.depthwise_conv3d(x.requires_grad_(True), w)
    assert EAGER_NODE not in y.grad_fn.name()


def test_empty_batch_and_zero_size_axes_take_the_custom_op():
    w = torch.randn(3, 3, 3, 3, requires_grad=True)
    x = torch.randn(0, 3, 4, 5, 6, requires_grad=True)
    y = vidops.depthwise_conv3d(x, w)
    assert y.shape == (0, 3, 4, 5, 6) and EAGER_NODE not in y.grad_fn.name()
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_torch_compile_sees_the_custom_op():
    torch._dynamo.reset()
    x, w, _ = _inputs("cl3d", torch.float32, False)
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    out = torch.compile(lambda x: vidops.depthwise_conv3d(x, w), backend=backend, fullgraph=True)(x)
    assert any("depthwise_conv3d" in n and "_autograd" not in n for n in seen)
    assert torch.equal(out, vidops.depthwise_conv3d(x, w))


def test_create_graph_gives_the_custom_op_rule_not_a_silent_zero():
    """The custom op has no double backward: through either path, differentiating a gradient
    raises instead of returning zeros."""
    x, w, _ = _leaves(*_inputs("cl3d", torch.float64, False, C=2, size=(3, 4, 5)))
    y = vidops.depthwise_conv3d(x, w)
    assert EAGER_NODE in y.grad_fn.name()
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    xr, wr = _leaves(x, w)
    (gr,) = torch.autograd.grad(_custom_op(xr, wr, None, (1, 1, 1), (1, 1, 1)).square().sum(), xr)
    torch.testing.assert_close(gx, gr)
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match="no autograd formula"):
        gx.sum().backward()


def test_no_eager_path_when_the_op_declares_none():
    op = _op()
    saved = dict(op.eager)
    try:
        op.eager = {}
        x, w, _ = _leaves(*_inputs("cl3d", torch.float32, False))
        assert EAGER_NODE not in vidops.depthwise_conv3d(x, w).grad_fn.name()
    finally:
        op.eager = saved


def test_saved_inputs_are_guarded_and_checkpointing_recomputes_the_same():
    x, w, _ = _inputs("cl3d", torch.float32, False)
    w.requires_grad_(True)
    a = x.clone().requires_grad_(True) * 1
    y = vidops.depthwise_conv3d(a, w)
    assert EAGER_NODE in y.grad_fn.name()
    a.add_(1)   # x saved for the weight gradient was modified in place: autograd must refuse
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    xi = x.clone().requires_grad_(True)
    torch.utils.checkpoint.checkpoint(lambda t: vidops.depthwise_conv3d(t, w).relu(), xi,
                                      use_reentrant=False).sum().backward()
    g = xi.grad.clone()
    xi.grad = None
    vidops.depthwise_conv3d(xi, w).relu().sum().backward()
    assert torch.equal(g, xi.grad)
    with torch.inference_mode():
        assert not vidops.depthwise_conv3d(x, w).requires_grad


def test_an_unneeded_grad_x_takes_no_memory_and_the_custom_op_still_returns_zeros():
    x, w, _ = _inputs("cl3d", torch.float32, False)
    y = vidops.depthwise_conv3d(x, w)
    gy = torch.randn_like(y)
    gx, gw, _ = torch.ops.vidops._depthwise_conv3d_bwd(gy, x, w, None, [1, 1, 1], [1, 1, 1], False, True, False)
    assert gx.shape == x.shape and set(gx.stride()) == {0} and not gx.any()
    gx_op, gw_op, _ = _op().backward_op(gy, x, w, None, [1, 1, 1], [1, 1, 1], False, True, False, "cpu")
    assert torch.equal(gx_op, torch.zeros_like(x)) and gx_op.is_contiguous(memory_format=CL)
    assert torch.equal(gw_op, gw)
    (we,) = _leaves(w)
    vidops.depthwise_conv3d(x, we).backward(gy)   # x needs no gradient: only the weight's
    assert torch.equal(we.grad, gw)
