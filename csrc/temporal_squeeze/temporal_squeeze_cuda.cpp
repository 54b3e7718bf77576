// CUDA dispatch of the temporal squeeze pooling kernels (schemas in temporal_squeeze.cpp); the
// kernels are in temporal_squeeze_kernel.cu (runtime only).
#ifdef VIDOPS_WITH_CUDA
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <tuple>

#include "common/cuda_stream.h"
#include "common/dtype_code.h"
#include "temporal_squeeze/temporal_squeeze_kernel.h"

namespace vidops {
namespace {

constexpr const char* kOp = "temporal_squeeze";

c10::ScalarType acc_type(const at::Tensor& x) {
  return x.scalar_type() == c10::ScalarType::Double ? c10::ScalarType::Double : c10::ScalarType::Float;
}

void check_args(const at::Tensor& x, const at::Tensor& basis) {
  TORCH_CHECK(x.is_cuda() && basis.is_cuda(), "vidops.", kOp, " (cuda): x and basis must be CUDA tensors, got ",
              x.device(), " and ", basis.device());
  TORCH_CHECK(x.device() == basis.device(), "vidops.", kOp, " (cuda): x is on ", x.device(), " but basis is on ",
              basis.device());
  TORCH_CHECK(x.dim() == 5, "vidops.", kOp, " (cuda): x must be (N, C, K, H, W), got ", x.sizes());
  TORCH_CHECK(basis.dim() == 3 && basis.size(0) == x.size(0) && basis.size(1) == x.size(2), "vidops.", kOp,
              " (cuda): basis must be (N, K, D) = (", x.size(0), ", ", x.size(2), ", D), got ", basis.sizes());
  TORCH_CHECK(basis.size(2) >= 1 && basis.size(2) <= 4, "vidops.", kOp, " (cuda): D must be in 1..4, got ",
              basis.size(2));
  (void)dtype_code(x.scalar_type(), kOp);
}

std::tuple<at::Tensor, at::Tensor> tsp_fwd_cuda(const at::Tensor& x, const at::Tensor& basis, double eps) {
  check_args(x, basis);
  c10::DeviceGuard guard(x.device());
  const int64_t N = x.size(0), C = x.size(1), K = x.size(2), H = x.size(3), W = x.size(4), D = basis.size(2);
  const auto acc = acc_type(x);
  auto y = x.new_empty({N, C, D, H, W});
  auto l = x.new_empty({N}, x.options().dtype(acc));
  if (N == 0) return {y, l};
  const auto b = basis.to(acc).contiguous();
  const int64_t sizes[6] = {N, C, K, H, W, D};
  const int64_t xs[5] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3), x.stride(4)};
  auto ws = x.new_empty({vidops_tsp_workspace(sizes, 0)}, x.options().dtype(acc));
  const char* err = vidops_tsp_fwd_cuda(x.data_ptr(), b.data_ptr(), y.data_ptr(), l.data_ptr(), ws.data_ptr(),
                                        dtype_code(x.scalar_type(), kOp), sizes, xs, eps, current_cuda_stream(x));
  TORCH_CHECK(err == nullptr, "vidops.", kOp, " (cuda) forward: ", err);
  return {y, l};
}

std::tuple<at::Tensor, at::Tensor> tsp_bwd_cuda(const at::Tensor& grad_y_, const at::Tensor& grad_l_,
                                                const at::Tensor& x, const at::Tensor& basis, double eps) {
  check_args(x, basis);
  c10::DeviceGuard guard(x.device());
  const int64_t N = x.size(0), C = x.size(1), K = x.size(2), H = x.size(3), W = x.size(4), D = basis.size(2);
  const auto acc = acc_type(x);
  at::Tensor gy, gl;
  if (grad_y_.defined()) {
    TORCH_CHECK(grad_y_.sizes() == at::IntArrayRef({N, C, D, H, W}), "vidops.", kOp, " (cuda): grad_y must be ",
                at::IntArrayRef({N, C, D, H, W}), ", got ", grad_y_.sizes());
    TORCH_CHECK(grad_y_.device() == x.device(), "vidops.", kOp, " (cuda): grad_y is on ", grad_y_.device());
    gy = grad_y_.to(x.scalar_type());
  }
  if (grad_l_.defined()) {
    TORCH_CHECK(grad_l_.dim() == 1 && grad_l_.size(0) == N, "vidops.", kOp, " (cuda): grad_l must be (", N,
                ",), got ", grad_l_.sizes());
    TORCH_CHECK(grad_l_.device() == x.device(), "vidops.", kOp, " (cuda): grad_l is on ", grad_l_.device());
    gl = grad_l_.to(acc);
  }
  auto gx = x.new_empty({N, C, K, H, W});
  auto gb = x.new_zeros({N, K, D}, x.options().dtype(acc));
  if (N == 0) return {gx, gb.to(basis.scalar_type())};
  const auto b = basis.to(acc).contiguous();
  const int64_t sizes[6] = {N, C, K, H, W, D};
  const int64_t xs[5] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3), x.stride(4)};
  int64_t gys[5] = {0, 0, 0, 0, 0};
  if (gy.defined())
    for (int i = 0; i < 5; ++i) gys[i] = gy.stride(i);
  auto ws = x.new_empty({vidops_tsp_workspace(sizes, 1)}, x.options().dtype(acc));
  const char* err = vidops_tsp_bwd_cuda(gy.defined() ? gy.data_ptr() : nullptr, gys,
                                        gl.defined() ? gl.data_ptr() : nullptr, gl.defined() ? gl.stride(0) : 0,
                                        x.data_ptr(), b.data_ptr(), gx.data_ptr(), gb.data_ptr(), ws.data_ptr(),
                                        dtype_code(x.scalar_type(), kOp), sizes, xs, eps, current_cuda_stream(x));
  TORCH_CHECK(err == nullptr, "vidops.", kOp, " (cuda) backward: ", err);
  return {gx, gb.to(basis.scalar_type())};
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_temporal_squeeze_fwd", &vidops::tsp_fwd_cuda);
  m.impl("_temporal_squeeze_bwd", &vidops::tsp_bwd_cuda);
}
#endif  // VIDOPS_WITH_CUDA
