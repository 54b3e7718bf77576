"""The thesis's models built from vidops layers, with the authors' state_dict keys.

    model = vidops.models.tsm_resnet50(400, num_segments=8)             # impl="vidops" (fused ops)
    vidops.models.load_checkpoint(model, "TSM_kinetics_RGB_resnet50.pth")  # strict, `module.` stripped
    vidops.models.set_impl(model, "reference")                          # the authors' plain PyTorch

Every model takes a clip (N, 3, frames, H, W) or the authors' TSN layout (N, frames*3, H, W).
"""
from ._common import impls, set_impl  # noqa: F401
from .bqn import BQNResNet50, bqn_resnet50  # noqa: F401
from .checkpoint import CheckpointMismatchError, load_checkpoint, strip_module_prefix  # noqa: F401
from .dan import DynamicAppearanceNet, dan_tsm_resnet50  # noqa: F401
from .resnet import ResNet, resnet50  # noqa: F401
from .rnl import (DiagonalwiseRegionNonLocal, NLTSMResNet50, RNLTSMResNet50, nl_tsm_resnet50,  # noqa: F401
                  rnl_tsm_resnet50)
from .tesnet import TeSNet, tesnet_resnet50  # noqa: F401
from .tsm import FrameClassifier, TSMResNet50, make_temporal_shift, tsm_resnet50  # noqa: F401

__all__ = ["tsm_resnet50", "bqn_resnet50", "rnl_tsm_resnet50", "nl_tsm_resnet50", "dan_tsm_resnet50",
           "tesnet_resnet50", "resnet50", "set_impl", "impls", "load_checkpoint", "strip_module_prefix",
           "CheckpointMismatchError", "TSMResNet50", "BQNResNet50", "RNLTSMResNet50", "NLTSMResNet50",
           "DynamicAppearanceNet", "TeSNet", "FrameClassifier", "ResNet", "DiagonalwiseRegionNonLocal",
           "make_temporal_shift", "count_flops", "FlopCount"]
from .flops import FlopCount, count_flops  # noqa: E402,F401
from .x3d import X3D, x3d_l, x3d_m, x3d_s, x3d_xs  # noqa: E402,F401
from .x3d_keys import export_x3d_state_dict  # noqa: E402,F401

from .bqn_x3d import BQNX3D, bqn_x3d_m  # noqa: E402,F401
from .busy_x3d import BusyX3D, busy_x3d_m  # noqa: E402,F401
from .dan_x3d import DynamicAppearanceX3D, dan_x3d_m, dan_x3d_xs  # noqa: E402,F401

__all__ += ["X3D", "x3d_xs", "x3d_s", "x3d_m", "x3d_l", "export_x3d_state_dict", "BQNX3D", "bqn_x3d_m",
            "BusyX3D", "busy_x3d_m", "DynamicAppearanceX3D", "dan_x3d_xs", "dan_x3d_m"]

from .imagenet import ImageNetLoadReport, load_imagenet_backbone  # noqa: E402,F401

__all__ += ["load_imagenet_backbone", "ImageNetLoadReport"]
from .recipes import classifier_modules, freeze_bn, param_groups  # noqa: E402,F401

__all__ += ["param_groups", "freeze_bn", "classifier_modules"]
from .predict import Sampling, decode_video, predict, sampling_of  # noqa: E402,F401

__all__ += ["predict", "decode_video", "sampling_of", "Sampling"]
