// CUDA kernel of vidops::_busy_quiet_fwd (schema in busy_quiet.cpp), registered for the CUDA
// dispatch key: g++-compiled glue around the nvcc-compiled launcher (busy_quiet_cuda.h), as
// motion_band_pass_cuda.cpp (same checks, conversions, allocation and stream).
#ifdef VIDOPS_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <tuple>

#include "busy_quiet/busy_quiet_cuda.h"
#include "busy_quiet/busy_quiet_math.h"
#include "common/band_pass_glue.h"
#include "common/cuda_stream.h"

namespace vidops {
namespace bq {
namespace cuda_glue {
namespace {

const char* const kOp = "vidops._busy_quiet_fwd (CUDA)";

std::tuple<at::Tensor, at::Tensor> busy_quiet_fwd_cuda(const at::Tensor& clip, const at::Tensor& spatial_weight,
                                                       const at::Tensor& temporal_weight, std::string quiet,
                                                       double quiet_scale) {
  c10::DeviceGuard guard(clip.device());
  TORCH_CHECK(clip.dim() == 5, kOp, ": clip must be 5-D (N, C, 3S, H, W), got shape ", clip.sizes());
  TORCH_CHECK(clip.size(2) % 3 == 0, kOp, ": clip must hold S segments of 3 frames (T a multiple of 3), got T=",
              clip.size(2));
  // quiet is checked by vidops/ops/busy_quiet.py (check_args); any other name reads as mean_minus_busy.
  TORCH_CHECK(std::isfinite(quiet_scale) && quiet_scale != 0, kOp,
              ": quiet_scale must be a positive number (or negative for no resize), got ", quiet_scale);
  mbp::cuda_glue::CheckedCall call =
      mbp::cuda_glue::check_call(kOp, clip, spatial_weight, temporal_weight, 3, "reflect", "valid");
  VidopsBusyQuietProblem bp;
  bp.mbp = call.problem;
  bp.quiet_mode = quiet == "first" ? kFirst : kMeanMinusBusy;
  bp.reserved = 0;
  bp.quiet_scale = quiet_scale > 0 ? quiet_scale : -1.0;
  bp.quiet_H = resized_size(bp.mbp.H, bp.quiet_scale);
  bp.quiet_W = resized_size(bp.mbp.W, bp.quiet_scale);
  const VidopsMbpProblem& p = bp.mbp;
  TORCH_CHECK(p.H * p.W == 0 || (bp.quiet_H >= 1 && bp.quiet_W >= 1), kOp, ": quiet_scale=", quiet_scale,
              " maps H x W = ", p.H, " x ", p.W, " to an empty ", bp.quiet_H, " x ", bp.quiet_W, " image");
  const auto options = clip.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor busy = at::empty({p.N, p.C, p.T_out, p.H, p.W}, options);
  at::Tensor q = at::empty({p.N, p.C, p.T_out, bp.quiet_H, bp.quiet_W}, options);
  if (busy.numel() == 0) return {busy, q};
  const char* err = vidops_busy_quiet_cuda(&bp, clip.data_ptr(), call.spatial_weight.data_ptr(),
                                           call.temporal_weight.data_ptr(), busy.data_ptr(), q.data_ptr(),
                                           vidops::current_cuda_stream(clip));
  TORCH_CHECK(err == nullptr, kOp, ": ", err);
  return {busy, q};
}

}  // namespace
}  // namespace cuda_glue
}  // namespace bq
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_busy_quiet_fwd", &vidops::bq::cuda_glue::busy_quiet_fwd_cuda);
}

#endif  // VIDOPS_WITH_CUDA
