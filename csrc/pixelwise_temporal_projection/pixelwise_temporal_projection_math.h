// Per-pixel math specific to the pixel-wise temporal projection, shared by its CPU kernels (g++) and
// CUDA kernels (nvcc): the bilinear source index and weight of the basis upsampling (align_corners=False,
// size-based, as F.interpolate(size=)). The least-squares math it shares with temporal_squeeze:
// common/subspace_math.h.
#pragma once
#include <cstdint>

#include "common/host_device.h"
#include "common/subspace_math.h"

namespace vidops {
namespace pwtp {

// Source row/column of output index `dst` when an axis of `in_size` is resized to `out_size`
// (bilinear, align_corners=False, scale = in/out): src = (dst + 0.5) * in/out - 0.5 clamped at 0,
// i0 = floor(src), i1 = i0 + 1 clamped to the last index, l1 = src - i0 (weight of i1).
// Identity resize (in == out) gives i0 = i1 = dst, l1 = 0, as PyTorch's kernels do.
template <typename S>
VIDOPS_HD void bilinear_source(int64_t dst, int64_t in_size, int64_t out_size, int64_t& i0, int64_t& i1,
                               S& l1) {
  if (in_size == out_size) {
    i0 = i1 = dst;
    l1 = S(0);
    return;
  }
  const S scale = S(in_size) / S(out_size);
  S src = (S(dst) + S(0.5)) * scale - S(0.5);
  if (src < S(0)) src = S(0);
  int64_t i = static_cast<int64_t>(src);
  if (i > in_size - 1) i = in_size - 1;
  S l = src - S(i);
  l1 = l < S(0) ? S(0) : (l > S(1) ? S(1) : l);
  i0 = i;
  i1 = i + (i < in_size - 1 ? 1 : 0);
}

}  // namespace pwtp
}  // namespace vidops
