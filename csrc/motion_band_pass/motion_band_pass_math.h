// Per-element math specific to the motion band-pass operator (its backward's ownership and
// reflect-fold index math, the LoG kernel), shared by its CPU kernels (g++) and CUDA kernels
// (nvcc) (operators.md §1.1, 1.2). The index math it shares with busy_quiet: common/band_pass_math.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/band_pass_math.h"
#include "common/host_device.h"

namespace vidops {
namespace mbp {

// Last output frame whose taps read input frame f (so f's gradient is complete once the backward
// has visited it). Taps of output frame t read t*s - p_t + {0,1,2}; under "replicate" frame T-1
// also receives the clamped taps past the end, which only the last output frame has.
VIDOPS_HD int64_t last_reader(int64_t f, int stride, int mode, int64_t T, int64_t T_out) {
  int64_t t = (f + temporal_pad(mode)) / stride;
  if (mode == kReplicate && f == T - 1) t = T_out - 1;
  return t < T_out - 1 ? t : T_out - 1;
}

// Raw Laplacian of Gaussian at squared radius r2: -1/(pi s^4) (1 - r2/(2 s^2)) exp(-r2/(2 s^2)).
// The normalised kernel divides by the sum over the k x k grid (vidops.log_kernel).
template <typename T>
VIDOPS_HD T log_raw(T r2, T sigma) {
  const T pi = T(3.14159265358979323846);
  const T s2 = sigma * sigma;
  return -T(1) / (pi * s2 * s2) * (T(1) - r2 / (T(2) * s2)) * std::exp(-r2 / (T(2) * s2));
}


// The extended coordinates x in [-r, n-1+r] with spatial_source(x) == p, for 0 <= p < n, one by
// one: which = 0 is p itself; under "reflect" (single reflection, n > r) which = 1 is -p when
// 1 <= p <= r, and which = 2 is 2(n-1)-p when n-1-r <= p <= n-2. Returns false (x untouched) when
// that preimage does not exist.
//
// The adjoint of the padded k x k correlation out[i] = sum_a K[a] Y[src(i + a - r)] (per axis) is
//     gY[p] = sum_{x in preimages(p)} sum_i G[i] K[x - i + r]     (K[a] = 0 outside [0, k)),
// and every i with G[i] != 0 and |x - i| <= r lies in [p - r, p + r]: a tile of G with a halo of r
// holds everything the gather of its own pixels reads. x = p gives the plain flipped-kernel
// stencil; the other preimages are the reflect borders folded back.
VIDOPS_HD bool reflect_preimage(int64_t p, int64_t n, int r, int mode, int which, int64_t& x) {
  if (which == 0) {
    x = p;
    return true;
  }
  if (mode != kReflect) return false;
  if (which == 1 && p >= 1 && p <= r) {
    x = -p;
    return true;
  }
  if (which == 2 && p <= n - 2 && p >= n - 1 - r) {
    x = 2 * (n - 1) - p;
    return true;
  }
  return false;
}

// True when p has a preimage besides itself (reflect_preimage 1 or 2): a border pixel whose
// adjoint needs the fold.
VIDOPS_HD bool reflect_folds_into(int64_t p, int64_t n, int r, int mode) {
  int64_t x;
  return reflect_preimage(p, n, r, mode, 1, x) || reflect_preimage(p, n, r, mode, 2, x);
}

// A range [lo, hi] of output frames that contains every t with temporal_source(t, j, ...) == f
// for some tap j (callers test each (t, j)). Unclamped taps give t = (f + p_t - j) / s; under
// "replicate" frame 0 is also read by t = 0 and frame T-1 by the last output frame
// (T_out - 1 = (T - 1) / s <= (T - 1 + p_t) / s), both inside. Empty (lo > hi) when none can.
VIDOPS_HD void temporal_reader_bounds(int64_t f, int stride, int mode, int64_t T_out, int64_t& lo, int64_t& hi) {
  const int64_t p = temporal_pad(mode);
  lo = (f + p - 2 <= 0) ? 0 : (f + p - 2) / stride;
  hi = (f + p) / stride;
  if (hi > T_out - 1) hi = T_out - 1;
}

}  // namespace mbp
}  // namespace vidops
