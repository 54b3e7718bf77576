// CUDA dispatch of the temporal relation kernels (schemas in temporal_relation.cpp); the kernels
// are in temporal_relation_kernel.cu (runtime only).
#ifdef VIDOPS_WITH_CUDA
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <limits>

#include "common/cuda_stream.h"
#include "common/dtype_code.h"
#include "temporal_relation/temporal_relation_kernel.h"

namespace vidops {
namespace {

constexpr const char* kOp = "temporal_relation";

void check_f(const at::Tensor& f) {
  TORCH_CHECK(f.is_cuda(), "vidops.", kOp, " (cuda): f must be a CUDA tensor, got ", f.device());
  TORCH_CHECK(f.dim() == 5, "vidops.", kOp, " (cuda): f must be (N, C', T, h, w), got ", f.sizes());
  (void)dtype_code(f.scalar_type(), kOp);
}

at::Tensor relation_fwd_cuda(const at::Tensor& f) {
  check_f(f);
  c10::DeviceGuard guard(f.device());
  const int64_t N = f.size(0), C = f.size(1), T = f.size(2), H = f.size(3), W = f.size(4);
  auto u = f.new_empty({N, T * (T - 1) / 2, H, W});
  if (u.numel() == 0) return u;
  if (C == 0) return u.fill_(std::numeric_limits<double>::quiet_NaN());  // the mean over no channels
  const int64_t sizes[5] = {N, C, T, H, W};
  const int64_t fs[5] = {f.stride(0), f.stride(1), f.stride(2), f.stride(3), f.stride(4)};
  const char* err = vidops_temporal_relation_fwd_cuda(f.data_ptr(), u.data_ptr(), dtype_code(f.scalar_type(), kOp),
                                                      sizes, fs, current_cuda_stream(f));
  TORCH_CHECK(err == nullptr, "vidops.", kOp, " (cuda) forward: ", err);
  return u;
}

at::Tensor relation_bwd_cuda(const at::Tensor& grad_u_, const at::Tensor& f) {
  check_f(f);
  c10::DeviceGuard guard(f.device());
  const int64_t N = f.size(0), C = f.size(1), T = f.size(2), H = f.size(3), W = f.size(4);
  const int64_t P = T * (T - 1) / 2;
  TORCH_CHECK(grad_u_.sizes() == at::IntArrayRef({N, P, H, W}), "vidops.", kOp, " (cuda): grad_u must be ",
              at::IntArrayRef({N, P, H, W}), ", got ", grad_u_.sizes());
  TORCH_CHECK(grad_u_.device() == f.device(), "vidops.", kOp, " (cuda): grad_u is on ", grad_u_.device(),
              " but f is on ", f.device());
  auto gf = f.new_empty({N, C, T, H, W});
  if (gf.numel() == 0) return gf;
  if (P == 0) return gf.zero_();
  const auto gu = grad_u_.to(f.scalar_type());
  const int64_t sizes[5] = {N, C, T, H, W};
  const int64_t fs[5] = {f.stride(0), f.stride(1), f.stride(2), f.stride(3), f.stride(4)};
  const int64_t gs[4] = {gu.stride(0), gu.stride(1), gu.stride(2), gu.stride(3)};
  const char* err = vidops_temporal_relation_bwd_cuda(gu.data_ptr(), gs, f.data_ptr(), gf.data_ptr(),
                                                      dtype_code(f.scalar_type(), kOp), sizes, fs,
                                                      current_cuda_stream(f));
  TORCH_CHECK(err == nullptr, "vidops.", kOp, " (cuda) backward: ", err);
  return gf;
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_temporal_relation_fwd", &vidops::relation_fwd_cuda);
  m.impl("_temporal_relation_bwd", &vidops::relation_bwd_cuda);
}
#endif  // VIDOPS_WITH_CUDA
