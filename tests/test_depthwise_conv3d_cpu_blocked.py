"""The CPU's channel-blocked channels_last kernels of depthwise_conv3d (AVX2 and AVX-512): channel
counts with whole blocks, a half block and a partial block, output rows of whole 14- or 8-wide runs
plus a shorter run, the kernel widths they are instantiated for (3, 5, 7; stride 1 and 2) and ones
they are not (1, 2), small frames split into channel block groups, the grad_x of stride 2 along W
(compact grad_y rows, odd and even widths), against the float64 reference, forward and both
gradients (grad_x runs the same kernels). test_depthwise_conv3d_strided's
per-instruction-set test runs these cases in every ISA this CPU has."""
import pytest
import torch

import vidops

from test_depthwise_conv3d_strided import check_case

HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")
CL = torch.channels_last_3d

# (N, C, T, H, W, kernel, stride, padding, bias)
BLOCKED_CASES = [
    (1, 37, 4, 9, 30, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),  # 2 blocks + 5 channels; runs 14 + 1
    (1, 54, 3, 6, 33, (3, 3, 3), (1, 1, 1), (1, 1, 1), False),  # X3D-M's C: 3 blocks + 6 of 8 lanes
    (1, 24, 7, 5, 20, (5, 1, 1), (1, 1, 1), (2, 0, 0), True),  # the X3D stem's 5x1x1: the temporal kernel
    (2, 40, 3, 4, 7, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),  # small frames: channel block groups
    (1, 20, 3, 5, 16, (3, 7, 7), (1, 1, 1), (1, 3, 3), False),  # kw = 7 (RNL's 3x7x7)
    (1, 17, 3, 6, 12, (1, 5, 5), (1, 1, 1), (0, 2, 2), True),  # kw = 5
    (1, 33, 2, 5, 9, (3, 3, 2), (1, 1, 1), (1, 1, 0), False),  # even kw: the plain kernels
    # grad_x of stride 2 along W with padding 1: compact grad_y rows, pairs of outputs
    (1, 21, 3, 7, 31, (3, 3, 3), (1, 2, 2), (1, 1, 1), False),  # odd W: runs 14 + 14 + 3; a half block
    (1, 54, 3, 8, 13, (3, 3, 3), (2, 2, 2), (1, 1, 1), True),  # stride 2 in T too; X3D-M's C
    (1, 8, 3, 5, 1, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),  # a 1-pixel row
    (1, 16, 3, 6, 11, (3, 3, 3), (1, 2, 2), (1, 1, 0), False),  # padding 0 along W: dilated rows
    # the forward at stride 2 along W reads full channel blocks in place (the partial one copied)
    (2, 48, 3, 5, 59, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),  # whole blocks; runs 14 + 14 + 2, odd W
    (2, 40, 2, 4, 30, (3, 3, 3), (1, 2, 2), (1, 1, 0), False),  # no W padding; 2 blocks + a half block
    (1, 16, 2, 3, 3, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),  # one run with padding on both sides
    # in place with the output frames innermost (a block's source rows fit L1; W = 59 above does not)
    (2, 32, 5, 7, 20, (3, 3, 3), (1, 2, 2), (1, 1, 1), True),  # whole blocks only, T = 5
    (1, 40, 6, 6, 9, (2, 3, 3), (2, 2, 2), (0, 1, 1), False),  # even kt, stride 2 in T, a half block
    # stride 1 along W in place at small frames (a block's source rows within 8 KB of L1)
    (2, 40, 5, 6, 14, (3, 3, 3), (1, 1, 1), (1, 1, 1), True),  # W = 14: 2 blocks + a half block
    (1, 32, 4, 5, 7, (3, 3, 3), (2, 1, 1), (1, 1, 0), False),  # no W padding; stride 2 in T only
    (1, 16, 3, 3, 15, (1, 3, 3), (1, 1, 1), (0, 1, 1), True),  # one run of 14 and one of 1; kt = 1
]


def case_id(c):
    N, C, T, H, W, k, s, p, b = c
    return f"C{C}-{T}x{H}x{W}-k{''.join(map(str, k))}-s{''.join(map(str, s))}" + ("-bias" if b else "")


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", BLOCKED_CASES, ids=case_id)
def test_blocked_kernels_match_float64_reference(case, dtype):
    check_case("cpu", "cpu", case, dtype, CL)


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
def test_ncdhw_short_rows_take_the_blocked_kernels():
    check_case("cpu", "cpu", (1, 48, 4, 7, 7, (3, 3, 3), (1, 1, 1), (1, 1, 1), True), torch.float32,
               torch.contiguous_format)
    # stride 2: the grad_x through the compact grad_y rows, read from an NCDHW tensor
    check_case("cpu", "cpu", (1, 40, 4, 9, 7, (3, 3, 3), (1, 2, 2), (1, 1, 1), True), torch.float32,
               torch.contiguous_format)


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
def test_outputs_over_16_mb_on_huge_pages_are_exact():
    """y and grad_x of 16 MB and more (advised onto 2 MB pages where the THP policy lets that hint not
    stall) are written whole."""
    x = torch.randn(1, 8, 2, 512, 520, requires_grad=True)
    w = torch.randn(8, 1, 3, 3, requires_grad=True)
    assert x.numel() * 4 >= 16 << 20
    y = vidops.depthwise_conv3d(x, w, None, 1, 1, backend="cpu")
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    x64, w64 = x.detach().double().requires_grad_(True), w.detach().double().requires_grad_(True)
    y64 = torch.nn.functional.conv3d(x64, w64.unsqueeze(1), None, 1, 1, 1, 8)
    gx64, gw64 = torch.autograd.grad(y64, (x64, w64), g.double())
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), gx64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw.double(), gw64, rtol=1e-4, atol=1e-3)
