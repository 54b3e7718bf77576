"""X3D (Feichtenhofer, CVPR 2020) from vidops layers, with pytorchvideo's module layout and keys.

    stem     conv.conv_t   1x3x3 conv, stride (1, 2, 2), 3 -> 24 (pytorchvideo's name; it is the
                           spatial conv), conv.conv_xy depthwise 5x1x1 (DepthwiseConv3d), BN, ReLU
    stage s  block j:  y = relu(branch2(x) + shortcut(x)),  s = 1..4, widths 24/48/96/192
             branch2 = conv_a 1x1x1 -> BN -> ReLU -> conv_b depthwise 3x3x3 (DepthwiseConv3d,
                       spatial stride 2 in block 0) -> BN -> SE (even j) -> SiLU -> conv_c 1x1x1 -> BN
             shortcut = branch1_conv 1x1x1 (stride 2) [-> branch1_norm] in block 0, else identity
    head     pre_conv 1x1x1 -> BN -> ReLU -> average pool -> post_conv 1x1x1 -> ReLU -> dropout
             -> proj (Linear) -> mean over the pooled positions: logits, no softmax

XS, S and M share the network (depths ceil(2.2 [1, 2, 5, 3]) = 3/5/11/7, inner widths 2.25 x
the stage width, SE reduction 1/16 rounded to a multiple of 8); they differ in the input they are
trained on (XS 4 x 160^2, S 13 x 160^2, M 16 x 224^2). L has depths 5/10/25/15 (16 x 312^2).

Head pooling rule: the pool is built for the clip the model is trained on, kernel
(frames, ceil(crop/32), ceil(crop/32)) with stride 1 as pytorchvideo builds it; at run time each
axis of the kernel is the smaller of that and the feature map. At the training size this is the
model zoo's global average; at a larger test crop it slides as in pytorchvideo and SlowFast (the
logits of the positions are averaged); at a smaller input it is the global average of what is there.

Layouts: `layout="pytorchvideo"` (default) has no BatchNorm on the stage-1 block-0 shortcut
(24 -> 24 channels), as pytorchvideo builds it; `layout="slowfast"` has it (`branch1_norm`),
as SlowFast and mmaction2 do. The model's own keys are pytorchvideo's names in both layouts;
`vidops.models.load_checkpoint` renames SlowFast's and mmaction2's keys, and refuses weights of
the other layout (the extra BatchNorm cannot be dropped or invented without changing the function).

`impl="reference"` runs every depthwise conv as `F.conv3d(groups=C)` (nn.Conv3d, as pytorchvideo
does) and every layer as written; `impl="vidops"` runs vidops.depthwise_conv3d, and in eval mode
folds each residual block's and the stem's BatchNorms (their running statistics) into the conv
before them (the depthwise op's bias, F.conv3d's bias for the 1x1x1 convs), so an eval-mode BN
costs no pass over the activations; train mode runs the BatchNorms as written. Swish is nn.SiLU
(the same function as pytorchvideo's Swish, and it exports).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..nn.depthwise_conv3d import DepthwiseConv3d
from ._common import check_impl, set_impl
from .x3d_keys import convert_x3d_state_dict

LAYOUTS = ("pytorchvideo", "slowfast")
STAGE_WIDTHS = (24, 48, 96, 192)
BASE_DEPTHS = (1, 2, 5, 3)
STEM_WIDTH = 24
BOTTLENECK_FACTOR = 2.25
SE_RATIO = 0.0625
HEAD_WIDTH = 2048

# (frames, crop, depth factor) of the four published models
CONFIGS = {"x3d_xs": (4, 160, 2.2), "x3d_s": (13, 160, 2.2), "x3d_m": (16, 224, 2.2), "x3d_l": (16, 312, 5.0)}


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """width * multiplier rounded to a multiple of divisor (at least min_width, never more than
    10% below the exact value): X3D's rule for the SE widths."""
    width *= multiplier
    new = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if new < 0.9 * width:
        new += divisor
    return int(new)


def follow_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y in channels_last_3d when x is (a no-op when it already is): PyTorch's CPU convs return
    NCDHW for some channels_last_3d inputs (3 input channels, batch 1 with small frames), and the
    depthwise convs should see the layout the caller chose."""
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return y.contiguous(memory_format=torch.channels_last_3d)
    return y


def folds(bn: nn.Module, dw: nn.Module) -> bool:
    """Whether the BatchNorms of the block whose depthwise conv is `dw` fold into their convs:
    eval mode with running statistics, and `dw` a DepthwiseConv3d of impl "vidops"."""
    return (isinstance(dw, DepthwiseConv3d) and dw.impl == "vidops" and not bn.training
            and bn.running_mean is not None and bn.running_var is not None)


def conv_bn(conv: nn.Module, bn: nn.Module, x: torch.Tensor, fold: bool) -> torch.Tensor:
    """bn(conv(x)); with fold, one conv with the BN folded in (eval mode):
    w' = w * gamma / sqrt(var + eps) per output channel, b' = beta - mean * gamma / sqrt(var + eps)
    (+ the conv's own bias, scaled). A DepthwiseConv3d is called as a module (functional_call with
    w', b'), so hooks on it (the bench's breakdown) still see it."""
    if not fold:
        return bn(conv(x))
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    w = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    if isinstance(conv, DepthwiseConv3d):
        return functional_call(conv, {"weight": w, "bias": shift}, (x,))
    return F.conv3d(x, w, shift, conv.stride, conv.padding, conv.dilation, conv.groups)


def conv1x1(cin: int, cout: int, stride=1, bias: bool = False) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 1, stride=stride, bias=bias)


class Conv2plus1d(nn.Module):
    """The stem conv: `conv_t` the 1x3x3 spatial conv, `conv_xy` the depthwise 5x1x1 temporal
    conv (pytorchvideo's names, swapped with respect to what each conv does)."""

    def __init__(self, cin: int, cout: int, impl: str = "vidops"):
        super().__init__()
        self.conv_t = nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_xy = DepthwiseConv3d(cout, (5, 1, 1), stride=1, padding=(2, 0, 0), bias=False, impl=impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(follow_layout(self.conv_t(x), x))


class X3DStem(nn.Module):
    def __init__(self, cout: int = STEM_WIDTH, impl: str = "vidops"):
        super().__init__()
        self.conv = Conv2plus1d(3, cout, impl)
        self.norm = nn.BatchNorm3d(cout)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        y = conv_bn(conv.conv_xy, self.norm, follow_layout(conv.conv_t(x), x), folds(self.norm, conv.conv_xy))
        return self.activation(y)


class SqueezeExcitation(nn.Module):
    """x * sigmoid(W2 relu(W1 mean_{t,h,w}(x) + b1) + b2), W1, W2 1x1x1 convs with bias (keys
    `block.0`, `block.2`)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(channels, reduced, 1, bias=True), nn.ReLU(inplace=True),
                                   nn.Conv3d(reduced, channels, 1, bias=True), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean((2, 3, 4), keepdim=True))


class X3DBottleneck(nn.Module):
    """branch2 of an X3D block (keys conv_a, norm_a, conv_b, norm_b.0, norm_b.1.block.*, conv_c, norm_c)."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, se: bool, impl: str = "vidops"):
        super().__init__()
        self.conv_a = conv1x1(cin, inner)
        self.norm_a = nn.BatchNorm3d(inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = DepthwiseConv3d(inner, 3, stride=(1, stride, stride), padding=1, bias=False, impl=impl)
        se_mod = SqueezeExcitation(inner, round_width(inner, SE_RATIO)) if se else nn.Identity()
        self.norm_b = nn.Sequential(nn.BatchNorm3d(inner), se_mod)
        self.act_b = nn.SiLU()
        self.conv_c = conv1x1(inner, cout)
        self.norm_c = nn.BatchNorm3d(cout)
        self.norm_c.block_final_bn = True   # zero gamma at init: each block starts as its shortcut

    def folds(self) -> bool:
        return folds(self.norm_b[0], self.conv_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fold = self.folds()
        y = follow_layout(self.act_a(conv_bn(self.conv_a, self.norm_a, x, fold)), x)
        y = self.act_b(self.norm_b[1](conv_bn(self.conv_b, self.norm_b[0], y, fold)))
        return follow_layout(conv_bn(self.conv_c, self.norm_c, y, fold), x)


class X3DResBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int, se: bool, shortcut_norm: bool,
                 impl: str = "vidops"):
        super().__init__()
        if stride != 1 or cin != cout:
            self.branch1_conv = conv1x1(cin, cout, (1, stride, stride))
            self.branch1_norm = nn.BatchNorm3d(cout) if shortcut_norm else None
        else:
            self.branch1_conv = self.branch1_norm = None
        self.branch2 = X3DBottleneck(cin, inner, cout, stride, se, impl)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            if self.branch1_norm is not None:
                shortcut = conv_bn(self.branch1_conv, self.branch1_norm, x, self.branch2.folds())
            else:
                shortcut = self.branch1_conv(x)
            shortcut = follow_layout(shortcut, x)
        return self.activation(self.branch2(x) + shortcut)


class X3DStage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, layout: str, impl: str = "vidops"):
        super().__init__()
        inner = int(BOTTLENECK_FACTOR * cout)
        blocks = []
        for j in range(depth):
            # pytorchvideo puts a norm on the shortcut only where the width changes; SlowFast
            # and mmaction2 on every strided shortcut (the stage-1 block 0 is 24 -> 24, stride 2)
            norm = (cin != cout) or layout == "slowfast"
            blocks.append(X3DResBlock(cin if j == 0 else cout, inner, cout, 2 if j == 0 else 1, se=j % 2 == 0,
                                      shortcut_norm=norm, impl=impl))
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


def head_pool(x: torch.Tensor, pool_size: Optional[Sequence[int]]) -> torch.Tensor:
    """Average pool with stride 1, kernel min(pool_size, feature size) per axis (the rule in the
    module docstring); pool_size None: the global average."""
    if pool_size is None:
        return x.mean((2, 3, 4), keepdim=True)
    kernel = tuple(min(int(k), int(s)) for k, s in zip(pool_size, x.shape[2:]))
    if kernel == tuple(x.shape[2:]):
        return x.mean((2, 3, 4), keepdim=True)
    return F.avg_pool3d(x, kernel, stride=1)


class ProjectedPool(nn.Module):
    """pre_conv 1x1x1 -> BN -> ReLU -> head_pool -> post_conv 1x1x1 -> ReLU."""

    def __init__(self, cin: int, inner: int, cout: int, pool_size: Optional[Sequence[int]]):
        super().__init__()
        self.pre_conv = conv1x1(cin, inner)
        self.pre_norm = nn.BatchNorm3d(inner)
        self.pre_act = nn.ReLU(inplace=True)
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.post_conv = conv1x1(inner, cout)
        self.post_act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = head_pool(self.pre_act(self.pre_norm(self.pre_conv(x))), self.pool_size)
        return self.post_act(self.post_conv(x))


class X3DHead(nn.Module):
    """pool (ProjectedPool), dropout, proj (Linear); the logits averaged over the pooled positions
    (taken before proj: the two commute)."""

    def __init__(self, cin: int, inner: int, width: int, num_classes: int, pool_size, dropout: float):
        super().__init__()
        self.pool = ProjectedPool(cin, inner, width, pool_size)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(x))
        return self.proj(x.mean((2, 3, 4)))


def init_x3d_weights(module: nn.Module) -> None:
    """pytorchvideo's X3D initialisation: convs kaiming-normal (fan_out, ReLU gain), conv biases 0;
    BatchNorm gamma 1 (0 for the last BN of each residual branch), beta 0; Linear N(0, 0.01^2), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d, DepthwiseConv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(m.weight, 0.0 if getattr(m, "block_final_bn", False) else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _positive_int(name: str, model: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"vidops.models.{model}: {name} must be a positive int, got {value!r}")
    return value


class X3D(nn.Module):
    """X3D on a clip (N, 3, T, H, W) -> logits (N, num_classes). `blocks` = [stem, 4 stages, head]
    as in pytorchvideo. `frames` and `crop` set the head's pool (see the module docstring), not
    the input size: any T >= 1 and H, W >= 1 run."""

    def __init__(self, num_classes: int = 400, depth_factor: float = 2.2, frames: int = 16, crop: int = 224,
                 dropout: float = 0.5, layout: str = "pytorchvideo", impl: str = "vidops"):
        super().__init__()
        name = type(self).__name__
        _positive_int("num_classes", name, num_classes)
        _positive_int("frames", name, frames)
        _positive_int("crop", name, crop)
        check_impl(impl, name)
        if layout not in LAYOUTS:
            raise ValueError(f"vidops.models.{name}: layout must be one of {LAYOUTS}, got {layout!r}")
        self.num_classes, self.layout = num_classes, layout
        depths = [math.ceil(depth_factor * d) for d in BASE_DEPTHS]
        blocks = [X3DStem(STEM_WIDTH, impl)]
        cin = STEM_WIDTH
        for width, depth in zip(STAGE_WIDTHS, depths):
            blocks.append(X3DStage(cin, width, depth, layout, impl))
            cin = width
        s = math.ceil(crop / 32)
        blocks.append(X3DHead(cin, int(BOTTLENECK_FACTOR * cin), HEAD_WIDTH, num_classes, (frames, s, s), dropout))
        self.blocks = nn.ModuleList(blocks)
        init_x3d_weights(self)
        set_impl(self, impl)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stage-4 feature map (N, 192, T, H/32, W/32) of a clip."""
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != 3:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"vidops.models.{type(self).__name__}: input must be a clip (N, 3, T, H, W), got {got}")
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[-1](self.features(x))

    def _vidops_checkpoint_keys(self, state_dict):
        """load_checkpoint's hook: SlowFast / mmaction2 names -> this model's, and what cannot map."""
        return convert_x3d_state_dict(state_dict, self.layout, set(self.state_dict()))


def _x3d(name: str, num_classes: int, impl: str, layout: str, dropout: float, frames: Optional[int],
         crop: Optional[int]) -> X3D:
    f, c, depth = CONFIGS[name]
    return X3D(num_classes, depth, frames or f, crop or c, dropout, layout, impl)


def x3d_xs(num_classes: int = 400, impl: str = "vidops", layout: str = "pytorchvideo", dropout: float = 0.5,
           frames: Optional[int] = None, crop: Optional[int] = None) -> X3D:
    """X3D-XS (trained on 4 x 160^2): 3,794,274 parameters, 563 keys at 400 classes (3,794,322 /
    568 with layout="slowfast"); 0.60 G conv multiply-adds at 4 x 160^2."""
    return _x3d("x3d_xs", num_classes, impl, layout, dropout, frames, crop)


def x3d_s(num_classes: int = 400, impl: str = "vidops", layout: str = "pytorchvideo", dropout: float = 0.5,
          frames: Optional[int] = None, crop: Optional[int] = None) -> X3D:
    """X3D-S (trained on 13 x 160^2): the XS network; 1.96 G conv multiply-adds at 13 x 160^2."""
    return _x3d("x3d_s", num_classes, impl, layout, dropout, frames, crop)


def x3d_m(num_classes: int = 400, impl: str = "vidops", layout: str = "pytorchvideo", dropout: float = 0.5,
          frames: Optional[int] = None, crop: Optional[int] = None) -> X3D:
    """X3D-M (trained on 16 x 224^2): the XS network; 4.73 G conv multiply-adds at 16 x 224^2."""
    return _x3d("x3d_m", num_classes, impl, layout, dropout, frames, crop)


def x3d_l(num_classes: int = 400, impl: str = "vidops", layout: str = "pytorchvideo", dropout: float = 0.5,
          frames: Optional[int] = None, crop: Optional[int] = None) -> X3D:
    """X3D-L (trained on 16 x 312^2, depths 5/10/25/15): 6,153,384 parameters, 1,141 keys at 400
    classes; 18.37 G conv multiply-adds at 16 x 312^2."""
    return _x3d("x3d_l", num_classes, impl, layout, dropout, frames, crop)
