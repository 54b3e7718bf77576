// Schemas of the motion band-pass kernels (operators.md §1.1). The public op vidops::motion_band_pass is a
// Python custom op (vidops/ops/motion_band_pass.py) that calls these on the cpu and cuda backends.
//   _motion_band_pass_fwd: x (N,C,T,H,W), spatial_weight (C,k,k), temporal_weight (C,3) -> (N,C,T_out,H,W)
//   _motion_band_pass_bwd: grad_out, x, weights -> (grad_x, grad_spatial_weight, grad_temporal_weight)
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def(
      "_motion_band_pass_fwd(Tensor x, Tensor spatial_weight, Tensor temporal_weight, int temporal_stride, "
      "str spatial_padding, str temporal_padding) -> Tensor");
  m.def(
      "_motion_band_pass_bwd(Tensor grad_out, Tensor x, Tensor spatial_weight, Tensor temporal_weight, "
      "int temporal_stride, str spatial_padding, str temporal_padding) -> (Tensor, Tensor, Tensor)");
}
