// Per-element math of the motion band-pass family, shared by the CPU kernels (g++) and the CUDA
// kernels (nvcc), so the CPU tests exercise the index arithmetic the GPU runs (spec 1.1, 1.2).
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

// Raw Laplacian of Gaussian at squared radius r2: -1/(pi s^4) (1 - r2/(2 s^2)) exp(-r2/(2 s^2)).
// The normalised kernel divides by the sum over the k x k grid (vidops.log_kernel).
template <typename T>
VIDOPS_HD T log_raw(T r2, T sigma) {
  const T pi = T(3.14159265358979323846);
  const T s2 = sigma * sigma;
  return -T(1) / (pi * s2 * s2) * (T(1) - r2 / (T(2) * s2)) * std::exp(-r2 / (T(2) * s2));
}

}  // namespace mbp
}  // namespace vidops
