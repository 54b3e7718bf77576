"""vidops.depthwise_conv3d (operators.md §2): every available backend against the float64 reference, forward
and backward, odd shapes and kernel sizes, layouts, gradcheck, opcheck, torch.compile, errors."""
import os

import pytest
import torch

import vidops
from vidops.reference.depthwise_conv3d import depthwise_conv3d as ref_dwc
from vidops.reference.depthwise_conv3d import depthwise_conv3d_backward as ref_dwc_backward

from conftest import device_backend_params, run_with_cpu_isa
from tolerance import assert_close_to_reference

OP = "depthwise_conv3d"
BACKENDS = device_backend_params(OP)

# (N, C, T, H, W, (kt, kh, kw)): sizes that are multiples of nothing, the RNL/CPA kernels, a kernel
# larger than the input, a 1-pixel image and mixed kernel sizes.
CASES = [
    (2, 3, 5, 7, 9, (3, 3, 3)),
    (1, 2, 4, 13, 30, (3, 7, 7)),
    (1, 2, 3, 11, 17, (3, 9, 9)),
    (2, 3, 3, 5, 6, (1, 1, 1)),
    (1, 2, 5, 6, 37, (5, 3, 1)),
    (1, 1, 2, 1, 3, (3, 3, 3)),
]


def case_id(c):
    N, C, T, H, W, k = c
    return f"N{N}-C{C}-T{T}-{H}x{W}-k{'x'.join(map(str, k))}"


def make_inputs(case, dtype=torch.float64, device="cpu", wdtype=None):
    N, C, T, H, W, k = case
    x = torch.randn(N, C, T, H, W, dtype=dtype, device=device)
    w = torch.randn(C, *k, dtype=wdtype or dtype, device=device)
    return x, w


def _op_backward(grad, x, w, backend, need_x=True, need_w=True):
    """(grad_x, grad_weight) of the backward op at stride 1, 'same' padding, no bias."""
    import sys
    mod = sys.modules["vidops.ops.depthwise_conv3d"]
    same = [(k - 1) // 2 for k in w.shape[-3:]]
    return mod.OP.backward_op(grad, x, w, None, [1, 1, 1], same, need_x, need_w, False, backend)[:2]


def check_against_reference(device, backend, case, dtype, wdtype=None):
    x, w = make_inputs(case, dtype, device, wdtype)
    xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    out = vidops.depthwise_conv3d(xs, ws, backend=backend)
    assert out.dtype == dtype and out.is_contiguous() and out.shape == x.shape
    grad = torch.randn_like(out)
    out.backward(grad)
    x64, w64, g64 = x.double(), w.double(), grad.double()
    ref64 = ref_dwc(x64, w64)
    ref_same = ref_dwc(x, w)
    assert_close_to_reference(out, ref64, ref_same, ref_dwc(x64.abs(), w64.abs()), name="output")
    gx64, gw64, _ = ref_dwc_backward(g64, x64, w64)
    gxs, gws, _ = ref_dwc_backward(grad, x, w)
    sx, sw, _ = ref_dwc_backward(g64.abs(), x64.abs(), w64.abs())
    assert xs.grad.dtype == dtype and ws.grad.dtype == w.dtype
    assert_close_to_reference(xs.grad, gx64, gxs, sx, name="grad_x")
    assert_close_to_reference(ws.grad, gw64, gws, sw, name="grad_weight")


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_forward_and_backward_match_reference(device, backend, case):
    check_against_reference(device, backend, case, torch.float32)


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=case_id)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_matches_reference(device, backend, case):
    check_against_reference(device, backend, case, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_half_precision_accumulates_in_float32(device, backend, dtype):
    # half x with float32 weights (fp32 master weights) and with half weights
    check_against_reference(device, backend, (1, 2, 3, 6, 11, (3, 7, 7)), dtype, wdtype=torch.float32)
    check_against_reference(device, backend, (2, 2, 3, 5, 4, (3, 3, 3)), dtype)


_ISA_SCRIPT = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])  # the tests folder, for the shared checks
from test_depthwise_conv3d import CASES, check_against_reference
print(torch.ops.vidops._depthwise_conv3d_cpu_isa())
for case in [CASES[1], (2, 2, 3, 8, 70, (3, 5, 11)), (1, 2, 2, 3, 3, (1, 1, 13))]:
    for dtype in (torch.float32, torch.float64):
        check_against_reference("cpu", "cpu", case, dtype)
"""


@pytest.mark.skipif(not vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU"), reason="C++ CPU kernel not built")
@pytest.mark.parametrize("isa", ["base", "avx2", None])
def test_every_cpu_instruction_set(isa):
    """The C++ kernels are compiled for the baseline ISA, AVX2+FMA and AVX-512 and picked once per
    process (VIDOPS_CPU_ISA caps the choice): each one this CPU runs, in its own process."""
    used = run_with_cpu_isa(_ISA_SCRIPT, isa, os.path.dirname(os.path.abspath(__file__))).split()[0]
    assert used in ("base", "avx2", "avx512")
    if isa == "base":
        assert used == "base"
    elif isa == "avx2":
        assert used in ("base", "avx2")  # a CPU without AVX2 runs the baseline


@pytest.mark.skipif(not vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU"), reason="C++ CPU kernel not built")
def test_cpu_weight_gradient_is_bitwise_reproducible_for_any_thread_count():
    x, w = make_inputs((3, 5, 6, 9, 10, (3, 7, 7)), torch.float32)
    g = torch.randn_like(x)
    threads = torch.get_num_threads()
    got = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            got.append(_op_backward(g, x, w, "cpu"))
    finally:
        torch.set_num_threads(threads)
    for gx, gw in got[1:]:
        assert torch.equal(gx, got[0][0]) and torch.equal(gw, got[0][1])


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_float64(device, backend):
    fast = backend != "cpu"  # slow_conv3d (reference) and the interpreter (triton) pay per Jacobian column
    for case in [(1, 2, 2, 3, 4, (3, 3, 3)), (2, 1, 2, 3, 4, (1, 3, 5))]:
        x, w = make_inputs(case, torch.float64, device)
        inputs = (x.requires_grad_(True), w.requires_grad_(True))
        assert torch.autograd.gradcheck(lambda a, b: vidops.depthwise_conv3d(a, b, backend=backend), inputs,
                                        fast_mode=fast)


@pytest.mark.parametrize("layout", ["sliced", "channels_last_3d", "transposed_hw"])
@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs_give_identical_results(device, backend, layout):
    x, w = make_inputs((1, 3, 4, 9, 11, (3, 7, 7)), torch.float32, device)
    if layout == "sliced":
        xv = torch.randn(3, 5, 6, 12, 14, device=device)[1:2, 1:4, 1:5, 2:11, 1:12]
    elif layout == "channels_last_3d":
        xv = x.to(memory_format=torch.channels_last_3d)
    else:
        xv = x.transpose(3, 4).contiguous().transpose(3, 4)
    assert not xv.is_contiguous()
    xc = xv.contiguous()
    wv = torch.randn(3, 7, 7, 3, device=device).permute(0, 3, 1, 2)  # a non-contiguous weight too
    out = vidops.depthwise_conv3d(xv, wv, backend=backend)
    if layout == "channels_last_3d":  # the output (and grad_x) keep a channels_last_3d input's layout
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
    else:
        assert out.is_contiguous()
    torch.testing.assert_close(out, vidops.depthwise_conv3d(xc, wv.contiguous(), backend=backend), rtol=0, atol=0)
    g = torch.randn_like(out)
    grads = []
    for xi in (xv, xc):
        xg = xi.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        wg = wv.detach().clone().requires_grad_(True)
        vidops.depthwise_conv3d(xg, wg, backend=backend).backward(g.to(memory_format=torch.channels_last_3d)
                                                                   if layout == "channels_last_3d" else g)
        grads.append((xg.grad, wg.grad))
    if layout == "channels_last_3d":
        assert grads[0][0].is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    # the channels_last_3d weight gradient reduces in another order (vectorised along C): close, not equal
    exact = {} if layout == "channels_last_3d" else {"rtol": 0, "atol": 0}
    torch.testing.assert_close(grads[0][1], grads[1][1], **exact)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_batch_one_and_empty_batch(device, backend):
    x, w = make_inputs((1, 3, 4, 6, 5, (3, 3, 3)), torch.float32, device)
    assert vidops.depthwise_conv3d(x, w, backend=backend).shape == (1, 3, 4, 6, 5)
    empty = x[:0].clone().requires_grad_(True)
    wg = w.clone().requires_grad_(True)
    out0 = vidops.depthwise_conv3d(empty, wg, backend=backend)
    assert out0.shape == (0, 3, 4, 6, 5)
    out0.sum().backward()
    assert empty.grad.shape == empty.shape
    assert torch.equal(wg.grad, torch.zeros_like(w))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_only_the_needed_gradient_is_computed(device, backend):
    x, w = make_inputs((1, 2, 3, 5, 6, (3, 3, 3)), torch.float64, device)
    g = torch.randn_like(x)
    gx, gw = _op_backward(g, x, w, backend, True, False)
    assert torch.equal(gw, torch.zeros_like(w))
    gx2, gw2 = _op_backward(g, x, w, backend, False, True)
    assert torch.equal(gx2, torch.zeros_like(x))
    ex, ew, _ = ref_dwc_backward(g, x, w)
    torch.testing.assert_close(gx, ex)
    torch.testing.assert_close(gw2, ew)
    # autograd asks only for what requires grad
    xs = x.clone().requires_grad_(True)
    vidops.depthwise_conv3d(xs, w, backend=backend).backward(g)
    torch.testing.assert_close(xs.grad, ex)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    x, w = make_inputs((1, 2, 3, 4, 5, (3, 3, 3)), torch.float64, device)
    same = [1, 1, 1]
    torch.library.opcheck(torch.ops.vidops.depthwise_conv3d.default, (x, w, None, [1, 1, 1], same, backend))
    torch.library.opcheck(torch.ops.vidops.depthwise_conv3d.default,
                          (x.clone().requires_grad_(True), w.clone().requires_grad_(True), None, [1, 1, 1], same,
                           backend))
    g = torch.randn_like(x)
    torch.library.opcheck(torch.ops.vidops.depthwise_conv3d_backward.default,
                          (g, x, w, None, [1, 1, 1], same, True, True, False, backend))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    x, w = make_inputs((1, 2, 3, 5, 6, (3, 3, 3)), torch.float32, device)

    def f(x, w):
        return vidops.depthwise_conv3d(x * 2, w, backend=backend).relu()

    xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    out = torch.compile(f, fullgraph=True, backend="aot_eager")(xs, ws)
    torch.testing.assert_close(out, f(x, w))
    out.sum().backward()
    assert xs.grad is not None and ws.grad is not None


def test_compile_inductor_fullgraph():
    torch._dynamo.reset()
    x, w = make_inputs((1, 2, 3, 5, 6, (3, 3, 3)), torch.float32)
    f = torch.compile(lambda x: vidops.depthwise_conv3d(x, w) + 1, fullgraph=True)
    torch.testing.assert_close(f(x), vidops.depthwise_conv3d(x, w) + 1)


def test_conv3d_weight_shape_and_padding_argument():
    x, w = make_inputs((1, 2, 3, 5, 6, (3, 5, 7)))
    a = vidops.depthwise_conv3d(x, w)
    torch.testing.assert_close(vidops.depthwise_conv3d(x, w.unsqueeze(1)), a, rtol=0, atol=0)
    torch.testing.assert_close(vidops.depthwise_conv3d(x, w, padding=(1, 2, 3)), a, rtol=0, atol=0)
    torch.testing.assert_close(vidops.depthwise_conv3d(x, w, padding="same"), a, rtol=0, atol=0)
    w5 = w.unsqueeze(1).requires_grad_(True)
    vidops.depthwise_conv3d(x, w5).sum().backward()
    assert w5.grad.shape == w5.shape
    assert vidops.depthwise_conv3d(x, w).data_ptr() != x.data_ptr()


def test_reference_equals_the_authors_diagonalwise_conv():
    from vidops.reference.depthwise_conv3d import diagonalwise_conv3d, diagonalwise_mask
    C, cpg, k = 64, 32, (3, 7, 7)
    x = torch.randn(1, C, 3, 6, 7, dtype=torch.float64)
    full = torch.randn(C, cpg, *k, dtype=torch.float64)
    mask = diagonalwise_mask(C, cpg, k, torch.float64)
    o = torch.arange(C)
    dw = (full * mask)[o, o % cpg]
    torch.testing.assert_close(diagonalwise_conv3d(x, full, mask), ref_dwc(x, dw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x,w,pad,exc,words", [
    (torch.randn(2, 3, 6, 8), torch.randn(3, 3, 3, 3), "same", ValueError, ["depthwise_conv3d", "x", "5-D"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(4, 3, 3, 3), "same", ValueError, ["weight", "C=3"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(3, 3, 3), "same", ValueError, ["weight", "(C, kt, kh, kw)"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(3, 2, 3, 3), "same", ValueError, ["padding", "odd", "(2, 3, 3)"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(3, 2, 3, 3, 3), "same", ValueError, ["weight", "(C, 1, kt, kh, kw)"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(3, 3, 3, 3, dtype=torch.float64), "same", TypeError,
     ["weight", "float64"]),
    (torch.randint(0, 5, (1, 3, 4, 5, 5)), torch.randn(3, 3, 3, 3), "same", TypeError, ["x", "floating"]),
    (torch.randn(1, 3, 4, 5, 5), [1.0], "same", TypeError, ["weight", "torch.Tensor"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(3, 3, 3, 3), "valid", ValueError, ["padding", "same"]),
    (torch.randn(1, 3, 4, 5, 5), torch.randn(3, 3, 3, 3), (0, -1, 1), ValueError, ["padding", "non-negative"]),
])
def test_bad_inputs_raise_clear_errors(x, w, pad, exc, words):
    with pytest.raises(exc) as info:
        vidops.depthwise_conv3d(x, w, padding=pad)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_unknown_or_unavailable_backend_is_explained():
    x, w = make_inputs((1, 2, 3, 4, 5, (3, 3, 3)))
    with pytest.raises(vidops.BackendUnavailableError, match="unknown backend"):
        vidops.depthwise_conv3d(x, w, backend="gpu")
    with pytest.raises(vidops.BackendUnavailableError, match="cuda.*CUDA tensors"):
        vidops.depthwise_conv3d(x, w, backend="cuda")
