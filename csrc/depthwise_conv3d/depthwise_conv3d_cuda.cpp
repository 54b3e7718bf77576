// CUDA glue of the depthwise 3-D convolution: checks, allocation (y and grad_x in x's layout:
// channels_last_3d for a channels_last_3d x, else contiguous), the weight and bias in the
// accumulation dtype, the weight-gradient workspace, the current stream, and the calls of the
// runtime-only launchers in depthwise_conv3d_kernel.cu. x and grad_y are read through their strides:
// no layout copies.
#ifdef VIDOPS_WITH_CUDA
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "common/cuda_stream.h"
#include "common/dtype_code.h"
#include "depthwise_conv3d/depthwise_conv3d_cuda.h"

namespace vidops {
namespace dwc {
namespace {

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

at::MemoryFormat layout_of(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast3d) && !x.is_contiguous() ? at::MemoryFormat::ChannelsLast3d
                                                                                 : at::MemoryFormat::Contiguous;
}

void set_strides(int64_t* dst, const at::Tensor& t) {
  for (int i = 0; i < 5; ++i) dst[i] = t.stride(i);
}

CudaProblem make_problem(const char* fn, const at::Tensor& x, const at::Tensor& w,
                         const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding) {
  TORCH_CHECK(x.dim() == 5, "vidops::", fn, ": x must be 5-D (N, C, T, H, W), got shape ", x.sizes());
  TORCH_CHECK(w.dim() == 4, "vidops::", fn, ": weight must be (C, kt, kh, kw), got shape ", w.sizes());
  TORCH_CHECK(w.size(0) == x.size(1), "vidops::", fn, ": weight has ", w.size(0), " channels but x has ", x.size(1));
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3, "vidops::", fn, ": stride and padding need 3 entries, got ",
              stride, " and ", padding);
  TORCH_CHECK(x.is_cuda() && w.device() == x.device(), "vidops::", fn, ": CUDA kernel called with ", x.device(),
              " and ", w.device(), " tensors");
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1), "vidops::", fn, ": bias must be (C,), got shape ",
                bias->sizes());
    TORCH_CHECK(bias->device() == x.device(), "vidops::", fn, ": bias is on ", bias->device());
  }
  CudaProblem p{};
  p.dtype = dtype_code(x.scalar_type(), "depthwise_conv3d");
  p.kt = static_cast<int32_t>(w.size(1));
  p.kh = static_cast<int32_t>(w.size(2));
  p.kw = static_cast<int32_t>(w.size(3));
  p.st = static_cast<int32_t>(stride[0]);
  p.sh = static_cast<int32_t>(stride[1]);
  p.sw = static_cast<int32_t>(stride[2]);
  p.pt = static_cast<int32_t>(padding[0]);
  p.ph = static_cast<int32_t>(padding[1]);
  p.pw = static_cast<int32_t>(padding[2]);
  TORCH_CHECK(p.kt >= 1 && p.kh >= 1 && p.kw >= 1, "vidops::", fn, ": kernel sizes must be >= 1, got ", w.sizes());
  TORCH_CHECK(p.st >= 1 && p.sh >= 1 && p.sw >= 1, "vidops::", fn, ": stride must be >= 1, got ", stride);
  TORCH_CHECK(p.pt >= 0 && p.ph >= 0 && p.pw >= 0, "vidops::", fn, ": padding must be >= 0, got ", padding);
  p.N = x.size(0);
  p.C = x.size(1);
  p.T = x.size(2);
  p.H = x.size(3);
  p.W = x.size(4);
  TORCH_CHECK((p.T == 0 || p.T + 2 * p.pt >= p.kt) && (p.H == 0 || p.H + 2 * p.ph >= p.kh) &&
                  (p.W == 0 || p.W + 2 * p.pw >= p.kw),
              "vidops::", fn, ": padding ", padding, " leaves no output for x of shape ", x.sizes(), " and kernel ",
              w.sizes());
  // (L + 2p - k) / s + 1 per axis, an empty axis stays empty (the op's rule)
  p.To = p.T > 0 ? (p.T + 2 * p.pt - p.kt) / p.st + 1 : 0;
  p.Ho = p.H > 0 ? (p.H + 2 * p.ph - p.kh) / p.sh + 1 : 0;
  p.Wo = p.W > 0 ? (p.W + 2 * p.pw - p.kw) / p.sw + 1 : 0;
  set_strides(p.x_strides, x);
  return p;
}

void check(const char* err, const char* fn) {
  TORCH_CHECK(err == nullptr, "vidops::", fn, " (cuda): ", err ? err : "");
}

at::Tensor weight_acc(const at::Tensor& weight, at::ScalarType acc) {
  return weight.reshape({weight.size(0), -1}).to(acc).contiguous();
}

at::Tensor fwd_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    at::IntArrayRef stride, at::IntArrayRef padding) {
  const char* fn = "_depthwise_conv3d_fwd";
  CudaProblem p = make_problem(fn, x, weight, bias, stride, padding);
  c10::DeviceGuard guard(x.device());
  auto y = at::empty({p.N, p.C, p.To, p.Ho, p.Wo}, x.options().memory_format(layout_of(x)));
  if (y.numel() == 0) return y;
  set_strides(p.y_strides, y);
  const auto acc = acc_type(x.scalar_type());
  auto w = weight_acc(weight, acc);
  at::Tensor b = bias.has_value() ? bias->to(acc).contiguous() : at::Tensor();
  check(vidops_dwc_forward_cuda(&p, x.const_data_ptr(), w.const_data_ptr(), b.defined() ? b.const_data_ptr() : nullptr,
                                y.mutable_data_ptr(), current_cuda_stream(x)),
        fn);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_cuda(const at::Tensor& grad_y, const at::Tensor& x,
                                                        const at::Tensor& weight,
                                                        const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                                        at::IntArrayRef padding, bool need_x, bool need_weight,
                                                        bool need_bias) {
  const char* fn = "_depthwise_conv3d_bwd";
  CudaProblem p = make_problem(fn, x, weight, bias, stride, padding);
  TORCH_CHECK(grad_y.dim() == 5 && grad_y.size(0) == p.N && grad_y.size(1) == p.C && grad_y.size(2) == p.To &&
                  grad_y.size(3) == p.Ho && grad_y.size(4) == p.Wo,
              "vidops::", fn, ": grad_y has shape ", grad_y.sizes(), " but the output has (", p.N, ", ", p.C, ", ",
              p.To, ", ", p.Ho, ", ", p.Wo, ")");
  TORCH_CHECK(grad_y.scalar_type() == x.scalar_type(), "vidops::", fn, ": grad_y has dtype ", grad_y.scalar_type(),
              " but x has ", x.scalar_type());
  TORCH_CHECK(grad_y.device() == x.device(), "vidops::", fn, ": grad_y is on ", grad_y.device());
  c10::DeviceGuard guard(x.device());
  set_strides(p.y_strides, grad_y);
  const auto acc = acc_type(x.scalar_type());
  void* stream = current_cuda_stream(x);

  at::Tensor gx = at::empty(x.sizes(), x.options().memory_format(layout_of(x)));
  set_strides(p.gx_strides, gx);
  at::Tensor w = weight_acc(weight, acc);
  if (!need_x || gx.numel() == 0 || grad_y.numel() == 0) {
    gx.zero_();
  } else {
    check(vidops_dwc_grad_x_cuda(&p, grad_y.const_data_ptr(), w.const_data_ptr(), gx.mutable_data_ptr(), stream), fn);
  }

  const bool want_b = need_bias && bias.has_value();
  at::Tensor gw_acc, gb_acc;
  if ((need_weight || want_b) && grad_y.numel() > 0) {
    if (need_weight) gw_acc = at::empty({p.C, static_cast<int64_t>(p.kt) * p.kh * p.kw}, x.options().dtype(acc));
    if (want_b) gb_acc = at::empty({p.C}, x.options().dtype(acc));
    const int64_t bytes = vidops_dwc_wgrad_workspace_bytes(&p);
    auto ws = at::empty({bytes > 0 ? bytes : 1}, x.options().dtype(at::kByte));
    check(vidops_dwc_wgrad_cuda(&p, grad_y.const_data_ptr(), x.const_data_ptr(),
                                gw_acc.defined() ? gw_acc.mutable_data_ptr() : nullptr,
                                gb_acc.defined() ? gb_acc.mutable_data_ptr() : nullptr, ws.mutable_data_ptr(), bytes,
                                stream),
          fn);
  }
  at::Tensor gw = gw_acc.defined()
                      ? gw_acc.reshape(weight.sizes()).to(weight.scalar_type()).contiguous()
                      : at::zeros(weight.sizes(), weight.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor gb;
  if (!bias.has_value())
    gb = x.new_empty({0});
  else
    gb = gb_acc.defined() ? gb_acc.to(bias->scalar_type()) : at::zeros({p.C}, bias->options());
  return {gx, gw, gb};
}

}  // namespace
}  // namespace dwc
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CUDA, m) {
  m.impl("_depthwise_conv3d_fwd", &vidops::dwc::fwd_cuda);
  m.impl("_depthwise_conv3d_bwd", &vidops::dwc::bwd_cuda);
}
#endif  // VIDOPS_WITH_CUDA
