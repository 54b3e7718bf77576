"""`vidops.nn.swap`: put vidops's fused layers into an existing model, or take them out again.

    report = vidops.nn.swap(model, to="vidops")      # every known layer now runs vidops kernels
    print(report)                                     # what was replaced, where, by what
    vidops.nn.swap(model, to="reference")             # the plain-PyTorch formulation, same weights
    vidops.nn.swap(model, to="torch")                 # also give back the nn.Conv3d depthwise layers

Layers it knows:
- vidops's own layers (anything with an ``impl`` attribute of "vidops" or "reference"): the
  attribute is switched, nothing is rebuilt.
- The authors' layers, recognised by class name and by the state_dict layout they carry:
  busy-quiet-net's ``MotionBandPassFilter`` (children ``conv_s``/``conv_t`` holding (C,1,k,k) and
  (C,1,3) weights; stem when ``conv_t`` has stride 3), region-based-non-local-network's
  ``NONLocalBlock3D``/``_NonLocalBlockND`` (children ``theta``, ``penta``, ``W``), TSM's
  ``NONLocalBlock3D``/``_NonLocalBlockND`` (children ``theta``, ``phi``, ``g``, ``W``), the RNL
  ``ChannelGate`` (``W_k``, ``W_v1``, ``bn1``, ``W_v2``) and TSM's ``TemporalShift`` (``net``,
  ``n_segment``, ``fold_div``; one whose net has fewer than fold_div input channels shifts nothing
  in the authors' code and is left as it is). Each becomes its vidops counterpart with the same weights (loaded
  strictly, so a layout that does not match raises instead of loading half), on the same device,
  dtype and training mode, taking the same input layout and giving the same output.

- Any depthwise ``nn.Conv3d`` (groups == in_channels == out_channels, dilation 1, zero padding;
  pytorchvideo's, SlowFast's and mmaction2's X3D, CSN, a user's channel-separated network):
  it becomes ``vidops.nn.DepthwiseConv3d`` sharing its weight and bias Parameters (so an
  optimizer built before the swap still updates them). ``to="torch"`` turns every
  DepthwiseConv3d back into the ``nn.Conv3d(groups=C)`` it stands for (same Parameters) and
  switches the other vidops layers to "reference" (they have no plain-PyTorch module class).

The authors' stand-alone ``LoG`` and ``LO`` convolutions have no fused counterpart on their own
(vidops fuses the pair); they are swapped as part of their ``MotionBandPassFilter``.
Layers that keep tensors from their last forward (the authors' ``attention_maps``, ``s_out``) are
not copied: only parameters and buffers move, so a model that has already run swaps as well.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from .motion_band_pass import MotionBandPass

IMPLS = ("vidops", "reference")
TARGETS = IMPLS + ("torch",)


@dataclass
class Swapped:
    name: str       # qualified name in the model ("" for the root)
    before: str     # class of the layer that was there
    after: str      # class now there
    how: str        # "impl switched" or "replaced"


@dataclass
class SwapReport:
    to: str
    model: nn.Module
    swapped: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.swapped)

    def __iter__(self):
        return iter(self.swapped)

    def __str__(self) -> str:
        if not self.swapped:
            return f"vidops.nn.swap(to={self.to!r}): no known layer found"
        lines = [f"vidops.nn.swap(to={self.to!r}): {len(self.swapped)} layers"]
        for s in self.swapped:
            lines.append(f"  {s.name or '<root>'}: {s.before} -> {s.after} ({s.how})")
        return "\n".join(lines)


def _class_name(m: nn.Module) -> str:
    return type(m).__name__


def _is_vidops(m: nn.Module) -> bool:
    return type(m).__module__.startswith("vidops.")


def _place_like(new: nn.Module, old: nn.Module) -> nn.Module:
    ref = next(iter(old.parameters()), None)
    if ref is None:
        ref = next(iter(old.buffers()), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
    new.train(old.training)
    return new


def _load_strict(new: nn.Module, old: nn.Module) -> None:
    # dtype and device first: loading float64 weights into a float32 module would round them
    _place_like(new, old)
    result = new.load_state_dict(old.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"vidops.nn.swap: the state_dict of {_class_name(old)} does not match "
            f"{type(new).__module__}.{type(new).__name__}: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}")


def _has_children(m: nn.Module, *names: str) -> bool:
    return all(hasattr(m, n) and isinstance(getattr(m, n), nn.Module) for n in names)


# ---- the authors' layers -----------------------------------------------------------------------

def _authors_motion_band_pass(m: nn.Module) -> Optional[nn.Module]:
    if _class_name(m) != "MotionBandPassFilter" or not _has_children(m, "conv_s", "conv_t"):
        return None
    ws, wt = getattr(m.conv_s, "weight", None), getattr(m.conv_t, "weight", None)
    if ws is None or wt is None or ws.dim() != 4 or wt.dim() != 3 or wt.shape[-1] != 3:
        return None
    stride = getattr(m.conv_t, "stride", None)
    if stride is None:
        stride = 3 if getattr(m, "three_steps", False) else 1
    stride = int(stride[0] if isinstance(stride, (tuple, list)) else stride)
    channels, k = ws.shape[0], ws.shape[-1]
    num_segments = getattr(m, "num_segments", None)
    cls = AuthorsStemMotionBandPass if stride == 3 else MotionBandPass
    new = cls(channels, kernel_size=k, temporal_stride=stride, num_segments=num_segments)
    _load_strict(new, m)
    return new


def _authors_region_non_local(m: nn.Module) -> Optional[nn.Module]:
    if _class_name(m) not in ("NONLocalBlock3D", "_NonLocalBlockND") or not _has_children(m, "theta", "penta", "W"):
        return None
    from .region_non_local import RegionNonLocal

    penta_w = m.penta.weight
    activation = getattr(m, "activation", "softmax")
    cosine = bool(getattr(m, "use_norm", False))
    mode = {("softmax", False): "softmax", ("softmax", True): "cosine_softmax",
            ("relu", False): "relu", ("relu", True): "cosine_relu"}.get((activation, cosine))
    if mode is None:
        raise ValueError(f"vidops.nn.swap: {_class_name(m)} with activation={activation!r} has no vidops mode")
    in_channels, inter = m.theta.in_channels, m.theta.out_channels
    new = RegionNonLocal(in_channels, kernel=tuple(penta_w.shape[2:]), mode=mode,
                         ratio=in_channels // inter, sub_sample=bool(getattr(m, "sub_sample", False)))
    _load_strict(new, m)
    return new


def _authors_non_local(m: nn.Module) -> Optional[nn.Module]:
    if _class_name(m) not in ("NONLocalBlock3D", "_NonLocalBlockND") or not _has_children(m, "theta", "phi", "g", "W"):
        return None
    from .region_non_local import NonLocal

    sub_sample = isinstance(m.g, nn.Sequential)
    new = NonLocal(m.theta.in_channels, inter_channels=m.theta.out_channels, sub_sample=sub_sample)
    _load_strict(new, m)
    return new


def _authors_channel_gate(m: nn.Module) -> Optional[nn.Module]:
    if _class_name(m) != "ChannelGate" or _is_vidops(m) or not _has_children(m, "W_k", "W_v1", "bn1", "W_v2"):
        return None
    from .attention import ChannelGate

    channels, hidden = m.W_v1.in_features, m.W_v1.out_features
    new = ChannelGate(channels, reduction_ratio=max(channels // hidden, 1))
    _load_strict(new, m)
    return new


def _authors_temporal_shift(m: nn.Module) -> Optional[nn.Module]:
    if _class_name(m) != "TemporalShift" or _is_vidops(m) or not _has_children(m, "net"):
        return None
    from .temporal_shift import TemporalShift

    fold_div = int(getattr(m, "fold_div", 8))
    channels = getattr(m.net, "in_channels", None)
    if isinstance(channels, int) and channels < fold_div:
        # fold = C // fold_div = 0: the authors' shift moves nothing (vidops's rejects such an
        # input as a mistake); the layer is left as it is, keys and output unchanged.
        return None
    return TemporalShift(m.net, int(m.n_segment), fold_div=fold_div)


def _depthwise_conv3d(m: nn.Module) -> Optional[nn.Module]:
    """A depthwise nn.Conv3d (exactly that class: a subclass may compute something else)."""
    if type(m) is not nn.Conv3d or not (m.groups == m.in_channels == m.out_channels):
        return None
    if tuple(m.dilation) != (1, 1, 1) or m.padding_mode != "zeros":
        return None
    if m.padding == "same" and any(k % 2 == 0 for k in m.kernel_size):
        return None                    # torch pads an even 'same' kernel unevenly: no DepthwiseConv3d
    from .depthwise_conv3d import DepthwiseConv3d

    return DepthwiseConv3d.from_conv3d(m)


AUTHORS_LAYERS: tuple[Callable[[nn.Module], Optional[nn.Module]], ...] = (
    _authors_motion_band_pass, _authors_region_non_local, _authors_non_local,
    _authors_channel_gate, _authors_temporal_shift, _depthwise_conv3d,
)


class AuthorsStemMotionBandPass(MotionBandPass):
    """vidops.nn.MotionBandPass (stride 3) that also takes busy-quiet-net's stem input
    (N, T, 3, C, H, W) (T segments of 3 frames, channels inner) and returns (N*T, C, H, W), as the
    authors' MotionBandPassFilter does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 6:
            return super().forward(x)
        N, S, J, C, H, W = x.shape
        video = x.reshape(N, S * J, C, H, W).transpose(1, 2)   # (N, C, 3S, H, W), frame 3s + j
        out = super().forward(video)                           # (N, C, S, H, W)
        return out.transpose(1, 2).reshape(N * out.shape[2], C, H, W)


# ---- the walk ----------------------------------------------------------------------------------

def _counterpart(m: nn.Module, to: str):
    """(new module or None, how) for one layer."""
    impl = getattr(m, "impl", None)
    if to == "torch":
        if _class_name(m) == "DepthwiseConv3d" and _is_vidops(m):
            return m.to_conv3d(), "replaced"
        if _is_vidops(m) and impl in IMPLS:
            return (None, None) if impl == "reference" else (m, "impl switched")
        return None, None
    if _is_vidops(m) and impl in IMPLS:
        return (None, None) if impl == to else (m, "impl switched")
    if _is_vidops(m):
        return None, None
    for rule in AUTHORS_LAYERS:
        new = rule(m)
        if new is not None:
            new = _place_like(new, m)
            if hasattr(new, "impl"):
                new.impl = to
            return new, "replaced"
    return None, None


def swap(model: nn.Module, to: str = "vidops") -> SwapReport:
    """Replace, in place, every layer of `model` that vidops knows by its `to` counterpart.

    to="vidops": vidops's layers run their fused ops and the authors' layers are replaced by vidops
    layers; to="reference": vidops's layers run their plain-PyTorch formulation (as the authors'
    code computes it) and the authors' layers are replaced by vidops layers in reference mode;
    to="torch": vidops.nn.DepthwiseConv3d layers become nn.Conv3d(groups=C) again and the other
    vidops layers run "reference". Weights, device, dtype and training mode are kept. Returns a `SwapReport` (its `.model` is the
    model, or the new root when the root itself was an authors' layer).
    """
    if to not in TARGETS:
        raise ValueError(f"vidops.nn.swap: to must be one of {TARGETS}, got {to!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"vidops.nn.swap: model must be a torch.nn.Module, got {type(model).__name__}")
    report = SwapReport(to=to, model=model)

    def swap_one(module: nn.Module, qual: str, place) -> nn.Module:
        """The module now at `qual` (itself, with its impl switched, or its replacement)."""
        new, how = _counterpart(module, to)
        if new is None:
            return module
        before = _class_name(module)
        if how == "impl switched":
            module.impl = "reference" if to == "torch" else to
        else:
            place(new)
        report.swapped.append(Swapped(qual, before, _class_name(new), how))
        return new

    def visit(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            qual = f"{prefix}.{name}" if prefix else name
            visit(swap_one(child, qual, lambda new: setattr(parent, name, new)), qual)

    report.model = swap_one(model, "", lambda new: None)
    visit(report.model, "")
    return report
