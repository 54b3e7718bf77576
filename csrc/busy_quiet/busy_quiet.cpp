// Schema of the fused Busy/Quiet split kernel (operators.md §1.3): one read of the clip, both outputs.
//   quiet_scale < 0 means no resize of quiet.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def(
      "_busy_quiet_fwd(Tensor clip, Tensor spatial_weight, Tensor temporal_weight, str quiet, "
      "float quiet_scale) -> (Tensor, Tensor)");
}
