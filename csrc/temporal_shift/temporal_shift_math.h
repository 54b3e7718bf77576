// The frame each channel of the temporal shift reads, shared by the CPU and CUDA kernels.
//
// x (N*T, C, H, W) viewed as (N, T, C, H, W), fold = C / fold_div:
//   forward:  out[n, t, c] = x[n, t + d(c), c],   d = +1 on [0, fold), -1 on [fold, 2 fold), 0 after,
//   backward: the mirror shift, d negated (the gradient goes back to the frame it was read from);
// a source frame outside [0, T) gives 0.
#pragma once
#include <cstdint>

#include "common/host_device.h"

namespace vidops {
namespace tshift {

VIDOPS_HD int64_t frame_offset(int64_t c, int64_t fold, bool backward) {
  const int64_t d = c < fold ? 1 : (c < 2 * fold ? -1 : 0);
  return backward ? -d : d;
}

}  // namespace tshift
}  // namespace vidops
