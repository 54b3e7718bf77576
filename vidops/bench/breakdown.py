"""Where a model's step time goes: the thesis's layers against the rest of the network.

`layer_breakdown(model, step)` runs `step()` (a forward, or a forward + backward + optimizer step)
once with timing hooks on the layers `layer_kind` recognises, and returns milliseconds per kind:
each layer's forward (forward pre/post hooks) and backward, its own time only (time spent in a
recognised sub-layer, or in a wrapped network such as the conv inside a temporal shift, is not
counted twice), and "rest" for everything else in the step. On CUDA the hooks
synchronise, so a breakdown run is slower than a timed one; its shares, not its total, are the point.

A layer whose backward is one autograd node (a convolution: `SINGLE_NODE_KINDS`) is timed by hooks
on that node, the one that made its output. The others are timed by full backward hooks, which
wrap the layer's inputs and outputs in identity autograd functions; around a convolution those
change the layout the gradient arrives in (a channels_last_3d network's depthwise Conv3d then got
its grad_y in NCDHW and ran PyTorch's slow NCDHW backward: 816 ms a step against 570 ms for the
whole timed step), so they are not used there.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable, Optional

import torch
from torch import nn

SINGLE_NODE_KINDS = ("depthwise conv",)

KINDS = ("band-pass", "shift", "attention", "region conv", "projection", "squeeze", "depthwise conv")

_BY_CLASS = {
    "MotionBandPass": "band-pass", "AuthorsStemMotionBandPass": "band-pass", "BusyQuietSplit": "band-pass",
    "BandPassLateral": "band-pass", "TemporalShift": "shift",
    "RegionNonLocal": "attention", "DiagonalwiseRegionNonLocal": "attention", "NonLocal": "attention",
    "ChannelGate": "attention",
    "SpatioTemporalSE": "attention", "ConvPyramidAttention": "attention", "AttentionChain": "attention",
    "RegionConv": "region conv", "DiagonalwisePenta": "region conv",
    "PixelWiseTemporalProjection": "projection", "TemporalSqueezePooling": "squeeze",
    "DepthwiseConv3d": "depthwise conv",     # vidops.nn's, in either impl (X3D's channel-wise convs)
}


def _depthwise_conv3d_kind(m: nn.Module) -> Optional[str]:
    """A plain depthwise nn.Conv3d (groups == in == out channels: an X3D as pytorchvideo builds it)."""
    if isinstance(m, nn.Conv3d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels:
        return "depthwise conv"
    return None


def layer_kind(m: nn.Module) -> Optional[str]:
    """The thesis layer a module is, by class name (vidops's and the reference's), else None."""
    return _BY_CLASS.get(type(m).__name__) or _depthwise_conv3d_kind(m)


def _sync(device) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def layer_breakdown(model: nn.Module, step: Callable[[], object], device=None,
                    kind: Callable[[nn.Module], Optional[str]] = layer_kind) -> dict:
    """{kind: ms, ..., "rest": ms, "total": ms} of one call of `step`."""
    spent = defaultdict(float)
    stacks = {"fwd": [], "bwd": []}     # (kind, start, time of recognised children)
    handles = []

    def opener(phase):
        def hook(module, *args):
            _sync(device)
            stacks[phase].append([module._vidops_kind, time.perf_counter(), 0.0])
        return hook

    def closer(phase):
        def hook(module, *args):
            _sync(device)
            if not stacks[phase]:
                return None
            k, start, children = stacks[phase].pop()
            inclusive = time.perf_counter() - start
            if k != "wrapped":
                spent[k] += inclusive - children
            if stacks[phase]:
                stacks[phase][-1][2] += inclusive
            return None
        return hook

    def node_timer(module, args, output):
        """Forward post-hook of a single-node layer: time the node that made its output."""
        node = getattr(output, "grad_fn", None) if isinstance(output, torch.Tensor) else None
        if node is None:
            return None
        start, stop = opener("bwd"), closer("bwd")
        handles.extend([node.register_prehook(lambda grad_outputs: start(module)),
                        node.register_hook(lambda grad_inputs, grad_outputs: stop(module))])
        return None

    hooked = []
    for m in model.modules():
        k = kind(m)
        if k is None:
            continue
        hooked.append((m, k))
        inner = getattr(m, "net", None)           # the shift wraps a conv that is not the shift's time
        if k == "shift" and isinstance(inner, nn.Module):
            hooked.append((inner, "wrapped"))
    for m, k in hooked:
        m._vidops_kind = k
        handles += [m.register_forward_pre_hook(opener("fwd")), m.register_forward_hook(closer("fwd"))]
        if k in SINGLE_NODE_KINDS:
            handles.append(m.register_forward_hook(node_timer))
        else:
            handles += [m.register_full_backward_pre_hook(opener("bwd")),
                        m.register_full_backward_hook(closer("bwd"))]
    try:
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
        for m, _ in hooked:
            if hasattr(m, "_vidops_kind"):
                del m._vidops_kind
    out = {k: 1e3 * v for k, v in spent.items()}
    out["rest"] = max(1e3 * total - sum(out.values()), 0.0)
    out["total"] = 1e3 * total
    return out
