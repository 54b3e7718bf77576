"""vidops.bench.breakdown: the per-layer timing of a model step must not change the step it times."""
import time

import torch
import torch.nn as nn

from vidops.bench.breakdown import layer_breakdown
from vidops.nn import DepthwiseConv3d

CL = torch.channels_last_3d


def _grad_y_layouts(conv):
    """Record, for every backward of `conv`, whether the gradient reaching its node is channels_last_3d."""
    seen = []

    def on_forward(module, args, out):
        out.grad_fn.register_prehook(lambda g: seen.append(g[0].is_contiguous(memory_format=CL)))

    conv.register_forward_hook(on_forward)
    return seen


def test_depthwise_layers_keep_their_gradient_layout_and_get_their_time():
    for conv in (nn.Conv3d(8, 8, 3, 1, 1, groups=8), DepthwiseConv3d(8, 3, 1, 1)):
        m = nn.Sequential(conv, nn.BatchNorm3d(8), nn.ReLU()).to(memory_format=CL)
        x = torch.randn(1, 8, 4, 6, 6).contiguous(memory_format=CL).requires_grad_(True)
        seen = _grad_y_layouts(conv)

        def step():
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()

        step()
        ms = layer_breakdown(m, step)
        assert seen == [True, True], type(conv).__name__   # full backward hooks would give NCDHW here
        assert ms["depthwise conv"] > 0 and ms["total"] >= ms["depthwise conv"]


def test_backward_of_a_depthwise_layer_is_counted_once_per_call(monkeypatch):
    conv = nn.Conv3d(4, 4, 3, 1, 1, groups=4)
    calls = []
    m = nn.Sequential(conv, nn.ReLU())
    x = torch.randn(1, 4, 3, 5, 5)

    def step():
        y = m(x)
        y.grad_fn.register_prehook(lambda g: calls.append("relu"))
        y.sum().backward()

    ticks = iter(range(10_000))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    ms = layer_breakdown(m, step)
    # forward: one open/close pair; backward: one open/close pair on the conv's node (a clock
    # that ticks once a reading: 1 tick each)
    assert ms["depthwise conv"] == 2e3 and calls == ["relu"]
