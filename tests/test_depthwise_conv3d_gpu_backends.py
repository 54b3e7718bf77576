"""The GPU kernels of vidops.depthwise_conv3d with stride, explicit padding, bias and layouts,
without a GPU: the CUDA launchers through the host emulation (tests/cuda_emulation.py: the same .cu
source compiled by g++, every block's threads as shuffled fibers, shared memory and workspace
poisoned with NaN) and the Triton launchers under the interpreter, both against the float64
reference (F.conv3d(groups=C) and its autograd), with the tolerance of the same-dtype reference's
noise. Shapes are tiny and odd: strides 1..3 per axis, odd and even kernels, padding 0..3 (larger
than the kernel's half), T = 1, C = 1, channels_last_3d (vectorised channel loads: C a multiple of
2, 4, 8), non-contiguous slices, empty batch, the tile kernels' fallbacks. On a machine with a GPU
the `gpu` tests run the real kernels at X3D's shapes through the op.
"""
import pytest
import torch
import torch.nn.functional as F

import cuda_emulation as ce
from tolerance import assert_close_to_reference

# (N, C, T, H, W, kernel, stride, padding, bias)
CASES = [
    (2, 3, 5, 7, 9, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),     # X3D's downsampling conv, odd sizes
    (1, 8, 3, 9, 37, (3, 3, 3), (1, 1, 1), (1, 1, 1), True),    # stride 1, channel vectors of 8
    (1, 4, 4, 6, 7, (2, 4, 1), (2, 1, 3), (0, 2, 1), True),     # even kernels, mixed strides
    (2, 5, 7, 5, 6, (5, 1, 1), (1, 1, 1), (2, 0, 0), True),     # X3D's stem 5x1x1
    (1, 1, 1, 5, 5, (1, 3, 3), (1, 1, 1), (0, 1, 1), False),    # T = 1, C = 1
    (1, 3, 3, 4, 4, (3, 3, 3), (3, 3, 3), (3, 2, 2), True),     # padding past the kernel's half
    (1, 16, 2, 19, 18, (1, 3, 6), (1, 2, 2), (0, 1, 2), True),  # kw = 6: two 3-tap segments
    (1, 2, 3, 18, 35, (3, 7, 7), (1, 1, 1), (3, 3, 3), False),  # RNL's kernel, several tiles
    (1, 2, 2, 19, 150, (1, 3, 3), (1, 8, 8), (0, 1, 1), True),  # stride 8: the tiles' fallbacks
]


def case_id(c):
    N, C, T, H, W, k, s, p, b = c
    j = "x".join
    return (f"N{N}-C{C}-T{T}-{H}x{W}-k{j(map(str, k))}-s{j(map(str, s))}-p{j(map(str, p))}"
            f"{'-bias' if b else ''}")


def _layout(x, layout):
    if layout == "channels_last_3d":
        return x.contiguous(memory_format=torch.channels_last_3d)
    if layout == "sliced":  # every stride odd: a slice of a wider, longer tensor
        big = torch.zeros(x.shape[0], x.shape[1] + 1, x.shape[2], x.shape[3], x.shape[4] * 2 + 1, dtype=x.dtype)
        big[:, 1:, :, :, 1::2] = x
        return big[:, 1:, :, :, 1::2]
    return x


def _conv(x, w, b, s, p, g, dtype):
    """(y, grad_x, grad_w, grad_b) by F.conv3d and autograd, computed in `dtype` (float32 for half
    inputs, rounded to their dtype once, as vidops' reference runs them)."""
    C = x.shape[1]
    xs = x.to(dtype).detach().requires_grad_()
    ws = w.to(dtype).reshape(C, 1, *w.shape[1:]).detach().requires_grad_()
    bs = b.to(dtype).detach().requires_grad_() if b is not None else None
    y = F.conv3d(xs, ws, bs, stride=s, padding=p, groups=C)
    y.backward(g.to(dtype))
    return y.detach(), xs.grad, ws.grad.reshape(w.shape), (bs.grad if b is not None else None)


def make(case, dtype, layout, seed=0):
    N, C, T, H, W, k, s, p, has_b = case
    gen = torch.Generator().manual_seed(seed)
    wdt = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x = _layout(torch.randn(N, C, T, H, W, generator=gen, dtype=torch.float64).to(dtype), layout)
    w = torch.randn(C, *k, generator=gen, dtype=torch.float64).to(wdt)
    b = torch.randn(C, generator=gen, dtype=torch.float64).to(wdt) if has_b else None
    out = [(L + 2 * pp - kk) // ss + 1 for L, kk, ss, pp in zip((T, H, W), k, s, p)]
    g = _layout(torch.randn(N, C, *out, generator=gen, dtype=torch.float64).to(dtype), layout)
    return x, w, b, s, p, g


def check(case, dtype, layout, fwd, bwd):
    """fwd(x, w, b, s, p) -> y and bwd(g, x, w, b, s, p) -> (gx, gw, gb) against the reference."""
    x, w, b, s, p, g = make(case, dtype, layout)
    y = fwd(x, w, b, s, p)
    gx, gw, gb = bwd(g, x, w, b, s, p)
    same = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    ref64 = _conv(x, w, b, s, p, g, torch.float64)
    refs = _conv(x, w, b, s, p, g, same)
    scale = _conv(x.abs(), w.abs(), b.abs() if b is not None else None, s, p, g.abs(), torch.float64)
    want_cl = layout == "channels_last_3d" and x.shape[1] > 1
    for name, out, r64, rs, sc in zip(("y", "grad_x", "grad_w", "grad_b"), (y, gx, gw, gb), ref64, refs, scale):
        if r64 is None:
            continue
        if name in ("y", "grad_x"):
            assert out.dtype == dtype, name
            assert out.is_contiguous(memory_format=torch.channels_last_3d if want_cl else torch.contiguous_format), \
                f"{name} is not in x's layout ({layout}): strides {out.stride()}"
            rs = rs.to(dtype)
        assert_close_to_reference(out, r64, rs, sc, name=name)


# ---- CUDA kernels through the host emulation --------------------------------------------------

needs_emulation = pytest.mark.skipif(ce.unavailable_reason() is not None,
                                     reason=f"CUDA emulation: {ce.unavailable_reason()}")


def _emu_bwd(g, x, w, b, s, p):
    return ce.dwc_backward(g, x, w, b, s, p, True, True, True)


@needs_emulation
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d", "sliced"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_kernels_float64(case, layout):
    check(case, torch.float64, layout, ce.dwc_forward, _emu_bwd)


@needs_emulation
@pytest.mark.parametrize("frames", [2, 3])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5], CASES[7]], ids=case_id)
def test_cuda_tile_kernel_walks_several_output_frames(case, frames):
    """The tile kernel's ring of kt input halos over several output frames per block (2 or 3 per
    block, a partial last chunk; stride 1 and 3 in time, kt = 5 and padding past the kernel's
    half), forward and stride-1 grad_x."""
    def fwd(x, w, b, s, p):
        return ce.dwc_forward(x, w, b, s, p, frames_per_block=frames)

    def bwd(g, x, w, b, s, p):
        return ce.dwc_backward(g, x, w, b, s, p, True, True, True, frames_per_block=frames)

    check(case, torch.float64, "contiguous", fwd, bwd)


@needs_emulation
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[6]], ids=case_id)
def test_cuda_kernels_low_precision(case, layout, dtype):
    check(case, dtype, layout, ce.dwc_forward, _emu_bwd)


@needs_emulation
def test_cuda_gradients_only_when_asked_and_empty_batch():
    x, w, b, s, p, g = make(CASES[0], torch.float64, "channels_last_3d")
    gx, gw, gb = ce.dwc_backward(g, x, w, b, s, p, need_x=False, need_weight=False, need_bias=True)
    assert gx is None and gw is None
    assert torch.allclose(gb, g.sum((0, 2, 3, 4)), rtol=1e-12, atol=1e-12)
    gx, gw, gb = ce.dwc_backward(g, x, w, b, s, p, need_x=False, need_weight=True, need_bias=False)
    assert gb is None and torch.isfinite(gw).all()
    for layout in ("contiguous", "channels_last_3d"):
        x0, w0, b0, s0, p0, g0 = make((0,) + CASES[1][1:], torch.float64, layout)
        assert ce.dwc_forward(x0, w0, b0, s0, p0).shape == (0, 8, 3, 9, 37)
        gx0, gw0, gb0 = ce.dwc_backward(g0, x0, w0, b0, s0, p0)
        assert gx0.shape == x0.shape and (gw0 == 0).all() and (gb0 == 0).all()


# ---- Triton kernels under the interpreter -----------------------------------------------------

def _triton():
    from vidops._triton import kernels
    return kernels("depthwise_conv3d")


def _tri_fwd(x, w, b, s, p):
    return _triton().forward(x, w, b, s, p)


def _tri_bwd(g, x, w, b, s, p):
    gx, gw, gb = _triton().backward(g, x, w, b, s, p, True, True, True)
    return gx, gw, (gb if b is not None else None)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d", "sliced"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_triton_kernels_float64(case, layout):
    check(case, torch.float64, layout, _tri_fwd, _tri_bwd)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=case_id)
def test_triton_kernels_low_precision(case, layout, dtype):
    check(case, dtype, layout, _tri_fwd, _tri_bwd)


def test_triton_gradients_only_when_asked_and_empty_batch():
    x, w, b, s, p, g = make(CASES[0], torch.float64, "channels_last_3d")
    K = _triton()
    gx, gw, gb = K.backward(g, x, w, b, s, p, False, False, True)
    assert (gx == 0).all() and (gw == 0).all()
    assert gx.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(gb, g.sum((0, 2, 3, 4)), rtol=1e-12, atol=1e-12)
    _, _, gb_none = K.backward(g, x, w, None, s, p, True, True, True)
    assert gb_none.shape == (0,)
    x0, w0, b0, s0, p0, g0 = make((0,) + CASES[1][1:], torch.float64, "contiguous")
    assert K.forward(x0, w0, b0, s0, p0).shape == (0, 8, 3, 9, 37)
    gx0, gw0, gb0 = K.backward(g0, x0, w0, b0, s0, p0, True, True, True)
    assert gx0.shape == x0.shape and (gw0 == 0).all() and (gb0 == 0).all()


def test_triton_weight_gradient_is_bitwise_reproducible():
    x, w, b, s, p, g = make(CASES[1], torch.float32, "channels_last_3d")
    K = _triton()
    first = K.backward(g, x, w, b, s, p, False, True, True)
    for _ in range(2):
        again = K.backward(g, x, w, b, s, p, False, True, True)
        assert torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])


# ---- the real kernels (GPU only) --------------------------------------------------------------

X3D_SHAPES = [  # (C, T, H, W, kernel, stride, padding) at N = 1, T = 8: X3D-M's depthwise convs
    (54, 8, 56, 56, (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    (54, 8, 112, 112, (3, 3, 3), (1, 2, 2), (1, 1, 1)),
    (432, 8, 14, 14, (3, 3, 3), (1, 2, 2), (1, 1, 1)),
    (24, 8, 112, 112, (5, 1, 1), (1, 1, 1), (2, 0, 0)),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
@pytest.mark.parametrize("shape", X3D_SHAPES, ids=lambda s: f"C{s[0]}-{s[2]}x{s[3]}-k{s[4][0]}-s{s[5][1]}")
def test_x3d_shapes_on_the_gpu(shape, layout, backend):
    import vidops

    C, T, H, W, k, s, p = shape
    dev = "cuda"
    x = torch.randn(1, C, T, H, W, device=dev).to(torch.bfloat16)
    if layout == "channels_last_3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    w = (0.1 * torch.randn(C, *k, device=dev)).requires_grad_()
    b = torch.randn(C, device=dev).requires_grad_()
    xs = x.detach().requires_grad_()
    y = vidops.depthwise_conv3d(xs, w, b, stride=s, padding=p, backend=backend)
    g = torch.randn_like(y)
    y.backward(g)
    assert y.is_contiguous(memory_format=torch.channels_last_3d if layout == "channels_last_3d"
                           else torch.contiguous_format)
    x64, w64, b64, g64 = x.double(), w.detach().double(), b.detach().double(), g.double()
    r64 = _conv(x64, w64, b64, s, p, g64, torch.float64)
    rs = _conv(x.float(), w.detach(), b.detach(), s, p, g.float(), torch.float32)
    sc = _conv(x64.abs(), w64.abs(), b64.abs(), s, p, g64.abs(), torch.float64)
    for name, out, a, bb, c in zip(("y", "grad_x", "grad_w", "grad_b"), (y, xs.grad, w.grad, b.grad), r64, rs, sc):
        if name in ("y", "grad_x"):
            bb = bb.to(torch.bfloat16)
        assert_close_to_reference(out, a, bb, c, name=name)
