// Index math of the depthwise 3-D convolution (operators.md §2), shared by the CPU kernels (g++) and the
// CUDA kernels (nvcc), so the CPU tests exercise the tap, flip and split arithmetic the GPU runs.
//   y[n,c,t,h,w] = sum_{a,b,e} k[c,a,b,e] * x[n,c, t+a-pt, h+b-ph, w+e-pw]   (zeros outside)
//   grad_x       = the same correlation of grad_y with k reversed on every axis
//   grad_k[c,a,b,e] = sum_{n,t,h,w} grad_y[n,c,t,h,w] * x[n,c, t+a-pt, h+b-ph, w+e-pw]
#pragma once
#include <cstdint>

#include "common/host_device.h"
#include "common/stencil.h"

namespace vidops {
namespace dwc {

struct Shape {
  int64_t N, C, T, H, W;
  int kt, kh, kw;
  VIDOPS_HD int pt() const { return stencil::same_pad(kt); }
  VIDOPS_HD int ph() const { return stencil::same_pad(kh); }
  VIDOPS_HD int pw() const { return stencil::same_pad(kw); }
  VIDOPS_HD int taps() const { return kt * kh * kw; }
  VIDOPS_HD int64_t frame() const { return H * W; }
  VIDOPS_HD int64_t plane() const { return T * H * W; }
};

// Flat tap index (a*kh + b)*kw + e of tap (a, b, e), or of its mirror (kt-1-a, kh-1-b, kw-1-e)
// when flip: the weight that grad_x applies at tap (a, b, e).
VIDOPS_HD int tap_index(int a, int b, int e, int kt, int kh, int kw, bool flip) {
  if (flip) {
    a = stencil::flipped_tap(a, kt);
    b = stencil::flipped_tap(b, kh);
    e = stencil::flipped_tap(e, kw);
  }
  return (a * kh + b) * kw + e;
}

// Flat index of the mirror of flat tap i (flip of every axis reverses the flat order).
VIDOPS_HD int flipped_flat_tap(int i, int taps) { return taps - 1 - i; }

// The weight gradient reduces over the N*T output frames of every channel. They are cut into
// `chunks` contiguous ranges that depend on the shape only (never on the thread or block count),
// each range is summed on its own and the ranges are added in order: bitwise reproducible.
VIDOPS_HD int64_t wgrad_chunks(int64_t C, int64_t units, int64_t min_tasks) {
  if (units <= 0) return 1;
  int64_t want = (min_tasks + C - 1) / (C > 0 ? C : 1);
  if (want < 1) want = 1;
  return want < units ? want : units;
}

// Frames [u0, u1) of chunk i of `units` frames cut into `chunks` ranges.
VIDOPS_HD void chunk_range(int64_t i, int64_t chunks, int64_t units, int64_t& u0, int64_t& u1) {
  const int64_t base = units / chunks, extra = units % chunks;
  u0 = i * base + (i < extra ? i : extra);
  u1 = u0 + base + (i < extra ? 1 : 0);
}

}  // namespace dwc
}  // namespace vidops
