// Schemas of the temporal shift kernels. The public op vidops::temporal_shift is a Python custom op
// (vidops/ops/temporal_shift.py) that calls these on the cpu and cuda backends.
//   _temporal_shift_fwd: x (N*T, C, H, W) -> out, channels [0, fold) from frame t+1, [fold, 2 fold)
//                        from t-1 (zero past either end), the rest copied; fold = C / fold_div
//   _temporal_shift_bwd: grad_out -> grad_x, the mirror shift ([0, fold) from t-1, [fold, 2 fold) from t+1)
// Both return a new tensor, channels_last when the input is channels_last (and not also
// contiguous), contiguous otherwise.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_temporal_shift_fwd(Tensor x, int num_segments, int fold_div) -> Tensor");
  m.def("_temporal_shift_bwd(Tensor grad_out, int num_segments, int fold_div) -> Tensor");
}
