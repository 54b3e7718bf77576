// CUDA kernels of vidops::_motion_band_pass_fwd / _bwd (schemas in motion_band_pass.cpp), registered
// for the CUDA dispatch key. This is g++-compiled glue: it checks the arguments, converts the (tiny)
// weight tensors to the kernels' accumulation type, allocates outputs and workspace on x's device,
// and calls the nvcc-compiled launchers (motion_band_pass_cuda.h) on the current stream of x's
// device. Only c10/ATen core headers: no ATen/cuda or c10/cuda (incomplete in the CPU wheel), so
// the same extension loads into CPU torch (registered, never called) and CUDA torch.
#ifdef VIDOPS_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common/band_pass_glue.h"
#include "common/cuda_stream.h"
#include "motion_band_pass/motion_band_pass_cuda.h"
#include "motion_band_pass/motion_band_pass_math.h"

namespace vidops {
namespace mbp {
namespace cuda_glue {

namespace {

const char* const kFwd = "vidops._motion_band_pass_fwd (CUDA)";
const char* const kBwd = "vidops._motion_band_pass_bwd (CUDA)";

at::Tensor motion_band_pass_fwd_cuda(const at::Tensor& x, const at::Tensor& spatial_weight,
                                     const at::Tensor& temporal_weight, int64_t temporal_stride,
                                     std::string spatial_padding, std::string temporal_padding) {
  c10::DeviceGuard guard(x.device());
  CheckedCall call = check_call(kFwd, x, spatial_weight, temporal_weight, temporal_stride, spatial_padding,
                                temporal_padding);
  const VidopsMbpProblem& p = call.problem;
  at::Tensor out = at::empty({p.N, p.C, p.T_out, p.H, p.W}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const char* err = vidops_mbp_forward_cuda(&p, x.data_ptr(), call.spatial_weight.data_ptr(),
                                            call.temporal_weight.data_ptr(), out.data_ptr(),
                                            vidops::current_cuda_stream(x));
  TORCH_CHECK(err == nullptr, kFwd, ": ", err);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> motion_band_pass_bwd_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& spatial_weight,
    const at::Tensor& temporal_weight, int64_t temporal_stride, std::string spatial_padding,
    std::string temporal_padding) {
  c10::DeviceGuard guard(x.device());
  CheckedCall call = check_call(kBwd, x, spatial_weight, temporal_weight, temporal_stride, spatial_padding,
                                temporal_padding);
  VidopsMbpProblem& p = call.problem;
  TORCH_CHECK(grad_out.device() == x.device(), kBwd, ": grad_out must be on x's device ", x.device(), ", got ",
              grad_out.device());
  TORCH_CHECK(grad_out.dim() == 5 && grad_out.size(0) == p.N && grad_out.size(1) == p.C &&
                  grad_out.size(2) == p.T_out && grad_out.size(3) == p.H && grad_out.size(4) == p.W,
              kBwd, ": grad_out must have the output's shape (", p.N, ", ", p.C, ", ", p.T_out, ", ", p.H, ", ", p.W,
              "), got ", grad_out.sizes());
  dtype_code(grad_out, kBwd, "grad_out");
  const at::Tensor grad = grad_out.scalar_type() == x.scalar_type() ? grad_out : grad_out.to(x.scalar_type());
  for (int d = 0; d < 5; ++d) p.grad_strides[d] = grad.stride(d);

  const auto acc = acc_type(x);
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor grad_sw = at::empty({p.C, p.k, p.k}, x.options().dtype(acc));
  at::Tensor grad_tw = at::empty({p.C, 3}, x.options().dtype(acc));
  const int64_t ws_bytes = vidops_mbp_backward_workspace_bytes(&p);
  at::Tensor workspace = at::empty({ws_bytes > 0 ? ws_bytes : 1}, x.options().dtype(at::kByte));
  if (grad_sw.numel() > 0 || grad_x.numel() > 0) {
    const char* err = vidops_mbp_backward_cuda(
        &p, grad.numel() ? grad.data_ptr() : nullptr, x.numel() ? x.data_ptr() : nullptr,
        call.spatial_weight.data_ptr(), call.temporal_weight.data_ptr(), grad_x.numel() ? grad_x.data_ptr() : nullptr,
        grad_sw.data_ptr(), grad_tw.data_ptr(), workspace.data_ptr(), ws_bytes, vidops::current_cuda_stream(x));
    TORCH_CHECK(err == nullptr, kBwd, ": ", err);
  }
  return {grad_x, grad_sw.to(spatial_weight.scalar_type()), grad_tw.to(temporal_weight.scalar_type())};
}

}  // namespace
}  // namespace cuda_glue
}  // namespace mbp
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_motion_band_pass_fwd", &vidops::mbp::cuda_glue::motion_band_pass_fwd_cuda);
  m.impl("_motion_band_pass_bwd", &vidops::mbp::cuda_glue::motion_band_pass_bwd_cuda);
}

#endif  // VIDOPS_WITH_CUDA
