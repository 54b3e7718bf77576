// The depthwise 3-D convolution as the C++ glue (depthwise_conv3d_cuda.cpp) hands it to the
// runtime-only CUDA launchers (depthwise_conv3d_kernel.cu), and as tests/cuda_emulation.py mirrors
// it with ctypes: sizes, stride, padding and the element strides of every tensor, so that any
// layout (contiguous, channels_last_3d, slices) is read and written in place.
//   y[n,c,o]  = bias[c] + sum_k w[c,k] x[n,c, s*o + k - p]        (per axis; zeros outside x)
#pragma once
#include <cstdint>

namespace vidops {
namespace dwc {

struct CudaProblem {
  int32_t dtype;              // common/dtype_code.h
  int32_t kt, kh, kw;         // kernel sizes (any >= 1)
  int32_t st, sh, sw;         // stride (>= 1)
  int32_t pt, ph, pw;         // zero padding (>= 0)
  int32_t frames_per_block;   // tile kernels' output frames per block: 0 automatic (tests pin it)
  int32_t reserved;
  int64_t N, C, T, H, W;      // x and grad_x
  int64_t To, Ho, Wo;         // y and grad_y: (L + 2p - k) / s + 1
  int64_t x_strides[5];       // x (forward input, weight-gradient input), elements
  int64_t y_strides[5];       // y (forward output) or grad_y (backward input)
  int64_t gx_strides[5];      // grad_x (backward output)
};

}  // namespace dwc
}  // namespace vidops

// w: (C, kt*kh*kw) contiguous and bias (C,) (or null) in the accumulation type (float, double
// for float64); x, y, grad_y, grad_x of the problem's dtype with the problem's strides.
extern "C" const char* vidops_dwc_forward_cuda(const vidops::dwc::CudaProblem* p, const void* x, const void* w,
                                               const void* bias, void* y, void* stream);
extern "C" const char* vidops_dwc_grad_x_cuda(const vidops::dwc::CudaProblem* p, const void* grad_y,
                                              const void* w, void* grad_x, void* stream);
// grad_w (C, taps) and grad_b (C,) in the accumulation type, either may be null (not computed);
// the workspace holds the per-block partial sums (bytes from vidops_dwc_wgrad_workspace_bytes).
extern "C" int64_t vidops_dwc_wgrad_workspace_bytes(const vidops::dwc::CudaProblem* p);
extern "C" const char* vidops_dwc_wgrad_cuda(const vidops::dwc::CudaProblem* p, const void* grad_y, const void* x,
                                             void* grad_w, void* grad_b, void* workspace, int64_t workspace_bytes,
                                             void* stream);
