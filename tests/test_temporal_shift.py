"""vidops.temporal_shift (TSM's shift) and vidops.nn.TemporalShift: every backend against the float64
reference (bit for bit: the shift is a copy, so the same-dtype reference has no rounding noise and
any difference is a bug), the reference against the definition written as loops, gradients,
layouts, errors, opcheck, compile, export, and the CUDA kernel through the CPU emulator."""
import ctypes
import shutil

import pytest
import torch

import vidops
from vidops.ops.temporal_shift import _temporal_shift_backward_op, _temporal_shift_op, output_memory_format
from vidops.reference.temporal_shift import temporal_shift as ref
from vidops.reference.temporal_shift import temporal_shift_slice_copy

from conftest import device_backend_params

OP = "temporal_shift"
PARAMS = device_backend_params(OP)

# (N, T, C, H, W, fold_div): odd C, C not a multiple of fold_div, T = 1, 3, 5, 8, batch 1, fold = 1,
# fold_div 1 (everything shifts forward), 3 and 4
SHAPES = [(2, 8, 16, 5, 7, 8), (1, 3, 17, 4, 3, 8), (2, 5, 12, 3, 5, 8), (3, 1, 9, 2, 2, 8),
          (1, 8, 8, 1, 1, 8), (1, 5, 67, 3, 2, 8), (2, 3, 7, 2, 3, 1), (2, 4, 10, 3, 3, 3), (1, 3, 6, 2, 9, 4)]


def shape_id(s):
    return "N{}-T{}-C{}-{}x{}-div{}".format(*s)


def bits(t):
    """The tensor's bit patterns (exact comparison, signed zeros and NaNs included)."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_same_bits(got, want, name="output"):
    assert got.shape == want.shape and got.dtype == want.dtype, (name, got.shape, want.shape, got.dtype)
    assert torch.equal(bits(got), bits(want.to(got.device))), f"{name}: differs from the reference"


def assert_output_layout(out, x):
    want = torch.empty_like(x, memory_format=output_memory_format(x)).stride()
    assert out.stride() == want, f"output strides {out.stride()}, expected {want} for input strides {x.stride()}"


def loop_shift(x, T, fold_div, backward=False):
    """The definition, element by element over frames and channels."""
    NT, C = x.shape[:2]
    fold = C // fold_div
    out = torch.zeros_like(x)
    for n in range(NT // T):
        for t in range(T):
            for c in range(C):
                d = 1 if c < fold else (-1 if c < 2 * fold else 0)
                d = -d if backward else d
                if 0 <= t + d < T:
                    out[n * T + t, c] = x[n * T + t + d, c]
    return out


def layouts(x):
    """x as contiguous, channels_last, H/W transposed in memory, a strided slice, and expanded."""
    NT, C, H, W = x.shape
    big = torch.randn(NT, C + 3, H, 2 * W, dtype=x.dtype, device=x.device)
    big[:, 1:C + 1, :, ::2] = x
    return {
        "contiguous": x,
        "channels_last": x.to(memory_format=torch.channels_last),
        "hw_transposed": x.transpose(2, 3).contiguous().transpose(2, 3),
        "strided_slice": big[:, 1:C + 1, :, ::2],
        "expanded": x[:, :1].expand(NT, C, H, W),
    }


@pytest.mark.parametrize("shape", SHAPES[:6], ids=shape_id)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "mirror"])
def test_reference_is_the_definition(shape, backward):
    N, T, C, H, W, fd = shape
    x = torch.randn(N * T, C, H, W, dtype=torch.float64)
    torch.testing.assert_close(ref(x, T, fd, backward=backward), loop_shift(x, T, fd, backward), rtol=0, atol=0)
    if not backward:
        torch.testing.assert_close(temporal_shift_slice_copy(x, T, fd), loop_shift(x, T, fd), rtol=0, atol=0)


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_forward_backward_match_reference(device, backend, dtype, shape):
    N, T, C, H, W, fd = shape
    x = torch.randn(N * T, C, H, W, dtype=torch.float64)
    xr = x.to(device=device, dtype=dtype).requires_grad_()
    out = vidops.temporal_shift(xr, T, fd, backend=backend)
    assert_same_bits(out, ref(x, T, fd).to(dtype), "out")
    g = torch.randn(out.shape, dtype=torch.float64).to(dtype).double()  # exactly representable in dtype
    gx, = torch.autograd.grad(out, xr, g.to(device=device, dtype=dtype))
    assert_same_bits(gx, ref(g, T, fd, backward=True).to(dtype), "grad_x")
    # the mirror shift is the adjoint of the shift: autograd through the reference agrees
    x64 = x.clone().requires_grad_()
    want, = torch.autograd.grad(temporal_shift_slice_copy(x64, T, fd), x64, g)
    torch.testing.assert_close(gx.double().cpu(), want, rtol=0, atol=0)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_layouts(device, backend):
    N, T, C, H, W, fd = 2, 3, 17, 4, 5, 8
    x = torch.randn(N * T, C, H, W, dtype=torch.float64, device=device)
    want = ref(x, T, fd)
    want_bw = ref(x, T, fd, backward=True)
    for name, xi in layouts(x).items():
        if name == "expanded":
            want, want_bw = ref(xi.contiguous(), T, fd), ref(xi.contiguous(), T, fd, backward=True)
        out = vidops.temporal_shift(xi, T, fd, backend=backend)
        assert_same_bits(out, want, name)
        assert_output_layout(out, xi)
        gx = _temporal_shift_backward_op(xi, T, fd, backend)
        assert_same_bits(gx, want_bw, name + " (mirror)")
        assert_output_layout(gx, xi)
    cl = vidops.temporal_shift(x.to(memory_format=torch.channels_last), T, fd, backend=backend)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_an_exact_copy(device, backend, dtype):
    T, fd = 4, 8
    x = torch.randn(8, 24, 3, 5).to(dtype)
    x[1, 0, 0, 0], x[2, 3, 1, 1], x[3, 9, 2, 2], x[5, 20, 0, 4] = -0.0, float("nan"), float("inf"), 1e-40
    x = x.to(device)
    out = vidops.temporal_shift(x, T, fd, backend=backend)
    assert_same_bits(out, ref(x.cpu(), T, fd))
    cl = x.to(memory_format=torch.channels_last)
    assert_same_bits(vidops.temporal_shift(cl, T, fd, backend=backend), ref(x.cpu(), T, fd), "channels_last")
    assert_same_bits(_temporal_shift_backward_op(x, T, fd, backend), ref(x.cpu(), T, fd, backward=True), "mirror")


@pytest.mark.parametrize("device,backend", PARAMS)
def test_empty_batch(device, backend):
    for shape in [(0, 16, 5, 7), (8, 16, 0, 3)]:
        x = torch.randn(*shape, device=device, requires_grad=True)
        out = vidops.temporal_shift(x, 4, backend=backend)
        assert out.shape == x.shape
        out.sum().backward()
        assert x.grad.shape == x.shape


@pytest.mark.parametrize("device,backend", PARAMS)
def test_never_in_place(device, backend):
    x = torch.randn(6, 8, 3, 3, device=device)
    keep = x.clone()
    out = vidops.temporal_shift(x, 3, backend=backend)
    assert out.data_ptr() != x.data_ptr()
    assert torch.equal(x, keep)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_gradcheck(device, backend):
    x = torch.randn(6, 9, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    fn = lambda a: vidops.temporal_shift(a, 3, 4, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def _bad(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


@pytest.mark.parametrize("args,exc,msg", [
    ((_bad(6, 8, 3, 3), 4), ValueError, "x.shape\\[0\\] = N\\*T = 6 must be a multiple of num_segments=4"),
    ((_bad(6, 8, 3, 3), 0), ValueError, "num_segments must be a positive int, got 0"),
    ((_bad(6, 8, 3, 3), -3), ValueError, "num_segments must be a positive int"),
    ((_bad(6, 8, 3, 3), 3, 0), ValueError, "fold_div must be a positive int, got 0"),
    ((_bad(6, 8, 3, 3), 3, -8), ValueError, "fold_div must be a positive int"),
    ((_bad(6, 7, 3, 3), 3), ValueError, "C >= fold_div=8 channels .*got C=7"),
    ((_bad(6, 8, 3), 3), ValueError, "x must be 4-D"),
    ((_bad(2, 3, 8, 3, 3), 3), ValueError, "x must be 4-D"),
    ((_bad(6, 8, 3, 3).long(), 3), TypeError, "floating"),
    ((_bad(6, 8, 3, 3, dtype=torch.bool), 3), TypeError, "floating"),
    ((_bad(6, 8, 3, 3), True), TypeError, "num_segments must be an int, got bool True"),
    ((_bad(6, 8, 3, 3), 3, True), TypeError, "fold_div must be an int, got bool True"),
    ((_bad(6, 8, 3, 3), 3.0), TypeError, "num_segments must be an int, got float 3.0"),
    (("x", 3), TypeError, "torch.Tensor"),
])
def test_bad_inputs(args, exc, msg):
    with pytest.raises(exc, match="vidops.temporal_shift: .*" + msg):
        vidops.temporal_shift(*args)
    with pytest.raises(exc, match="vidops.temporal_shift: .*" + msg):
        temporal_shift_slice_copy(*args)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_opcheck(device, backend):
    for x in (torch.randn(6, 9, 3, 4, device=device, requires_grad=True),
              torch.randn(6, 9, 3, 4, device=device).to(memory_format=torch.channels_last).requires_grad_()):
        torch.library.opcheck(_temporal_shift_op, (x, 3, 4, backend))
        torch.library.opcheck(_temporal_shift_backward_op, (x, 3, 4, backend))


@pytest.mark.parametrize("device,backend", PARAMS)
def test_compile_fullgraph(device, backend):
    x = torch.randn(6, 16, 3, 4, device=device, requires_grad=True)
    fn = lambda a: vidops.temporal_shift(a, 3, backend=backend).square().sum()  # noqa: E731
    want = fn(x)
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, x)[0], torch.autograd.grad(want, x)[0])


class _Block(torch.nn.Module):
    """A bottleneck's residual branch head with TSM's wrapped conv1, plus the identity."""

    def __init__(self, C=16, T=4, impl="vidops"):
        super().__init__()
        self.conv1 = vidops.nn.TemporalShift(torch.nn.Conv2d(C, C, 1, bias=False), T, impl=impl)
        self.bn1 = torch.nn.BatchNorm2d(C)

    def forward(self, x):
        return x + self.bn1(self.conv1(x))


def test_export():
    block = _Block().eval()
    x = torch.randn(8, 16, 5, 5)
    ep = torch.export.export(block, (x,))
    assert "vidops.temporal_shift" in str(ep.graph)
    torch.testing.assert_close(ep.module()(x), block(x))
    x2 = torch.randn(8, 16, 5, 5)
    torch.testing.assert_close(ep.module()(x2), block(x2))
    # the cat-based reference exports too (a graph of slices, zeros and cat)
    ep_ref = torch.export.export(_RefShift(), (x,))
    torch.testing.assert_close(ep_ref.module()(x), ref(x, 4, 8), rtol=0, atol=0)


class _RefShift(torch.nn.Module):
    def forward(self, x):
        return ref(x, 4, 8)


def test_module_state_dict_keys_and_attributes():
    block = _Block()
    assert sorted(block.state_dict()) == ["bn1.bias", "bn1.num_batches_tracked", "bn1.running_mean", "bn1.running_var",
                                          "bn1.weight", "conv1.net.weight"]
    m = block.conv1
    assert (m.num_segments, m.fold_div, m.impl) == (4, 8, "vidops") and isinstance(m.net, torch.nn.Conv2d)
    m2 = vidops.nn.TemporalShift(torch.nn.Conv2d(8, 4, 3), num_segments=3, fold_div=4, impl="reference")
    assert sorted(m2.state_dict()) == ["net.bias", "net.weight"]
    assert "num_segments=3, fold_div=4" in repr(m2)


def test_module_impl_switch_gives_the_same_forward_and_gradients():
    torch.manual_seed(1)
    block = _Block(C=20, T=5).double()
    x = torch.randn(10, 20, 4, 3, dtype=torch.float64)
    results = {}
    for impl in ("vidops", "reference", "vidops"):
        block.conv1.impl = impl
        block.zero_grad()
        xi = x.clone().requires_grad_()
        y = block(xi)
        y.square().sum().backward()
        results.setdefault(impl, []).append((y.detach(), xi.grad, block.conv1.net.weight.grad.clone()))
    (a, ga, wa), (a2, _, _) = results["vidops"]
    b, gb, wb = results["reference"][0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a2, b, rtol=0, atol=0)
    torch.testing.assert_close(ga, gb, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(wa, wb, rtol=1e-14, atol=1e-14)
    # the module's output is net(shift(x)) exactly
    block.conv1.impl = "vidops"
    torch.testing.assert_close(block.conv1(x), block.conv1.net(ref(x, 5, 8)), rtol=0, atol=0)


def test_module_bad_arguments():
    conv = torch.nn.Conv2d(8, 8, 1)
    with pytest.raises(ValueError, match="vidops.nn.TemporalShift: impl must be one of"):
        vidops.nn.TemporalShift(conv, 8, impl="fast")
    with pytest.raises(ValueError, match="vidops.nn.TemporalShift: num_segments must be a positive int"):
        vidops.nn.TemporalShift(conv, 0)
    with pytest.raises(ValueError, match="vidops.nn.TemporalShift: fold_div must be a positive int"):
        vidops.nn.TemporalShift(conv, 8, fold_div=True)
    m = vidops.nn.TemporalShift(conv, 2)
    m.impl = "slice"
    with pytest.raises(ValueError, match="impl must be one of"):
        m(torch.randn(4, 8, 2, 2))
    with pytest.raises(ValueError, match="vidops.temporal_shift: .*multiple of num_segments=2"):
        vidops.nn.TemporalShift(conv, 2)(torch.randn(3, 8, 2, 2))


# ---- the CUDA kernel on the CPU (tests/cuda_emu: one std::thread per CUDA thread) ------------

@pytest.fixture(scope="module")
def emulated_cuda_shift():
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (C++20) for the CUDA emulator")
    from cuda_emu.build import compile_cu

    try:
        lib = compile_cu("temporal_shift/temporal_shift_kernel.cu")
    except Exception as exc:  # pragma: no cover - toolchain problems are reported, not failed
        pytest.skip(f"cannot build the CUDA emulator: {exc}")
    lib.vidops_temporal_shift_cuda.restype = ctypes.c_char_p

    def run(x, T, fold_div, backward):  # mirrors temporal_shift_cuda.cpp
        out = torch.empty_like(x, memory_format=output_memory_format(x))
        if out.numel() == 0:
            return out
        i64 = lambda v: (ctypes.c_int64 * 4)(*v)  # noqa: E731
        err = lib.vidops_temporal_shift_cuda(
            ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(out.data_ptr()), x.element_size(), i64(x.shape),
            i64(x.stride()), int(output_memory_format(x) == torch.channels_last), T, x.shape[1] // fold_div,
            int(backward), None)
        assert err is None, err.decode()
        return out

    return run


@pytest.mark.parametrize("shape", [(2, 3, 17, 5, 7, 8), (1, 1, 9, 3, 3, 8), (2, 5, 12, 3, 5, 3), (1, 4, 40, 3, 3, 8)],
                         ids=shape_id)
def test_cuda_kernel_emulated(emulated_cuda_shift, shape):
    N, T, C, H, W, fd = shape
    x = torch.randn(N * T, C, H, W, dtype=torch.float64)
    for name, xi in layouts(x).items():
        base = xi.contiguous()
        for backward in (False, True):
            out = emulated_cuda_shift(xi, T, fd, backward)
            assert_same_bits(out, ref(base, T, fd, backward=backward), f"{name} backward={backward}")
            assert_output_layout(out, xi)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        xd = x.to(dtype)
        assert_same_bits(emulated_cuda_shift(xd, T, fd, False), ref(xd, T, fd), str(dtype))
