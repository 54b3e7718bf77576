"""Drop-in modules; state_dict keys follow the authors' code so their checkpoints load unchanged."""
from .motion_band_pass import MotionBandPass  # noqa: F401
from .busy_quiet import BusyQuietSplit  # noqa: F401
from .band_pass_lateral import BandPassLateral  # noqa: F401
from .pixelwise_temporal_projection import PixelWiseTemporalProjection  # noqa: F401
from .temporal_squeeze import TemporalSqueezePooling  # noqa: F401
from .region_non_local import NonLocal, RegionConv, RegionNonLocal  # noqa: F401
from .region_non_local import convert_rnl_state_dict, depthwise_to_diagonalwise, diagonalwise_to_depthwise  # noqa: F401
from .attention import AttentionChain, ChannelGate, ConvPyramidAttention, SpatioTemporalSE  # noqa: F401
from .temporal_shift import TemporalShift  # noqa: F401
from .layer_swap import SwapReport, swap  # noqa: F401
from .depthwise_conv3d import DepthwiseConv3d  # noqa: F401
