// vidops::_depthwise_conv3d_autograd: the eager call path of the depthwise 3-D convolution, with its
// autograd formula in C++.
//
//   y = _depthwise_conv3d_fwd(x, weight, bias, stride, padding)
//   (grad_x, grad_weight, grad_bias) = _depthwise_conv3d_bwd(grad_y, x, weight, bias, stride, padding,
//                                                           need_x, need_weight, need_bias)
//
// The public op vidops::depthwise_conv3d is a Python custom op: the form torch.compile, torch.export
// and ONNX see. In eager mode on the CPU every call of it crosses Python several times (the custom
// op, its autograd function, the backend call, the same again for the backward), and inside a
// network, where each layer's data has just evicted the interpreter from the caches, that costs
// 0.1-0.4 ms a call: as much as the kernel at X3D's 7^2 and 14^2 layers. The op declared in
// vidops/ops/depthwise_conv3d.py (`eager=` of vidops/_op.py's Op) takes this path for plain eager
// CPU calls after its argument checks and backend choice; it computes the same numbers as the
// custom op's cpu backend (the same kernels), and only the gradients that autograd asks for.
#include <torch/autograd.h>
#include <torch/library.h>

#include <ATen/core/dispatch/Dispatcher.h>

namespace vidops {
namespace dwc {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_fwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    c10::IntArrayRef stride, c10::IntArrayRef padding) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("vidops::_depthwise_conv3d_fwd", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               c10::IntArrayRef, c10::IntArrayRef)>();
  return op.call(x, weight, bias, stride, padding);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_bwd(const at::Tensor& grad_y, const at::Tensor& x,
                                                        const at::Tensor& weight,
                                                        const std::optional<at::Tensor>& bias,
                                                        c10::IntArrayRef stride, c10::IntArrayRef padding,
                                                        bool need_x, bool need_weight, bool need_bias) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("vidops::_depthwise_conv3d_bwd", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
              c10::IntArrayRef, c10::IntArrayRef, bool, bool, bool)>();
  return op.call(grad_y, x, weight, bias, stride, padding, need_x, need_weight, need_bias);
}

// Under create_graph the gradients must carry a graph node whose own backward is the custom op's
// rule (it has none: differentiating through it raises), not silently none; the custom op
// vidops::depthwise_conv3d_backward (registered from Python) gives exactly what the custom-op path gives.
std::tuple<at::Tensor, at::Tensor, at::Tensor> call_custom_op_bwd(const at::Tensor& grad_y, const at::Tensor& x,
                                                                  const at::Tensor& weight,
                                                                  const std::optional<at::Tensor>& bias,
                                                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                                                  bool need_x, bool need_weight, bool need_bias) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("vidops::depthwise_conv3d_backward", "");
  std::vector<c10::IValue> stack{grad_y,      x,     weight,    bias,
                                 stride.vec(), padding.vec(), need_x, need_weight,
                                 need_bias,   x.is_cpu() ? c10::IValue(std::string("cpu")) : c10::IValue()};
  op.callBoxed(&stack);
  return {stack[0].toTensor(), stack[1].toTensor(), stack[2].toTensor()};
}

struct DepthwiseConv3dFunction : public torch::autograd::Function<DepthwiseConv3dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                            c10::IntArrayRef padding) {
    ctx->save_for_backward({x, weight, bias.value_or(at::Tensor())});  // undefined: no bias
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    return call_fwd(x, weight, bias, stride, padding);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const bool has_bias = saved[2].defined();
    const std::optional<at::Tensor> bias = has_bias ? std::optional<at::Tensor>(saved[2]) : std::nullopt;
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const auto padding = ctx->saved_data["padding"].toIntVector();
    // The edges are the defined tensor inputs in order: x, weight, then bias when given.
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_weight = ctx->needs_input_grad(1);
    const bool need_bias = has_bias && ctx->needs_input_grad(2);
    // grads[0] is defined: a Function materialises a missing output gradient as zeros.
    auto [gx, gw, gb] = at::GradMode::is_enabled()
                            ? call_custom_op_bwd(grads[0], x, weight, bias, stride, padding, need_x, need_weight,
                                                 need_bias)
                            : call_bwd(grads[0], x, weight, bias, stride, padding, need_x, need_weight, need_bias);
    return {need_x ? gx : at::Tensor(), need_weight ? gw : at::Tensor(), need_bias ? gb : at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

at::Tensor depthwise_conv3d_autograd(const at::Tensor& x, const at::Tensor& weight,
                                     const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                     c10::IntArrayRef padding) {
  return DepthwiseConv3dFunction::apply(x, weight, bias, stride, padding);
}

}  // namespace
}  // namespace dwc
}  // namespace vidops

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def(
      "_depthwise_conv3d_autograd(Tensor x, Tensor weight, Tensor? bias, int[] stride, int[] padding) -> "
      "Tensor");
}

TORCH_LIBRARY_IMPL(vidops, CompositeImplicitAutograd, m) {
  m.impl("_depthwise_conv3d_autograd", &vidops::dwc::depthwise_conv3d_autograd);
}
