"""The default run's X3D group (`python -m vidops.bench`, or `--ops x3d`): X3D-M's eval forward and
training step, N = 1, 16 x 224^2 (CPU; N = 8 on GPUs), vidops impl against the reference impl
(nn.Conv3d(groups=C) for the depthwise convs, as pytorchvideo runs X3D), in NCDHW and in
channels_last_3d, timed in alternation, with the per-layer breakdown (depthwise convs against the
rest). The cases are those of vidops/bench/cases/models.py (`--ops models` adds BQN X3D-M and
DAN-X3D-XS); smoke: X3D-XS at 4 x 32^2.
"""
from __future__ import annotations

import torch

from ..registry import CaseOptions
from . import models

OP = "x3d"


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    options = options or CaseOptions()
    size = "smoke" if options.smoke else ("quick" if quick else "full")
    wanted = [s for s in models.x3d_specs(size, device.type == "cuda") if s.factory in ("x3d_m", "x3d_xs")]
    return models.build_cases(wanted, device, size, options, OP)
