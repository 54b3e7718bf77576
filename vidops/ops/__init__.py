"""The fused ops: one file per op, each declared on the op skeleton (vidops._op): torch.library
custom ops with fakes, autograd and backends chosen from the inputs."""
from .log_kernel import log_kernel, temporal_band_pass_init  # noqa: F401
from .motion_band_pass import motion_band_pass  # noqa: F401
from .busy_quiet import busy_quiet  # noqa: F401
from .temporal_relation import temporal_relation  # noqa: F401
from .pixelwise_temporal_projection import pixelwise_temporal_projection  # noqa: F401
from .temporal_squeeze import temporal_squeeze  # noqa: F401
from .depthwise_conv3d import depthwise_conv3d  # noqa: F401
from .region_attention import region_attention  # noqa: F401
from .temporal_shift import temporal_shift  # noqa: F401
