// Per-element index math of the motion band-pass family (motion_band_pass, and busy_quiet, whose
// busy output is the motion band-pass stem), shared by the CPU kernels (g++) and the CUDA kernels
// (nvcc), so the CPU tests exercise the index arithmetic the GPU runs (operators.md §1.1, 1.2, 1.3):
// padding modes, temporal taps and spatial sources, halo sources of the tiled kernels.
#pragma once
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

// Padded coordinate p (0 <= p < n + 2r) of a spatially padded axis -> source index, or -1.
VIDOPS_HD int64_t padded_source(int64_t p, int64_t r, int64_t n, int mode) {
  return spatial_source(p - r, n, mode);
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

}  // namespace mbp
}  // namespace vidops
