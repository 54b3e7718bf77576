// Per-element math of the motion band-pass family, shared by the CPU kernels (g++) and the CUDA
// kernels (nvcc), so the CPU tests exercise the index arithmetic the GPU runs (operators.md §1.1, 1.2).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace vidops {
namespace mbp {

enum SpatialPad : int { kReflect = 0, kSpatialZeros = 1 };
enum TemporalPad : int { kValid = 0, kReplicate = 1, kTemporalZeros = 2 };

// Temporal padding p_t: 0 for "valid", 1 for "replicate" and "zeros".
VIDOPS_HD int temporal_pad(int mode) { return mode == kValid ? 0 : 1; }

// T_out = (T + 2 p_t - 3) / s + 1 (3 temporal taps).
VIDOPS_HD int64_t output_frames(int64_t T, int stride, int mode) {
  return (T + 2 * temporal_pad(mode) - 3) / stride + 1;
}

// Input frame read by tap j of output frame t, or -1 when it is a zero pad frame.
// "replicate" clamps to [0, T-1] (frame -1 is frame 0, frame T is frame T-1).
VIDOPS_HD int64_t temporal_source(int64_t t, int j, int stride, int mode, int64_t T) {
  int64_t f = t * stride + j - temporal_pad(mode);
  if (f >= 0 && f < T) return f;
  if (mode == kReplicate) return f < 0 ? 0 : T - 1;
  return -1;
}

// Source index of padded coordinate i (already offset: i = out + tap - r) on an axis of length n.
// Reflect mirrors without repeating the edge (PyTorch's "reflect"; needs n > r); zeros gives -1.
VIDOPS_HD int64_t spatial_source(int64_t i, int64_t n, int mode) {
  if (i >= 0 && i < n) return i;
  if (mode == kSpatialZeros) return -1;
  return i < 0 ? -i : 2 * (n - 1) - i;
}

// Last output frame whose taps read input frame f (so f's gradient is complete once the backward
// has visited it). Taps of output frame t read t*s - p_t + {0,1,2}; under "replicate" frame T-1
// also receives the clamped taps past the end, which only the last output frame has.
VIDOPS_HD int64_t last_reader(int64_t f, int stride, int mode, int64_t T, int64_t T_out) {
  int64_t t = (f + temporal_pad(mode)) / stride;
  if (mode == kReplicate && f == T - 1) t = T_out - 1;
  return t < T_out - 1 ? t : T_out - 1;
}

// Padded coordinate p (0 <= p < n + 2r) of a spatially padded axis -> source index, or -1.
VIDOPS_HD int64_t padded_source(int64_t p, int64_t r, int64_t n, int mode) {
  return spatial_source(p - r, n, mode);
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

// Raw Laplacian of Gaussian at squared radius r2: -1/(pi s^4) (1 - r2/(2 s^2)) exp(-r2/(2 s^2)).
// The normalised kernel divides by the sum over the k x k grid (vidops.log_kernel).
template <typename T>
VIDOPS_HD T log_raw(T r2, T sigma) {
  const T pi = T(3.14159265358979323846);
  const T s2 = sigma * sigma;
  return -T(1) / (pi * s2 * s2) * (T(1) - r2 / (T(2) * s2)) * std::exp(-r2 / (T(2) * s2));
}


// ---- Index math of the tiled kernels (CUDA; usable by the CPU kernels too) ----------------------

// Source index of extended coordinate i (a tile-halo cell; i = output + tap - r) on an axis of
// length n padded by r on each side, or -1 when the cell holds zero: zero padding, or a cell past
// the padded image ([-r, n-1+r]), which only out-of-image outputs of a partial tile read.
// The result is always inside [0, n) or -1 (callers index memory with it).
VIDOPS_HD int64_t halo_source(int64_t i, int64_t n, int r, int mode) {
  if (i < -r || i > n - 1 + r) return -1;
  const int64_t s = spatial_source(i, n, mode);
  return (s >= 0 && s < n) ? s : -1;
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
