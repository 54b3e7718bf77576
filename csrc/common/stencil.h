// Index helpers of zero-padded "same" stencils (odd kernels, stride 1), shared by the depthwise
// 3-D convolution and usable by any CPU or CUDA stencil: which input index a tap reads and which
// taps of an output read inside the input. Per axis: output o, tap j in [0, k), padding p = (k-1)/2,
// input index i = o + j - p, valid when 0 <= i < n.
#pragma once
#include <cstdint>

#include "common/host_device.h"

namespace vidops {
namespace stencil {

// (k - 1) / 2: the zero padding that keeps the size of an axis for an odd kernel.
VIDOPS_HD int same_pad(int k) { return (k - 1) / 2; }

// Input index read by tap j of output o, or -1 when it falls in the zero padding.
VIDOPS_HD int64_t zero_pad_source(int64_t o, int j, int p, int64_t n) {
  const int64_t i = o + j - p;
  return (i >= 0 && i < n) ? i : -1;
}

// The taps [j0, j1) of output o that read inside an axis of length n (empty when j0 >= j1).
VIDOPS_HD void valid_taps(int64_t o, int k, int p, int64_t n, int& j0, int& j1) {
  const int64_t lo = p - o;          // first j with o + j - p >= 0
  const int64_t hi = n + p - o;      // first j with o + j - p >= n
  j0 = lo > 0 ? static_cast<int>(lo < k ? lo : k) : 0;
  j1 = hi < k ? static_cast<int>(hi > 0 ? hi : 0) : k;
}

// Tap of the flipped kernel: the adjoint of a zero-padded "same" correlation with kernel w is the
// same correlation with w reversed on every axis (odd k, so the padding is symmetric).
VIDOPS_HD int flipped_tap(int j, int k) { return k - 1 - j; }

}  // namespace stencil
}  // namespace vidops
