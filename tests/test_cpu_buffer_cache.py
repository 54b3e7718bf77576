"""The CPU kernels' outputs of 32 MB and more come from a cache of their freed outputs
(csrc/common/cpu_buffer_cache.h): a freed output's buffer is reused by the next output of about
its size, and the reused buffer's old contents never show through."""
import resource

import pytest
import torch
import torch.nn.functional as F

import vidops

HAS_CPU = vidops._ext.has_kernel("_depthwise_conv3d_fwd", "CPU")
FWD = "_depthwise_conv3d_fwd"
BWD = "_depthwise_conv3d_bwd"


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _reference(x, w, g):
    x64 = x.double().requires_grad_(True)
    y64 = F.conv3d(x64, w.double().unsqueeze(1), None, 1, (0, 1, 1), 1, x.shape[1])
    (gx64,) = torch.autograd.grad(y64, x64, g.double())
    return y64.detach(), gx64


@pytest.mark.skipif(not HAS_CPU, reason="C++ CPU kernel not built")
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d], ids=["ncdhw", "cl3d"])
def test_freed_outputs_over_32_mb_are_reused_and_overwritten(layout):
    fwd, bwd = getattr(torch.ops.vidops, FWD), getattr(torch.ops.vidops, BWD)
    shape = (1, 64, 4, 128, 260)  # 34 MB in float32
    w = torch.randn(64, 1, 3, 3)
    x1 = torch.randn(shape).to(memory_format=layout)
    y1 = fwd(x1, w, None, [1, 1, 1], [0, 1, 1])
    assert y1.numel() * 4 >= 32 << 20
    first = y1.data_ptr()
    del y1
    x2 = torch.randn(shape).to(memory_format=layout)
    before = _page_faults()
    y2 = fwd(x2, w, None, [1, 1, 1], [0, 1, 1])
    # the freed output's buffer, its pages already mapped (a fresh one: 8.2k faults of 4 KB pages)
    assert y2.data_ptr() == first and _page_faults() - before < 2000
    assert y2.is_contiguous(memory_format=layout)
    g = torch.randn(shape).to(memory_format=layout)
    gx1 = bwd(g, x2, w, None, [1, 1, 1], [0, 1, 1], True, False, False)[0]
    reused = gx1.data_ptr()
    del gx1
    before = _page_faults()
    gx = bwd(g, x2, w, None, [1, 1, 1], [0, 1, 1], True, False, False)[0]
    assert gx.data_ptr() == reused and _page_faults() - before < 2000
    assert gx.is_contiguous(memory_format=layout)
    y64, gx64 = _reference(x2, w, g)
    torch.testing.assert_close(y2.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), gx64, rtol=1e-5, atol=1e-5)
