// Schemas of the depthwise 3-D convolution kernels (operators.md §2). The public op vidops::depthwise_conv3d
// is a Python custom op (vidops/ops/depthwise_conv3d.py) that calls these on the cpu and cuda
// backends.
//   _depthwise_conv3d_fwd: x (N,C,T,H,W), weight (C,kt,kh,kw) (odd sizes, zero "same" padding,
//                          stride 1, no bias) -> (N,C,T,H,W)
//   _depthwise_conv3d_bwd: grad_out, x, weight -> (grad_x, grad_weight); a gradient whose flag is
//                          false comes back as zeros without being computed.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_depthwise_conv3d_fwd(Tensor x, Tensor weight) -> Tensor");
  m.def(
      "_depthwise_conv3d_bwd(Tensor grad_out, Tensor x, Tensor weight, bool compute_grad_x, "
      "bool compute_grad_weight) -> (Tensor, Tensor)");
}
