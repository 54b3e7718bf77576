// Schemas of the temporal squeeze pooling kernels (operators.md §4). The public op vidops::temporal_squeeze is
// a Python custom op (vidops/ops/temporal_squeeze.py) that calls these on the cpu and cuda backends.
//   _temporal_squeeze_fwd: x (N,C,K,H,W), basis (N,K,D), eps
//       -> y (N,C,D,H,W) in x's dtype, l_proj (N,) (float64 for float64 x, else float32)
//   _temporal_squeeze_bwd: grad_y (N,C,D,H,W), grad_l (N,), x, basis, eps
//       -> grad_x (N,C,K,H,W) in x's dtype, grad_basis (N,K,D) in basis's dtype
// The per-sample solve shares PWTP's math (csrc/pixelwise_temporal_projection/..._math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_temporal_squeeze_fwd(Tensor x, Tensor basis, float eps) -> (Tensor y, Tensor l_proj)");
  m.def(
      "_temporal_squeeze_bwd(Tensor grad_y, Tensor grad_l, Tensor x, Tensor basis, float eps) -> (Tensor grad_x, "
      "Tensor grad_basis)");
}
