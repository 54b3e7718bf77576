"""Pure-PyTorch references: the test oracles (run them in float64) and the no-extension fallback.

Each function is written as the authors' public code runs the operator (see the docstrings), so
that benchmarks compare against what users actually ran.
"""
from .motion_band_pass import motion_band_pass, motion_band_pass_temporal_first  # noqa: F401
from .busy_quiet import busy_quiet  # noqa: F401
from .temporal_relation import temporal_relation  # noqa: F401
from .pixelwise_temporal_projection import pixelwise_temporal_projection  # noqa: F401
from .temporal_squeeze import temporal_squeeze  # noqa: F401
from .depthwise_conv3d import depthwise_conv3d, diagonalwise_conv3d  # noqa: F401
from .region_attention import region_attention, region_attention_backward  # noqa: F401
from . import temporal_shift  # noqa: F401  (the module: temporal_shift, temporal_shift_slice_copy)
