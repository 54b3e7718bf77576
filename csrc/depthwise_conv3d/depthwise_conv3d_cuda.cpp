// CUDA glue of the depthwise 3-D convolution: checks, contiguous copies, allocation, the current
// stream, and the calls of the runtime-only launchers in depthwise_conv3d_kernel.cu.
#ifdef VIDOPS_WITH_CUDA
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "common/cuda_stream.h"
#include "depthwise_conv3d/depthwise_conv3d_math.h"

extern "C" const char* vidops_dwc_fwd_cuda(const void* x, const void* w, void* y, int dtype, int64_t N,
                                           int64_t C, int64_t T, int64_t H, int64_t W, int kt, int kh, int kw,
                                           bool flip, void* stream);
extern "C" const char* vidops_dwc_wgrad_cuda(const void* g, const void* x, void* partial, void* gw, int dtype,
                                             int64_t N, int64_t C, int64_t T, int64_t H, int64_t W, int kt,
                                             int kh, int kw, int64_t chunks, void* stream);

namespace vidops {
namespace dwc {
namespace {

constexpr int64_t kMinWgradBlocks = 512;  // enough (channel, chunk) blocks to fill a GPU

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return 0;
    case at::kDouble: return 1;
    case at::kHalf: return 2;
    case at::kBFloat16: return 3;
    default: TORCH_CHECK(false, "vidops::depthwise_conv3d (cuda): unsupported dtype ", t);
  }
  return -1;
}

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

Shape check_and_shape(const char* fn, const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.dim() == 5, "vidops::", fn, ": x must be 5-D (N, C, T, H, W), got shape ", x.sizes());
  TORCH_CHECK(w.dim() == 4, "vidops::", fn, ": weight must be (C, kt, kh, kw), got shape ", w.sizes());
  Shape d{x.size(0), x.size(1), x.size(2), x.size(3), x.size(4), static_cast<int>(w.size(1)),
          static_cast<int>(w.size(2)), static_cast<int>(w.size(3))};
  TORCH_CHECK(w.size(0) == d.C, "vidops::", fn, ": weight has ", w.size(0), " channels but x has ", d.C);
  TORCH_CHECK(d.kt % 2 == 1 && d.kh % 2 == 1 && d.kw % 2 == 1, "vidops::", fn,
              ": kernel sizes must be odd, got ", d.kt, "x", d.kh, "x", d.kw);
  TORCH_CHECK(x.is_cuda() && w.device() == x.device(), "vidops::", fn, ": CUDA kernel called with ",
              x.device(), " and ", w.device(), " tensors");
  return d;
}

void check(const char* err, const char* fn) {
  TORCH_CHECK(err == nullptr, "vidops::", fn, " (cuda): ", err ? err : "");
}

at::Tensor conv_cuda(const at::Tensor& x, const at::Tensor& weight, bool flip, const char* fn) {
  const Shape d = check_and_shape(fn, x, weight);
  c10::DeviceGuard guard(x.device());
  auto xc = x.contiguous();
  auto wc = weight.to(acc_type(x.scalar_type())).contiguous();
  auto y = at::empty(x.sizes(), xc.options().memory_format(at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  check(vidops_dwc_fwd_cuda(xc.const_data_ptr(), wc.const_data_ptr(), y.mutable_data_ptr(),
                            dtype_code(x.scalar_type()), d.N, d.C, d.T, d.H, d.W, d.kt, d.kh, d.kw, flip,
                            current_cuda_stream(x)),
        fn);
  return y;
}

// Until the CUDA kernels take them: stride 1, "same" padding, no bias (the Python op's cuda
// `supports` rule refuses the rest with its reason before this is reached).
void check_stride1_same(const char* fn, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding) {
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3 && weight.dim() == 4, "vidops::", fn,
              ": stride and padding must have 3 entries and weight must be (C, kt, kh, kw)");
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK(stride[i] == 1 && padding[i] == (weight.size(i + 1) - 1) / 2, "vidops::", fn,
                " (cuda): only stride 1 and 'same' padding are implemented, got stride ", stride,
                " and padding ", padding);
  }
  TORCH_CHECK(!bias.has_value(), "vidops::", fn, " (cuda): bias is not implemented yet");
}

at::Tensor fwd_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    at::IntArrayRef stride, at::IntArrayRef padding) {
  check_stride1_same("_depthwise_conv3d_fwd", weight, bias, stride, padding);
  return conv_cuda(x, weight, false, "_depthwise_conv3d_fwd");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                        const at::Tensor& weight,
                                                        const std::optional<at::Tensor>& bias,
                                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                                        bool compute_grad_x, bool compute_grad_weight,
                                                        bool /*compute_grad_bias*/) {
  const char* fn = "_depthwise_conv3d_bwd";
  check_stride1_same(fn, weight, bias, stride, padding);
  const Shape d = check_and_shape(fn, x, weight);
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "vidops::", fn, ": grad_out has shape ", grad_out.sizes(),
              " but x has shape ", x.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "vidops::", fn, ": grad_out has dtype ",
              grad_out.scalar_type(), " but x has ", x.scalar_type());
  c10::DeviceGuard guard(x.device());
  at::Tensor gx = compute_grad_x ? conv_cuda(grad_out, weight, true, fn)
                                 : at::zeros(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor gw;
  const auto at_acc = acc_type(x.scalar_type());
  if (compute_grad_weight && x.numel() > 0) {
    auto gc = grad_out.contiguous();
    auto xc = x.contiguous();
    const int64_t chunks = wgrad_chunks(d.C, d.N * d.T, kMinWgradBlocks);
    auto partial = at::empty({d.C, chunks, d.taps()}, x.options().dtype(at_acc));
    auto gwa = at::empty({d.C, d.taps()}, x.options().dtype(at_acc));
    check(vidops_dwc_wgrad_cuda(gc.const_data_ptr(), xc.const_data_ptr(), partial.mutable_data_ptr(),
                                gwa.mutable_data_ptr(), dtype_code(x.scalar_type()), d.N, d.C, d.T, d.H, d.W,
                                d.kt, d.kh, d.kw, chunks, current_cuda_stream(x)),
          fn);
    gw = gwa.reshape(weight.sizes()).to(weight.scalar_type());
  } else {
    gw = at::zeros(weight.sizes(), weight.options().memory_format(at::MemoryFormat::Contiguous));
  }
  return {gx, gw, x.new_empty({0})};
}

}  // namespace
}  // namespace dwc
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_depthwise_conv3d_fwd", &vidops::dwc::fwd_cuda);
  m.impl("_depthwise_conv3d_bwd", &vidops::dwc::bwd_cuda);
}
#endif  // VIDOPS_WITH_CUDA
