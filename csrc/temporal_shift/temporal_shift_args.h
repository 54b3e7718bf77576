// Argument checks and output allocation shared by the CPU and CUDA glue of the temporal shift
// (the Python op checks first; these keep a direct call of the kernels from misbehaving).
#pragma once
#include <ATen/ATen.h>

namespace vidops {
namespace tshift {

inline void check_args(const at::Tensor& x, int64_t num_segments, int64_t fold_div, const char* backend) {
  TORCH_CHECK(x.dim() == 4, "vidops.temporal_shift (", backend, "): x must be 4-D (N*T, C, H, W), got shape ",
              x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "vidops.temporal_shift (", backend,
              "): x must be a floating tensor, got ", x.scalar_type());
  TORCH_CHECK(num_segments >= 1, "vidops.temporal_shift (", backend, "): num_segments must be >= 1, got ",
              num_segments);
  TORCH_CHECK(fold_div >= 1, "vidops.temporal_shift (", backend, "): fold_div must be >= 1, got ", fold_div);
  TORCH_CHECK(x.size(0) % num_segments == 0, "vidops.temporal_shift (", backend, "): x.shape[0]=", x.size(0),
              " must be a multiple of num_segments=", num_segments);
  TORCH_CHECK(x.size(1) >= fold_div, "vidops.temporal_shift (", backend, "): x must have C >= fold_div=", fold_div,
              " channels, got C=", x.size(1));
}

// The output keeps a channels_last input channels_last (the conv after the shift reads it so);
// every other input gives a contiguous output. Must match the Python op's fake.
inline bool output_is_channels_last(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

inline at::Tensor new_output(const at::Tensor& x) {
  return at::empty(x.sizes(), x.options().memory_format(output_is_channels_last(x) ? at::MemoryFormat::ChannelsLast
                                                                                     : at::MemoryFormat::Contiguous));
}

}  // namespace tshift
}  // namespace vidops
