// Schemas of the depthwise 3-D convolution kernels (operators.md §2). The public op vidops::depthwise_conv3d
// is a Python custom op (vidops/ops/depthwise_conv3d.py) that calls these on the cpu and cuda
// backends, with the weight as (C, kt, kh, kw) and stride and padding as 3 ints each; plain eager
// CPU calls reach them through _depthwise_conv3d_autograd (depthwise_conv3d_autograd.cpp) instead.
//   _depthwise_conv3d_fwd: x (N,C,T,H,W), weight (C,kt,kh,kw) (any sizes), bias (C,) or None,
//                          stride (st,sh,sw) >= 1, zero padding (pt,ph,pw) >= 0
//                          -> y (N,C,To,Ho,Wo), Lo = (L + 2p - k) / s + 1 per axis
//   _depthwise_conv3d_bwd: grad_y, x, weight, bias, stride, padding and one flag per gradient
//                          -> (grad_x, grad_weight, grad_bias); a gradient whose flag is false
//                          comes back as zeros without being computed (the CPU kernel's grad_x
//                          as one zero expanded to x's shape: no memory), grad_bias as an empty
//                          (0,) tensor when bias is None.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_depthwise_conv3d_fwd(Tensor x, Tensor weight, Tensor? bias, int[] stride, int[] padding) -> Tensor");
  m.def(
      "_depthwise_conv3d_bwd(Tensor grad_y, Tensor x, Tensor weight, Tensor? bias, int[] stride, "
      "int[] padding, bool need_x, bool need_weight, bool need_bias) -> (Tensor, Tensor, Tensor)");
}
