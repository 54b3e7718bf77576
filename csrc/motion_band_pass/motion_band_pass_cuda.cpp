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

#include "common/cuda_stream.h"
#include "motion_band_pass/motion_band_pass_cuda.h"
#include "motion_band_pass/motion_band_pass_cuda_glue.h"
#include "motion_band_pass/motion_band_pass_math.h"

namespace vidops {
namespace mbp {
namespace cuda_glue {

int32_t dtype_code(const at::Tensor& t, const char* op, const char* arg) {
  switch (t.scalar_type()) {
    case at::kFloat: return kVidopsFloat32;
    case at::kDouble: return kVidopsFloat64;
    case at::kHalf: return kVidopsFloat16;
    case at::kBFloat16: return kVidopsBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", arg, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
  return -1;
}

at::ScalarType acc_type(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

int spatial_mode(const std::string& s, const char* op) {
  TORCH_CHECK(s == "reflect" || s == "zeros", op, ": spatial_padding must be 'reflect' or 'zeros', got '", s, "'");
  return s == "reflect" ? kReflect : kSpatialZeros;
}

int temporal_mode(const std::string& s, const char* op) {
  TORCH_CHECK(s == "valid" || s == "replicate" || s == "zeros", op,
              ": temporal_padding must be 'valid', 'replicate' or 'zeros', got '", s, "'");
  return s == "valid" ? kValid : (s == "replicate" ? kReplicate : kTemporalZeros);
}

CheckedCall check_call(const char* op, const at::Tensor& x, const at::Tensor& spatial_weight,
                       const at::Tensor& temporal_weight, int64_t temporal_stride, const std::string& spatial_padding,
                       const std::string& temporal_padding) {
  TORCH_CHECK(x.is_cuda(), op, ": x must be a CUDA tensor, got one on ", x.device());
  TORCH_CHECK(x.dim() == 5, op, ": x must be 5-D (N, C, T, H, W), got shape ", x.sizes());
  TORCH_CHECK(spatial_weight.device() == x.device(), op, ": spatial_weight must be on x's device ", x.device(),
              ", got ", spatial_weight.device());
  TORCH_CHECK(temporal_weight.device() == x.device(), op, ": temporal_weight must be on x's device ", x.device(),
              ", got ", temporal_weight.device());
  const int32_t dtype = dtype_code(x, op, "x");
  dtype_code(spatial_weight, op, "spatial_weight");
  dtype_code(temporal_weight, op, "temporal_weight");
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  TORCH_CHECK(spatial_weight.dim() == 3 && spatial_weight.size(0) == C &&
                  spatial_weight.size(1) == spatial_weight.size(2) && spatial_weight.size(1) % 2 == 1,
              op, ": spatial_weight must be (C, k, k) with C=", C, " and odd k, got shape ", spatial_weight.sizes());
  TORCH_CHECK(temporal_weight.dim() == 2 && temporal_weight.size(0) == C && temporal_weight.size(1) == 3, op,
              ": temporal_weight must be (C, 3) with C=", C, ", got shape ", temporal_weight.sizes());
  TORCH_CHECK(temporal_stride >= 1 && temporal_stride <= (int64_t(1) << 30), op,
              ": temporal_stride must be a positive int, got ", temporal_stride);
  const int64_t k = spatial_weight.size(1);
  TORCH_CHECK(k <= 1023, op, ": spatial_weight kernel size ", k, " is larger than the CUDA kernels support (1023)");
  const int sp = spatial_mode(spatial_padding, op);
  const int tp = temporal_mode(temporal_padding, op);
  const int64_t r = (k - 1) / 2;
  TORCH_CHECK(sp != kReflect || H * W == 0 || (H > r && W > r), op, ": reflect padding of ", r,
              " needs H and W > ", r, " (kernel size ", k, "), got H=", H, ", W=", W);
  const int64_t T_out = output_frames(T, static_cast<int>(temporal_stride), tp);
  TORCH_CHECK(T_out >= 1, op, ": x has T=", T, " frames; the 3-tap temporal filter with temporal_padding='",
              temporal_padding, "' needs T >= ", 3 - 2 * temporal_pad(tp));

  CheckedCall call;
  VidopsMbpProblem& p = call.problem;
  p.dtype = dtype;
  p.k = static_cast<int32_t>(k);
  p.temporal_stride = static_cast<int32_t>(temporal_stride);
  p.spatial_padding = sp;
  p.temporal_padding = tp;
  p.reserved = 0;
  p.N = N;
  p.C = C;
  p.T = T;
  p.H = H;
  p.W = W;
  p.T_out = T_out;
  for (int d = 0; d < 5; ++d) {
    p.x_strides[d] = x.stride(d);
    p.grad_strides[d] = 0;
  }
  call.spatial_weight = spatial_weight.to(acc_type(x)).contiguous();
  call.temporal_weight = temporal_weight.to(acc_type(x)).contiguous();
  return call;
}

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
