// The g++ glue shared by the CUDA motion band-pass family (common/band_pass_glue.h): dtype codes,
// padding-mode codes and the launcher problem filled once for motion_band_pass forward and backward
// and busy_quiet. Only c10/ATen core headers (see motion_band_pass_cuda.cpp).
#ifdef VIDOPS_WITH_CUDA

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "common/band_pass_glue.h"
#include "common/band_pass_math.h"
#include "common/band_pass_problem.h"

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

namespace {

// The padding names are checked by vidops/ops/motion_band_pass.py (check_args, which busy_quiet's
// check_args calls too); any other name reads as zero padding, which indexes nothing outside x.
int spatial_mode(const std::string& s) { return s == "reflect" ? kReflect : kSpatialZeros; }

int temporal_mode(const std::string& s) {
  return s == "valid" ? kValid : (s == "replicate" ? kReplicate : kTemporalZeros);
}

}  // namespace

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
  const int sp = spatial_mode(spatial_padding);
  const int tp = temporal_mode(temporal_padding);
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

}  // namespace cuda_glue
}  // namespace mbp
}  // namespace vidops

#endif  // VIDOPS_WITH_CUDA
