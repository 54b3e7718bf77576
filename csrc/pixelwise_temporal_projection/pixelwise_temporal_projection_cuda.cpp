// CUDA dispatch of the pixel-wise temporal projection kernels (schemas in
// pixelwise_temporal_projection.cpp): shape checks, outputs, the device guard and the current
// stream; the kernels are in pixelwise_temporal_projection_kernel.cu (runtime only).
#ifdef VIDOPS_WITH_CUDA
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <climits>
#include <limits>
#include <tuple>

#include "common/cuda_stream.h"
#include "common/dtype_code.h"
#include "pixelwise_temporal_projection/pixelwise_temporal_projection_kernel.h"

namespace vidops {
namespace {

constexpr const char* kOp = "pixelwise_temporal_projection";

c10::ScalarType acc_type(const at::Tensor& x) {
  return x.scalar_type() == c10::ScalarType::Double ? c10::ScalarType::Double : c10::ScalarType::Float;
}

void check_args(const at::Tensor& x, const at::Tensor& basis, int64_t D) {
  TORCH_CHECK(x.is_cuda() && basis.is_cuda(), "vidops.", kOp, " (cuda): x and basis must be CUDA tensors, got ",
              x.device(), " and ", basis.device());
  TORCH_CHECK(x.device() == basis.device(), "vidops.", kOp, " (cuda): x is on ", x.device(), " but basis is on ",
              basis.device());
  TORCH_CHECK(x.dim() == 5, "vidops.", kOp, " (cuda): x must be (N, C, T, H, W), got ", x.sizes());
  TORCH_CHECK(basis.dim() == 4, "vidops.", kOp, " (cuda): basis must be (N, T*D, h, w), got ", basis.sizes());
  const int64_t N = x.size(0), T = x.size(2), H = x.size(3), W = x.size(4);
  TORCH_CHECK(D >= 1 && D <= vidops_pwtp_cuda_max_d, "vidops.", kOp, " (cuda): D must be in 1..",
              vidops_pwtp_cuda_max_d, ", got ", D);
  TORCH_CHECK(basis.size(0) == N && basis.size(1) == T * D, "vidops.", kOp, " (cuda): basis must be (N=", N,
              ", T*D=", T * D, ", h, w), got ", basis.sizes());
  TORCH_CHECK(basis.size(2) >= 1 && basis.size(2) <= H && basis.size(3) >= 1 && basis.size(3) <= W, "vidops.", kOp,
              " (cuda): basis resolution must be within 1..(H, W) = (", H, ", ", W, "), got ", basis.sizes());
  TORCH_CHECK(H * W < INT_MAX && T * D * basis.size(2) * basis.size(3) < INT_MAX, "vidops.", kOp,
              " (cuda): H*W and T*D*h*w must be < 2^31");
  (void)dtype_code(x.scalar_type(), kOp);
}

std::tuple<at::Tensor, at::Tensor> pwtp_fwd_cuda(const at::Tensor& x, const at::Tensor& basis, int64_t D,
                                                 double eps) {
  check_args(x, basis, D);
  c10::DeviceGuard guard(x.device());
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const auto acc = acc_type(x);
  auto pbar = x.new_empty({N, C, H, W});
  auto enopr = x.new_empty({N}, x.options().dtype(acc));
  if (N == 0) return {pbar, enopr};
  if (C * H * W == 0) {
    enopr.fill_(std::numeric_limits<double>::quiet_NaN());
    return {pbar, enopr};
  }
  const auto b = basis.to(acc).contiguous();  // the small low-resolution basis, in the accumulation dtype
  auto ws = x.new_empty({vidops_pwtp_fwd_workspace(N, H, W)}, x.options().dtype(acc));
  const int64_t sizes[8] = {N, C, T, H, W, b.size(2), b.size(3), D};
  const int64_t xs[5] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3), x.stride(4)};
  const char* err = vidops_pwtp_fwd_cuda(x.data_ptr(), b.data_ptr(), pbar.data_ptr(), enopr.data_ptr(), ws.data_ptr(),
                                         dtype_code(x.scalar_type(), kOp), sizes, xs, eps, current_cuda_stream(x));
  TORCH_CHECK(err == nullptr, "vidops.", kOp, " (cuda) forward: ", err);
  return {pbar, enopr};
}

std::tuple<at::Tensor, at::Tensor> pwtp_bwd_cuda(const at::Tensor& grad_pbar_, const at::Tensor& grad_enopr_,
                                                 const at::Tensor& x, const at::Tensor& basis, int64_t D,
                                                 double eps) {
  check_args(x, basis, D);
  c10::DeviceGuard guard(x.device());
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const auto acc = acc_type(x);
  at::Tensor gp, ge;
  if (grad_pbar_.defined()) {
    TORCH_CHECK(grad_pbar_.sizes() == at::IntArrayRef({N, C, H, W}), "vidops.", kOp,
                " (cuda): grad_pbar must be (N, C, H, W) = ", at::IntArrayRef({N, C, H, W}), ", got ",
                grad_pbar_.sizes());
    TORCH_CHECK(grad_pbar_.device() == x.device(), "vidops.", kOp, " (cuda): grad_pbar is on ", grad_pbar_.device());
    gp = grad_pbar_.to(x.scalar_type());
  }
  if (grad_enopr_.defined()) {
    TORCH_CHECK(grad_enopr_.dim() == 1 && grad_enopr_.size(0) == N, "vidops.", kOp,
                " (cuda): grad_enopr must be (N,) = (", N, ",), got ", grad_enopr_.sizes());
    TORCH_CHECK(grad_enopr_.device() == x.device(), "vidops.", kOp, " (cuda): grad_enopr is on ",
                grad_enopr_.device());
    ge = grad_enopr_.to(acc);
  }
  auto gx = x.new_empty({N, C, T, H, W});
  auto gb = x.new_zeros({N, T * D, basis.size(2), basis.size(3)}, x.options().dtype(acc));
  if (gx.numel() == 0) return {gx.zero_(), gb.to(basis.scalar_type())};
  const auto b = basis.to(acc).contiguous();
  const int64_t sizes[8] = {N, C, T, H, W, b.size(2), b.size(3), D};
  const int64_t xs[5] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3), x.stride(4)};
  int64_t gps[4] = {0, 0, 0, 0};
  if (gp.defined())
    for (int i = 0; i < 4; ++i) gps[i] = gp.stride(i);
  const char* err = vidops_pwtp_bwd_cuda(gp.defined() ? gp.data_ptr() : nullptr, gps,
                                         ge.defined() ? ge.data_ptr() : nullptr, ge.defined() ? ge.stride(0) : 0,
                                         x.data_ptr(), b.data_ptr(), gx.data_ptr(), gb.data_ptr(),
                                         dtype_code(x.scalar_type(), kOp), sizes, xs, eps, current_cuda_stream(x));
  TORCH_CHECK(err == nullptr, "vidops.", kOp, " (cuda) backward: ", err);
  return {gx, gb.to(basis.scalar_type())};
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_pixelwise_temporal_projection_fwd", &vidops::pwtp_fwd_cuda);
  m.impl("_pixelwise_temporal_projection_bwd", &vidops::pwtp_bwd_cuda);
}
#endif  // VIDOPS_WITH_CUDA
