// Per-element math of the Busy/Quiet split (operators.md §1.3), shared by the CUDA kernel (nvcc) and the
// CPU kernel (g++): the quiet modes and the bilinear resize of quiet.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace vidops {
namespace bq {

enum QuietMode : int { kFirst = 0, kMeanMinusBusy = 1 };

// Output length of the resize: floor(n * scale), as F.interpolate(scale_factor=scale) sizes it
// (and vidops.reference.busy_quiet.quiet_output_size); scale <= 0 means no resize.
VIDOPS_HD int64_t resized_size(int64_t n, double scale) {
  return scale > 0 ? static_cast<int64_t>(std::floor(static_cast<double>(n) * scale)) : n;
}

// a * b + c rounded once (PyTorch's kernels get their coordinate math contracted this way).
template <typename T>
VIDOPS_HD T fused_mul_add(T a, T b, T c) {
#ifdef __CUDA_ARCH__
  return fma(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// Bilinear resize of an axis of n source samples to n_out by a given scale factor,
// align_corners=False, no antialias, as PyTorch does it when scale_factor is passed:
// src = max((dst + 0.5) / scale - 0.5, 0) with 1/scale computed in double and rounded to the
// compute type T (one fused multiply-add, as PyTorch's FMA builds compute it); i0 = min(floor(src), n-1), i1 = i0 + (i0 < n-1), weight of i1 =
// clamp(src - i0, 0, 1); an axis whose size does not change is copied whatever the scale.
// Output size floor(n * scale) (quiet_size).
template <typename T>
VIDOPS_HD void bilinear_source(int64_t dst, T inv_scale, int64_t n, int64_t n_out, int64_t& i0, int64_t& i1,
                               T& w1) {
  if (n_out == n) {
    i0 = i1 = dst, w1 = T(0);
    return;
  }
  T src = fused_mul_add(inv_scale, static_cast<T>(dst) + T(0.5), T(-0.5));
  if (src < T(0)) src = T(0);
  i0 = static_cast<int64_t>(src);
  if (i0 > n - 1) i0 = n - 1;
  i1 = i0 + (i0 < n - 1 ? 1 : 0);
  w1 = src - static_cast<T>(i0);
  w1 = w1 < T(0) ? T(0) : (w1 > T(1) ? T(1) : w1);
}

VIDOPS_HD int64_t quiet_size(int64_t n, double scale) {
  return scale < 0 ? n : static_cast<int64_t>(floor(static_cast<double>(n) * scale));
}

// 1-D bilinear taps of output index dst for a resize by `scale` of an axis of length n,
// align_corners=False, no antialias, as F.interpolate(scale_factor=scale) computes them
// (PyTorch's area_pixel_compute_source_index with the scale 1/scale_factor), in double:
//   src = max((1 / scale) * (dst + 0.5) - 0.5, 0); i0 = min(floor(src), n - 1);
//   i1 = min(i0 + 1, n - 1); value = (1 - w1) * in[i0] + w1 * in[i1], w1 = src - i0.
// vidops.reference.busy_quiet.bilinear_matrix writes the same rule as (dst + 0.5) / scale - 0.5.
// src < n always (dst < floor(n * scale)), so w1 is in [0, 1). Note that w1 carries the rounding
// error of src, about eps * n in absolute terms, whichever way src is computed.
VIDOPS_HD void bilinear_taps(int64_t dst, double scale, int64_t n, int64_t& i0, int64_t& i1, double& w1) {
  const double inv_scale = 1.0 / scale;
  double src = inv_scale * (static_cast<double>(dst) + 0.5) - 0.5;
  if (src < 0) src = 0;
  i0 = static_cast<int64_t>(std::floor(src));
  if (i0 > n - 1) i0 = n - 1;
  i1 = i0 < n - 1 ? i0 + 1 : n - 1;
  w1 = src - static_cast<double>(i0);
}

// The first output index in [0, n_out) whose i0 (bilinear_taps) is >= p, or n_out when none is.
// i0 is non-decreasing in dst, so the outputs whose i0 falls in [p0, p1) are exactly
// [first_output_reading(p0), first_output_reading(p1)): a tiled kernel computes each output once,
// in the tile that holds its top-left source pixel.
VIDOPS_HD int64_t first_output_reading(int64_t p, double scale, int64_t n_in, int64_t n_out) {
  int64_t lo = 0, hi = n_out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    int64_t i0, i1;
    double w1;
    bilinear_taps(mid, scale, n_in, i0, i1, w1);
    if (i0 >= p) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

}  // namespace bq
}  // namespace vidops
