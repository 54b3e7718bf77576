"""The CPU's NCDHW kernels with the kernel's H and W extents and strides fixed at compile time
(3x3 at stride 1 and 2, 1x1, 7x7): output rows in blocks of 8, 4, 2 and 1, rows of one, two and
four vectors, paddings that put source rows past both frame edges, against the float64
reference, forward and both gradients (the grad_x of a stride-1 forward runs the same kernels).
test_depthwise_conv3d_strided's per-instruction-set test runs these cases in every ISA this CPU
has."""
import pytest
import torch

import vidops

from test_depthwise_conv3d_strided import check_case

HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")

# (N, C, T, H, W, kernel, stride, padding, bias); C < 8 keeps short rows on the NCDHW kernels
FIXED_CASES = [
    (1, 2, 3, 13, 17, (3, 3, 3), (1, 1, 1), (1, 1, 1), True),   # row blocks 8 + 4 + 1; 2 vectors a row
    (1, 2, 3, 11, 40, (3, 3, 3), (1, 2, 2), (1, 1, 1), False),  # stride 2: rows 4 + 2
    (1, 3, 4, 9, 50, (3, 3, 3), (1, 1, 1), (0, 2, 2), True),    # padding 2: rows past both edges; 4 vectors
    (1, 2, 4, 10, 12, (5, 1, 1), (1, 1, 1), (2, 0, 0), True),   # 1x1 in H and W (X3D's stem)
    (1, 2, 3, 12, 21, (1, 7, 7), (1, 1, 1), (0, 3, 3), False),  # 7x7 (RNL's region conv)
    (2, 2, 3, 9, 19, (3, 3, 3), (1, 2, 2), (1, 0, 2), True),    # stride 2, unequal paddings
]


def case_id(c):
    N, C, T, H, W, k, s, p, b = c
    return (f"{T}x{H}x{W}-k{''.join(map(str, k))}-s{''.join(map(str, s))}-p{''.join(map(str, p))}"
            + ("-bias" if b else ""))


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", FIXED_CASES, ids=case_id)
def test_fixed_ncdhw_kernels_match_float64_reference(case, dtype):
    check_case("cpu", "cpu", case, dtype, torch.contiguous_format)
