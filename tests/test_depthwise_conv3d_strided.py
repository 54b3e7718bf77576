"""vidops.depthwise_conv3d with stride, explicit padding, any kernel size and bias (X3D's layers),
in NCDHW and channels_last_3d: every backend that takes the case against the float64 reference,
gradients of x, weight and bias, gradcheck, opcheck, torch.compile, vidops.nn.DepthwiseConv3d,
errors."""
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import vidops
from vidops.nn import DepthwiseConv3d
from vidops.reference.depthwise_conv3d import depthwise_conv3d as ref_dwc
from vidops.reference.depthwise_conv3d import depthwise_conv3d_backward as ref_dwc_backward

from conftest import device_backend_params, run_with_cpu_isa
from tolerance import assert_close_to_reference

OP = "depthwise_conv3d"
BACKENDS = device_backend_params(OP)
CL = torch.channels_last_3d
HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")

# (N, C, T, H, W, kernel, stride, padding, bias): X3D's (1, 2, 2) 3x3x3 and 5x1x1 stem, odd
# strides on odd sizes, even kernels, padding 0 and padding past (k-1)/2, T = 1, C = 1, an output
# of one pixel.
CASES = [
    (2, 3, 5, 7, 9, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),
    (1, 2, 4, 6, 11, (3, 3, 3), (2, 1, 3), (0, 1, 2), True),
    (1, 3, 5, 8, 7, (2, 4, 3), (1, 1, 1), (1, 2, 1), False),
    (2, 2, 6, 5, 6, (5, 1, 1), (1, 1, 1), (2, 0, 0), True),
    (1, 2, 1, 5, 4, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),
    (1, 1, 3, 9, 10, (3, 3, 3), (2, 2, 2), (0, 0, 0), False),
    (1, 4, 3, 7, 13, (1, 3, 2), (1, 3, 2), (0, 3, 2), True),
    (1, 3, 3, 5, 5, (3, 5, 5), (1, 1, 1), (0, 0, 0), True),
]


def case_id(c):
    N, C, T, H, W, k, s, p, b = c
    return (f"N{N}C{C}-{T}x{H}x{W}-k{''.join(map(str, k))}-s{''.join(map(str, s))}-p{''.join(map(str, p))}"
            + ("-bias" if b else ""))


def make(case, dtype=torch.float64, device="cpu", wdtype=None):
    N, C, T, H, W, k, s, p, b = case
    x = torch.randn(N, C, T, H, W, dtype=dtype, device=device)
    w = torch.randn(C, *k, dtype=wdtype or dtype, device=device)
    bias = torch.randn(C, dtype=wdtype or dtype, device=device) if b else None
    return x, w, bias, s, p


def _skip_unsupported(backend, x, w, b, s, p):
    impl = sys.modules["vidops.ops.depthwise_conv3d"].OP.backend(backend).impl
    why = impl.supports(x, w, b, list(s), list(p)) if impl.supports else None
    if why:
        pytest.skip(f"{backend}: {why}")


def _grads(x, w, b, s, p, g, backend, layout):
    xs = x.detach().clone().to(memory_format=layout).requires_grad_(True)
    ws = w.detach().clone().requires_grad_(True)
    bs = None if b is None else b.detach().clone().requires_grad_(True)
    y = vidops.depthwise_conv3d(xs, ws, bs, s, p, backend=backend)
    y.backward(g)
    return y, xs.grad, ws.grad, None if bs is None else bs.grad


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_is_conv3d_float64(case):
    x, w, b, s, p = make(case)
    conv = nn.Conv3d(x.shape[1], x.shape[1], w.shape[1:], s, p, groups=x.shape[1], bias=b is not None).double()
    with torch.no_grad():
        conv.weight.copy_(w.unsqueeze(1))
        if b is not None:
            conv.bias.copy_(b)
    xr = x.clone().requires_grad_(True)
    want = conv(xr)
    g = torch.randn_like(want)
    want.backward(g)
    got = ref_dwc(x, w, b, s, p)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    gx, gw, gb = ref_dwc_backward(g, x, w, b, s, p)
    torch.testing.assert_close(gx, xr.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, conv.weight.grad.squeeze(1), rtol=1e-12, atol=1e-12)
    if b is not None:
        torch.testing.assert_close(gb, conv.bias.grad, rtol=1e-12, atol=1e-12)
    else:
        assert gb.shape == (0,)


def check_case(device, backend, case, dtype, layout, wdtype=None):
    x, w, b, s, p = make(case, dtype, device, wdtype)
    _skip_unsupported(backend, x, w, b, s, p)
    x64, w64 = x.double(), w.double()
    b64 = None if b is None else b.double()
    ref64 = ref_dwc(x64, w64, b64, s, p)
    g = torch.randn(ref64.shape, dtype=dtype, device=device).to(memory_format=layout)
    y, gx, gw, gb = _grads(x, w, b, s, p, g, backend, layout)
    assert y.dtype == dtype and y.shape == ref64.shape
    assert y.is_contiguous(memory_format=layout) and gx.is_contiguous(memory_format=layout)
    absb = None if b is None else b64.abs()
    assert_close_to_reference(y, ref64, ref_dwc(x, w, b, s, p), ref_dwc(x64.abs(), w64.abs(), absb, s, p),
                              name="output")
    g64 = g.double()
    e64 = ref_dwc_backward(g64, x64, w64, b64, s, p)
    esame = ref_dwc_backward(g, x, w, b, s, p)
    scale = ref_dwc_backward(g64.abs(), x64.abs(), w64.abs(), absb, s, p)
    assert_close_to_reference(gx, e64[0], esame[0], scale[0], name="grad_x")
    assert_close_to_reference(gw, e64[1], esame[1], scale[1], name="grad_weight")
    if b is not None:
        assert gb.dtype == b.dtype
        assert_close_to_reference(gb, e64[2], esame[2], scale[2], name="grad_bias")


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["ncdhw", "cl3d"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_matches_float64_reference(device, backend, case, layout):
    if backend == "triton" and device == "cpu" and case[2] * case[3] * case[4] > 160:
        pytest.skip("interpreted Triton: the small cases only")
    check_case(device, backend, case, torch.float32, layout)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["ncdhw", "cl3d"])
@pytest.mark.parametrize("device,backend", [b for b in BACKENDS if b.values[1] in ("cpu", "cuda")])
def test_float64_and_half_precision(device, backend, layout):
    check_case(device, backend, CASES[1], torch.float64, layout)
    check_case(device, backend, CASES[2], torch.float64, layout)
    for dt in (torch.float16, torch.bfloat16):
        check_case(device, backend, CASES[0], dt, layout, wdtype=torch.float32)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_float64(device, backend):
    fast = backend != "cpu"
    for case, layout in [((1, 2, 3, 5, 4, (3, 3, 3), (1, 2, 2), (1, 1, 1), True), CL),
                         ((1, 2, 3, 4, 5, (2, 3, 2), (2, 1, 2), (0, 1, 1), True), torch.contiguous_format)]:
        x, w, b, s, p = make(case, device=device)
        _skip_unsupported(backend, x, w, b, s, p)
        inputs = (x.to(memory_format=layout).requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True))
        assert torch.autograd.gradcheck(lambda a, c, d: vidops.depthwise_conv3d(a, c, d, s, p, backend=backend),
                                        inputs, fast_mode=fast)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    x, w, b, s, p = make((1, 3, 3, 5, 6, (3, 2, 3), (1, 2, 2), (1, 0, 1), True), device=device)
    _skip_unsupported(backend, x, w, b, s, p)
    op, bop = torch.ops.vidops.depthwise_conv3d.default, torch.ops.vidops.depthwise_conv3d_backward.default
    for xi in (x, x.to(memory_format=CL)):
        torch.library.opcheck(op, (xi, w, b, list(s), list(p), backend))
        torch.library.opcheck(op, (xi.clone().requires_grad_(True), w.clone().requires_grad_(True),
                                   b.clone().requires_grad_(True), list(s), list(p), backend))
        torch.library.opcheck(op, (xi.clone().requires_grad_(True), w, None, list(s), list(p), backend))
        g = torch.randn(ref_dwc(x, w, b, s, p).shape, dtype=x.dtype, device=device)
        torch.library.opcheck(bop, (g, xi, w, b, list(s), list(p), True, True, True, backend))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    x, w, b, s, p = make((1, 3, 3, 6, 5, (3, 3, 3), (1, 2, 2), (1, 1, 1), True), torch.float32, device)
    _skip_unsupported(backend, x, w, b, s, p)

    def f(t, w, b):
        return vidops.depthwise_conv3d(t * 2, w, b, s, p, backend=backend).relu()

    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    for layout in (torch.contiguous_format, CL):
        xs = x.detach().clone(memory_format=layout).requires_grad_(True)
        ws, bs = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        out = cf(xs, ws, bs)
        assert out.is_contiguous(memory_format=layout)
        torch.testing.assert_close(out, f(x, w, b))
        out.sum().backward()
        assert xs.grad.is_contiguous(memory_format=layout) and ws.grad is not None and bs.grad is not None


def test_compile_fullgraph_module_channels_last():
    torch._dynamo.reset()
    m = DepthwiseConv3d(3, 3, (1, 2, 2), 1, bias=True)
    x = torch.randn(1, 3, 3, 6, 5).to(memory_format=CL)
    out = torch.compile(m, fullgraph=True)(x)
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, m(x))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_batch_and_non_contiguous_inputs(device, backend):
    x, w, b, s, p = make((2, 3, 5, 9, 8, (3, 3, 3), (1, 2, 2), (1, 1, 1), True), torch.float32, device)
    _skip_unsupported(backend, x, w, b, s, p)
    e = x[:0].clone().requires_grad_(True)
    wg, bg = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    y0 = vidops.depthwise_conv3d(e, wg, bg, s, p, backend=backend)
    assert y0.shape == (0, 3, 5, 5, 4)
    y0.sum().backward()
    assert torch.equal(wg.grad, torch.zeros_like(w)) and torch.equal(bg.grad, torch.zeros_like(b))
    big = torch.randn(3, 5, 6, 11, 10, device=device)
    xv = big[1:3, 1:4, 1:6, 1:10, 2:10]  # a strided view
    assert not xv.is_contiguous()
    wv = torch.randn(3, 3, 3, 3, device=device).transpose(1, 3)
    want = vidops.depthwise_conv3d(xv.contiguous(), wv.contiguous(), b, s, p, backend=backend)
    torch.testing.assert_close(vidops.depthwise_conv3d(xv, wv, b, s, p, backend=backend), want, rtol=0, atol=0)


def test_empty_axes_give_empty_outputs():
    x = torch.randn(1, 3, 0, 5, 6, requires_grad=True)
    w, b = torch.randn(3, 2, 3, 3, requires_grad=True), torch.randn(3, requires_grad=True)
    y = vidops.depthwise_conv3d(x, w, b, (1, 2, 2), 1)
    assert y.shape == (1, 3, 0, 3, 3)
    gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
    assert gx.shape == x.shape and not gw.any() and not gb.any()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_only_the_needed_gradients(device, backend):
    x, w, b, s, p = make((1, 2, 3, 5, 6, (3, 3, 3), (1, 2, 2), (1, 1, 1), True), device=device)
    _skip_unsupported(backend, x, w, b, s, p)
    bop = sys.modules["vidops.ops.depthwise_conv3d"].OP.backward_op
    g = torch.randn(ref_dwc(x, w, b, s, p).shape, dtype=x.dtype, device=device)
    e = ref_dwc_backward(g, x, w, b, s, p)
    gx, gw, gb = bop(g, x, w, b, list(s), list(p), False, False, True, backend)
    assert torch.equal(gx, torch.zeros_like(x)) and torch.equal(gw, torch.zeros_like(w))
    torch.testing.assert_close(gb, e[2])
    gx, gw, gb = bop(g, x, w, None, list(s), list(p), True, True, False, backend)
    assert gb.shape == (0,)
    torch.testing.assert_close(gx, e[0])
    torch.testing.assert_close(gw, e[1])


def test_module_is_a_drop_in_for_depthwise_conv3d():
    torch.manual_seed(3)
    conv = nn.Conv3d(6, 6, (3, 3, 3), (1, 2, 2), (1, 1, 1), groups=6, bias=True)
    torch.manual_seed(3)
    m = DepthwiseConv3d(6, 3, (1, 2, 2), 1, bias=True)
    assert torch.equal(m.weight, conv.weight) and torch.equal(m.bias, conv.bias)  # nn.Conv3d's init
    assert list(m.state_dict()) == list(conv.state_dict())
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "groups", "dilation"):
        assert getattr(m, attr) == getattr(conv, attr), attr
    assert m.padding == (1, 1, 1)
    m2 = DepthwiseConv3d(6, 3, (1, 2, 2), "same", bias=True)
    m2.load_state_dict(conv.state_dict(), strict=True)
    x = torch.randn(1, 6, 4, 9, 8)
    for impl in ("vidops", "reference"):
        m2.impl = impl
        torch.testing.assert_close(m2(x), conv(x), rtol=1e-5, atol=1e-5)
    f = DepthwiseConv3d.from_conv3d(conv)
    assert f.weight is conv.weight and f.bias is conv.bias
    torch.testing.assert_close(f(x), conv(x), rtol=1e-5, atol=1e-5)
    back = f.to_conv3d()
    assert isinstance(back, nn.Conv3d) and back.weight is conv.weight and back.groups == 6
    torch.testing.assert_close(back(x), conv(x), rtol=0, atol=0)
    stem = DepthwiseConv3d(4, (5, 1, 1), 1, (2, 0, 0))
    assert stem.bias is None and list(stem.state_dict()) == ["weight"] and stem.weight.shape == (4, 1, 5, 1, 1)
    assert "bias=False" in repr(stem)
    with pytest.raises(ValueError, match="depthwise"):
        DepthwiseConv3d.from_conv3d(nn.Conv3d(4, 8, 3, groups=4))
    with pytest.raises(ValueError, match="padding='same'.*odd"):
        DepthwiseConv3d(4, 2)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(stride=0), ValueError, ["depthwise_conv3d", "stride", "positive", "0"]),
    (dict(stride=(1, 2)), ValueError, ["stride", "(st, sh, sw)"]),
    (dict(stride=1.5), ValueError, ["stride"]),
    (dict(padding=(0, 0, -1)), ValueError, ["padding", "non-negative"]),
    (dict(padding=0, x_shape=(1, 3, 2, 5, 5)), ValueError, ["padding", "leaves no output", "(T, H, W)"]),
    (dict(bias_shape=(4,)), ValueError, ["bias", "(C,)", "C=3"]),
    (dict(bias_shape=(3, 1)), ValueError, ["bias", "(C,)"]),
    (dict(bias_dtype=torch.float64), TypeError, ["bias", "float32"]),
    (dict(w_shape=(3, 2, 3, 3, 3)), ValueError, ["weight", "depthwise"]),
    (dict(w_shape=(3, 2, 3, 3)), ValueError, ["padding='same'", "odd", "(2, 3, 3)"]),
])
def test_bad_arguments_raise_clear_errors(kwargs, exc, words):
    kw = dict(kwargs)
    x = torch.randn(*kw.pop("x_shape", (1, 3, 4, 5, 5)))
    w = torch.randn(*kw.pop("w_shape", (3, 3, 3, 3)))
    b = None
    if "bias_shape" in kw or "bias_dtype" in kw:
        b = torch.randn(*kw.pop("bias_shape", (3,)), dtype=kw.pop("bias_dtype", torch.float32))
    with pytest.raises(exc) as info:
        vidops.depthwise_conv3d(x, w, b, **kw)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


_ISA_SCRIPT = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
from test_depthwise_conv3d_strided import CASES, check_case
from test_depthwise_conv3d_cpu_blocked import BLOCKED_CASES
from test_depthwise_conv3d_cpu_fixed import FIXED_CASES
from test_depthwise_conv3d_cpu_temporal import TEMPORAL_CASES
print(torch.ops.vidops._depthwise_conv3d_cpu_isa())
for case in CASES[:4] + [(1, 11, 3, 6, 9, (3, 3, 3), (1, 2, 2), (1, 1, 1), True)]:
    for dtype in (torch.float32, torch.float64):
        for layout in (torch.contiguous_format, torch.channels_last_3d):
            check_case("cpu", "cpu", case, dtype, layout)
for case in BLOCKED_CASES:  # the channel-blocked channels_last kernels (AVX2 and AVX-512 builds)
    for dtype in (torch.float32, torch.float64):
        check_case("cpu", "cpu", case, dtype, torch.channels_last_3d)
for case in FIXED_CASES:  # the NCDHW kernels with compile-time kernel extents and strides
    check_case("cpu", "cpu", case, torch.float32, torch.contiguous_format)
for case in TEMPORAL_CASES[:3]:  # the temporal-only rows, in both layouts
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        check_case("cpu", "cpu", case, torch.float32, layout)
"""


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("isa", ["base", "avx2", None])
def test_every_cpu_instruction_set(isa):
    used = run_with_cpu_isa(_ISA_SCRIPT, isa, os.path.dirname(os.path.abspath(__file__))).split()[0]
    assert used in ("base", "avx2", "avx512")


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["ncdhw", "cl3d"])
def test_cpu_gradients_are_bitwise_reproducible_for_any_thread_count(layout):
    x, w, b, s, p = make((2, 19, 5, 9, 10, (3, 3, 3), (1, 2, 2), (1, 1, 1), True), torch.float32)
    x = x.to(memory_format=layout)
    bop = sys.modules["vidops.ops.depthwise_conv3d"].OP.backward_op
    g = torch.randn(ref_dwc(x, w, b, s, p).shape).to(memory_format=layout)
    threads = torch.get_num_threads()
    got = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            got.append(bop(g, x, w, b, list(s), list(p), True, True, True, "cpu"))
    finally:
        torch.set_num_threads(threads)
    for r in got[1:]:
        assert all(torch.equal(a, c) for a, c in zip(r, got[0]))


def test_reference_layout_and_f_conv3d_agree_on_channels_last():
    x, w, b, s, p = make(CASES[0])
    y = ref_dwc(x.to(memory_format=CL), w, b, s, p)
    assert y.is_contiguous(memory_format=CL)
    torch.testing.assert_close(y, F.conv3d(x, w.unsqueeze(1), b, s, p, groups=x.shape[1]), rtol=1e-12, atol=1e-12)
