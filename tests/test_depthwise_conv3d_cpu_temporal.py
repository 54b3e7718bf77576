"""The CPU's temporal-only kernel of depthwise_conv3d (kt x 1 x 1 kernels at unit stride and no
padding along H and W: X3D's 5x1x1 stem and its grad_x), which reads the source frames in place in
both layouts: rows that cross several row chunks with a ragged last one, channel counts whose weight
pattern is one vector, several, or (C past the pattern cap) the channel count itself, temporal
stride and padding (grad_x then reads grad_y dilated), T = 1, C = 1, batch 0/1/2, against the
float64 reference, forward and every gradient, f32 and f64; and the cases that must not take it."""
import pytest
import torch

import vidops

from test_depthwise_conv3d_strided import check_case

HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")
CL = torch.channels_last_3d

# (N, C, T, H, W, kernel, stride, padding, bias)
TEMPORAL_CASES = [
    (1, 24, 7, 13, 17, (5, 1, 1), (1, 1, 1), (2, 0, 0), False),  # the stem's C: 5304-element frames
    (2, 24, 5, 4, 6, (5, 1, 1), (1, 1, 1), (2, 0, 0), True),  # one chunk, a pixel-wise tail
    (1, 5, 6, 29, 31, (3, 1, 1), (2, 1, 1), (1, 0, 0), True),  # stride 2 in T; odd C; 4495 pixels
    (1, 3, 9, 70, 70, (2, 1, 1), (3, 1, 1), (0, 0, 0), False),  # even kt; NCDHW planes of 2 chunks
    (1, 4099, 3, 1, 2, (3, 1, 1), (1, 1, 1), (1, 0, 0), True),  # C past the pattern cap
    (2, 1, 4, 3, 5, (3, 1, 1), (1, 1, 1), (2, 0, 0), True),  # C = 1; padding past (k - 1) / 2
    (1, 16, 1, 3, 3, (1, 1, 1), (1, 1, 1), (0, 0, 0), True),  # T = 1, a 1x1x1 kernel
    (1, 7, 8, 2, 3, (5, 1, 1), (2, 1, 1), (0, 0, 0), False),  # T not reached by the last tap
    (0, 6, 5, 3, 3, (3, 1, 1), (1, 1, 1), (1, 0, 0), True),  # empty batch (NCDHW only: an empty
    # tensor is contiguous in both layouts, and the op's outputs then are contiguous)
]


def case_id(c):
    N, C, T, H, W, k, s, p, b = c
    return f"N{N}C{C}-{T}x{H}x{W}-k{k[0]}-s{s[0]}-p{p[0]}" + ("-bias" if b else "")


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["ncdhw", "cl3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", TEMPORAL_CASES, ids=case_id)
def test_temporal_kernel_matches_float64_reference(case, dtype, layout):
    if case[0] == 0 and layout == CL:
        pytest.skip("an empty batch has no channels_last_3d layout to keep")
    check_case("cpu", "cpu", case, dtype, layout)


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["ncdhw", "cl3d"])
def test_non_dense_input_and_neighbours_of_the_temporal_case(layout):
    # a strided view of a tensor in the layout (the kernel reads the dense copy the op makes), and
    # kernels one step off the temporal case (H padding, a W tap, a stride along H): general kernels
    base = torch.randn(1, 24, 10, 9, 16).contiguous(memory_format=layout)
    x = base[:, :, ::2, :, ::2]
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=CL)
    w = torch.randn(24, 3, 1, 1)
    y = vidops.depthwise_conv3d(x, w, None, 1, (1, 0, 0))
    want = torch.nn.functional.conv3d(x.double(), w.double().unsqueeze(1), None, 1, (1, 0, 0), 1, 24)
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5)
    for case in [(1, 8, 4, 5, 6, (3, 1, 1), (1, 1, 1), (1, 1, 0), True),
                 (1, 8, 4, 5, 6, (3, 1, 2), (1, 1, 1), (1, 0, 0), False),
                 (1, 8, 4, 5, 6, (3, 1, 1), (1, 2, 1), (1, 0, 0), True)]:
        check_case("cpu", "cpu", case, torch.float32, layout)


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["ncdhw", "cl3d"])
def test_temporal_gradients_are_bitwise_reproducible_for_any_thread_count(layout):
    # rows of several chunks: the weight gradient's partials come from several tasks
    x = torch.randn(2, 24, 6, 17, 19).to(memory_format=layout)
    w = torch.randn(24, 5, 1, 1)
    b = torch.randn(24)
    y = vidops.depthwise_conv3d(x, w, b, 1, (2, 0, 0))
    g = torch.randn(y.shape).to(memory_format=layout)
    bop = torch.ops.vidops._depthwise_conv3d_bwd
    threads = torch.get_num_threads()
    got = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            got.append(bop(g, x, w, b, [1, 1, 1], [2, 0, 0], True, True, True))
    finally:
        torch.set_num_threads(threads)
    for r in got[1:]:
        assert all(torch.equal(a, c) for a, c in zip(r, got[0]))
