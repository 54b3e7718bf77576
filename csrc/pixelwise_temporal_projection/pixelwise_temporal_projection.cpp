// Schemas of the pixel-wise temporal projection kernels (operators.md §3.2). The public op
// vidops::pixelwise_temporal_projection is a Python custom op (vidops/ops/pixelwise_temporal_projection.py)
// that calls these on the cpu and cuda backends; the Triton launchers take the same arguments.
//   _pixelwise_temporal_projection_fwd: x (N,C,T,H,W), basis (N,T*D,h,w), D, eps
//       -> pbar (N,C,H,W) in x's dtype, enopr (N,) (float64 for float64 x, else float32)
//   _pixelwise_temporal_projection_bwd: grad_pbar (N,C,H,W), grad_enopr (N,), x, basis, D, eps
//       -> grad_x (N,C,T,H,W) in x's dtype, grad_basis (N,T*D,h,w) in basis's dtype
// The basis is bilinearly upsampled to (H, W) inside the kernels (align_corners=False).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_pixelwise_temporal_projection_fwd(Tensor x, Tensor basis, int D, float eps) -> (Tensor pbar, Tensor enopr)");
  m.def(
      "_pixelwise_temporal_projection_bwd(Tensor grad_pbar, Tensor grad_enopr, Tensor x, Tensor basis, int D, "
      "float eps) -> (Tensor grad_x, Tensor grad_basis)");
}
