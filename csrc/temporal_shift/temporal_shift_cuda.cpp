// CUDA dispatch of the temporal shift kernels (schemas in temporal_shift.cpp); the kernel is in
// temporal_shift_kernel.cu (runtime only).
#ifdef VIDOPS_WITH_CUDA
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "common/cuda_stream.h"
#include "temporal_shift/temporal_shift_args.h"
#include "temporal_shift/temporal_shift_kernel.h"

namespace vidops {
namespace {

at::Tensor shift_cuda(const at::Tensor& x, int64_t num_segments, int64_t fold_div, bool backward) {
  tshift::check_args(x, num_segments, fold_div, "cuda");
  TORCH_CHECK(x.is_cuda(), "vidops.temporal_shift (cuda): x must be a CUDA tensor, got ", x.device());
  c10::DeviceGuard guard(x.device());
  at::Tensor out = tshift::new_output(x);
  if (out.numel() == 0) return out;
  const int64_t sizes[4] = {x.size(0), x.size(1), x.size(2), x.size(3)};
  const int64_t strides[4] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  const char* err = vidops_temporal_shift_cuda(x.const_data_ptr(), out.mutable_data_ptr(),
                                               static_cast<int>(x.element_size()), sizes, strides,
                                               tshift::output_is_channels_last(x) ? 1 : 0, num_segments,
                                               x.size(1) / fold_div, backward ? 1 : 0, current_cuda_stream(x));
  TORCH_CHECK(err == nullptr, "vidops.temporal_shift (cuda) ", backward ? "backward" : "forward", ": ", err);
  return out;
}

at::Tensor shift_fwd_cuda(const at::Tensor& x, int64_t num_segments, int64_t fold_div) {
  return shift_cuda(x, num_segments, fold_div, false);
}

at::Tensor shift_bwd_cuda(const at::Tensor& grad_out, int64_t num_segments, int64_t fold_div) {
  return shift_cuda(grad_out, num_segments, fold_div, true);
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_temporal_shift_fwd", &vidops::shift_fwd_cuda);
  m.impl("_temporal_shift_bwd", &vidops::shift_bwd_cuda);
}
#endif  // VIDOPS_WITH_CUDA
