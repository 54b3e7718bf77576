// The g++ glue of the CUDA motion band-pass family, shared by motion_band_pass_cuda.cpp (forward and
// backward) and busy_quiet_cuda.cpp: one helper checks what the launchers index by and fills the
// launcher problem (common/band_pass_problem.h) from x, the weights and the modes
// (common/band_pass_glue_cuda.cpp; g++ only, VIDOPS_WITH_CUDA builds).
#pragma once
#ifdef VIDOPS_WITH_CUDA

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "common/band_pass_problem.h"

namespace vidops {
namespace mbp {
namespace cuda_glue {

// A checked call: the launcher problem (x's shape, strides, modes; grad_strides zero) and the
// weights in the kernels' accumulation type (float64 for float64 x, float32 otherwise), contiguous.
struct CheckedCall {
  VidopsMbpProblem problem;
  at::Tensor spatial_weight, temporal_weight;
};

// The checks that protect the launchers' memory accesses, TORCH_CHECKs naming `op` and the argument:
// x a 5-D CUDA tensor, weights (C, k, k) odd k and (C, 3) on x's device, floating dtypes, stride >= 1,
// reflect padding narrower than H and W, T_out >= 1. The padding names are checked in Python
// (vidops/ops/motion_band_pass.py); any other name reads as zero padding.
CheckedCall check_call(const char* op, const at::Tensor& x, const at::Tensor& spatial_weight,
                       const at::Tensor& temporal_weight, int64_t temporal_stride, const std::string& spatial_padding,
                       const std::string& temporal_padding);

// VidopsCudaDtype of t (TORCH_CHECK for other dtypes) and the accumulation dtype of x.
int32_t dtype_code(const at::Tensor& t, const char* op, const char* arg);
at::ScalarType acc_type(const at::Tensor& x);

}  // namespace cuda_glue
}  // namespace mbp
}  // namespace vidops

#endif  // VIDOPS_WITH_CUDA
