"""X3D state_dict names in the three codebases that publish X3D weights, and the renaming between them.

    pytorchvideo (vidops's own names)          SlowFast                         mmaction2
    blocks.0.conv.conv_t (1x3x3 spatial)       s1.pathway0_stem.conv_xy         backbone.conv1_s.conv
    blocks.0.conv.conv_xy (5x1x1 depthwise)    s1.pathway0_stem.conv            backbone.conv1_t.conv
    blocks.0.norm                              s1.pathway0_stem.bn              backbone.conv1_t.bn
    blocks.S.res_blocks.J.branch1_conv         sS+1.pathway0_resJ.branch1       backbone.layerS.J.downsample.conv
    blocks.S.res_blocks.J.branch1_norm         sS+1.pathway0_resJ.branch1_bn    backbone.layerS.J.downsample.bn
    ....branch2.conv_a / norm_a                ....branch2.a / a_bn             ....conv1.conv / conv1.bn
    ....branch2.conv_b / norm_b.0              ....branch2.b / b_bn             ....conv2.conv / conv2.bn
    ....branch2.norm_b.1.block.0 / block.2     ....branch2.se.fc1 / se.fc2      ....se_module.fc1 / fc2
    ....branch2.conv_c / norm_c                ....branch2.c / c_bn             ....conv3.conv / conv3.bn
    blocks.5.pool.pre_conv / pre_norm          head.conv_5 / conv_5_bn          backbone.conv5.conv / conv5.bn
    blocks.5.pool.post_conv (2048, 432, 1, 1, 1)  head.lin_5 (same shape)       cls_head.fc1 (Linear, (2048, 432))
    blocks.5.proj                              head.projection                  cls_head.fc2

(S = 1..4 stages, J = block; BatchNorm buffers follow their module.) pytorchvideo has no
`blocks.1.res_blocks.0.branch1_norm` (the 24 -> 24 stride-2 shortcut of stage 1); SlowFast and
mmaction2 have it, which is what `layout="slowfast"` builds.
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

import torch

# (pytorchvideo template, SlowFast template, mmaction2 template); {s} stage 1..4, {j} block, {p} the
# parameter or buffer name (weight, bias, running_mean, running_var, num_batches_tracked)
_BLOCK_RULES = (
    ("branch1_conv", "branch1", "downsample.conv"),
    ("branch1_norm", "branch1_bn", "downsample.bn"),
    ("branch2.conv_a", "branch2.a", "conv1.conv"),
    ("branch2.norm_a", "branch2.a_bn", "conv1.bn"),
    ("branch2.conv_b", "branch2.b", "conv2.conv"),
    ("branch2.norm_b.0", "branch2.b_bn", "conv2.bn"),
    ("branch2.norm_b.1.block.0", "branch2.se.fc1", "se_module.fc1"),
    ("branch2.norm_b.1.block.2", "branch2.se.fc2", "se_module.fc2"),
    ("branch2.conv_c", "branch2.c", "conv3.conv"),
    ("branch2.norm_c", "branch2.c_bn", "conv3.bn"),
)
_FIXED_RULES = (
    ("blocks.0.conv.conv_t", "s1.pathway0_stem.conv_xy", "backbone.conv1_s.conv"),
    ("blocks.0.conv.conv_xy", "s1.pathway0_stem.conv", "backbone.conv1_t.conv"),
    ("blocks.0.norm", "s1.pathway0_stem.bn", "backbone.conv1_t.bn"),
    ("blocks.5.pool.pre_conv", "head.conv_5", "backbone.conv5.conv"),
    ("blocks.5.pool.pre_norm", "head.conv_5_bn", "backbone.conv5.bn"),
    ("blocks.5.pool.post_conv", "head.lin_5", "cls_head.fc1"),
    ("blocks.5.proj", "head.projection", "cls_head.fc2"),
)
CODEBASES = ("pytorchvideo", "slowfast", "mmaction2")
STAGE1_SHORTCUT_NORM = "blocks.1.res_blocks.0.branch1_norm"
POST_CONV = "blocks.5.pool.post_conv.weight"

_SLOWFAST_BLOCK = re.compile(r"^s([2-5])\.pathway0_res(\d+)\.(.+)\.([a-z_]+)$")
_MMACTION_BLOCK = re.compile(r"^backbone\.layer([1-4])\.(\d+)\.(.+)\.([a-z_]+)$")
_MODULE_PARAM = re.compile(r"^(.+)\.([a-z_]+)$")


def codebase_of(state_dict: Mapping) -> str:
    """"slowfast", "mmaction2" or "pytorchvideo" (anything else) from the key names."""
    keys = list(state_dict)
    if any(k.startswith(("backbone.", "cls_head.")) for k in keys):
        return "mmaction2"
    if any(k.startswith(("s1.pathway0_stem.", "head.projection.", "head.lin_5.")) or _SLOWFAST_BLOCK.match(k)
           for k in keys):
        return "slowfast"
    return "pytorchvideo"


def _fixed(codebase: int):
    return {r[codebase]: r[0] for r in _FIXED_RULES}


def to_pytorchvideo_name(key: str, codebase: str) -> Optional[str]:
    """The pytorchvideo name of a SlowFast or mmaction2 X3D key, or None if it is not an X3D key."""
    if codebase == "pytorchvideo":
        return key
    col = CODEBASES.index(codebase)
    pattern = _SLOWFAST_BLOCK if codebase == "slowfast" else _MMACTION_BLOCK
    m = pattern.match(key)
    if m:
        stage, block, module, param = m.groups()
        stage = int(stage) - 1 if codebase == "slowfast" else int(stage)
        for rule in _BLOCK_RULES:
            if rule[col] == module:
                return f"blocks.{stage}.res_blocks.{int(block)}.{rule[0]}.{param}"
        return None
    m = _MODULE_PARAM.match(key)
    if m and m.group(1) in _fixed(col):
        return f"{_fixed(col)[m.group(1)]}.{m.group(2)}"
    return None


def from_pytorchvideo_name(key: str, codebase: str) -> Optional[str]:
    """The SlowFast or mmaction2 name of one of vidops's X3D keys (None if it has none)."""
    if codebase == "pytorchvideo":
        return key
    col = CODEBASES.index(codebase)
    m = re.match(r"^blocks\.([1-4])\.res_blocks\.(\d+)\.(.+)\.([a-z_]+)$", key)
    if m:
        stage, block, module, param = m.groups()
        for rule in _BLOCK_RULES:
            if rule[0] == module:
                if codebase == "slowfast":
                    return f"s{int(stage) + 1}.pathway0_res{block}.{rule[col]}.{param}"
                return f"backbone.layer{stage}.{block}.{rule[col]}.{param}"
        return None
    m = _MODULE_PARAM.match(key)
    for rule in _FIXED_RULES:
        if m and m.group(1) == rule[0]:
            return f"{rule[col]}.{m.group(2)}"
    return None


def export_x3d_state_dict(state_dict: Mapping, codebase: str) -> dict:
    """A vidops X3D state_dict under SlowFast's or mmaction2's names (their post_conv as a Linear
    for mmaction2). The pytorchvideo layout has no stage-1 shortcut BatchNorm, so the result lacks
    those 5 keys: build the model with layout="slowfast" to export a complete one."""
    if codebase not in CODEBASES:
        raise ValueError(f"vidops.models.export_x3d_state_dict: codebase must be one of {CODEBASES}, got {codebase!r}")
    out = {}
    for k, v in state_dict.items():
        name = from_pytorchvideo_name(k, codebase)
        if name is None:
            raise ValueError(f"vidops.models.export_x3d_state_dict: {k!r} is not an X3D key")
        if codebase == "mmaction2" and k == POST_CONV:
            v = v.reshape(v.shape[0], v.shape[1])
        out[name] = v
    return out


def convert_x3d_state_dict(state_dict: Mapping, layout: str, own_keys: set):
    """(state_dict in vidops's names, notes): SlowFast / mmaction2 keys renamed (mmaction2's
    Linear fc1 reshaped to the 1x1x1 post_conv). Keys that cannot be mapped keep their names (so a
    strict load reports them) and `notes` says why, e.g. the stage-1 shortcut BatchNorm that only
    one of the two layouts has."""
    codebase = codebase_of(state_dict)
    out, notes, unmapped = {}, [], []
    for k, v in state_dict.items():
        name = to_pytorchvideo_name(k, codebase)
        if name is None:
            unmapped.append(k)
            out[k] = v
            continue
        if name == POST_CONV and isinstance(v, torch.Tensor) and v.dim() == 2:
            v = v.reshape(*v.shape, 1, 1, 1)
        out[name] = v
    if unmapped and codebase != "pytorchvideo":
        notes.append(f"{len(unmapped)} {codebase} keys have no X3D counterpart: {', '.join(sorted(unmapped)[:8])}")
    extra_bn = sorted(k for k in out if k.startswith(STAGE1_SHORTCUT_NORM + "."))
    if extra_bn and not any(k.startswith(STAGE1_SHORTCUT_NORM + ".") for k in own_keys):
        src = [k for k in state_dict if to_pytorchvideo_name(k, codebase) in extra_bn]
        notes.append(f"the checkpoint ({codebase} names) has a BatchNorm on the stage-1 block-0 shortcut "
                     f"({', '.join(src)}), which the pytorchvideo layout does not have: dropping it would "
                     f"change the function; build the model with layout='slowfast'")
    if not extra_bn and any(k.startswith(STAGE1_SHORTCUT_NORM + ".") for k in own_keys) and any(
            k.startswith("blocks.1.res_blocks.0.") for k in out):
        missing = sorted(k for k in own_keys if k.startswith(STAGE1_SHORTCUT_NORM + "."))
        notes.append(f"the checkpoint ({codebase} names) has no BatchNorm on the stage-1 block-0 shortcut, "
                     f"which the model (layout='slowfast') has ({', '.join(missing)}): there are no weights "
                     f"for it; build the model with layout='pytorchvideo'")
    return out, notes
