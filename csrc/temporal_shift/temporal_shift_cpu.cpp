// CPU kernels of the temporal shift: a strided copy, at::parallel_for over output rows.
// The shift moves whole elements, so the kernels copy bit patterns of the element's size (2, 4 or 8
// bytes): every floating dtype is exact, signed zeros and NaN payloads included.
//   contiguous output, dense input frames: three contiguous runs per frame (shift_dense_frames);
//   contiguous output:    a row is one (n*T + t, c) plane of H*W elements, read from frame
//                         t + d(c) (a memcpy when that plane of x is contiguous) or zero-filled;
//   channels_last output: a row is one (n*T + t, h, w) position, its C channels copied as three
//                         runs [0, fold), [fold, 2 fold), [2 fold, C), each from its own frame.
// Any input strides (non-contiguous, channels_last, expanded) are read as they are.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "temporal_shift/temporal_shift_args.h"
#include "temporal_shift/temporal_shift_math.h"

namespace vidops {
namespace tshift {
namespace {

constexpr int64_t kGrainElements = 32768;  // elements per parallel task, at least

struct Problem {
  int64_t T, C, H, W, fold;
  int64_t s[4];  // input strides (elements) of (N*T, C, H, W)
  bool backward;
};

// out[0 .. len) = src[0, stride, ..., (len-1) stride]
template <typename E>
inline void copy_run(E* out, const E* src, int64_t len, int64_t stride) {
  if (stride == 1) {
    std::memcpy(out, src, len * sizeof(E));
  } else {
    for (int64_t i = 0; i < len; ++i) out[i] = src[i * stride];
  }
}

// Frames whose (C, H, W) block is dense (channel stride H*W, row stride W, unit column stride):
// each output frame is three contiguous runs, [0, fold), [fold, 2 fold) and [2 fold, C) channels,
// each a slice of one input frame at the same offset (or zeros). The flat output is cut into
// chunks of kGrainElements and every chunk copies the pieces of the runs it covers: a few memcpy
// per frame instead of one per (frame, channel) plane, which dominates for small planes (7x7).
template <typename E>
void shift_dense_frames(const E* x, E* out, const Problem& p, int64_t NT) {
  const int64_t frame = p.C * p.H * p.W, HW = p.H * p.W;
  const int64_t ends[3] = {std::min(p.fold, p.C) * HW, std::min(2 * p.fold, p.C) * HW, frame};
  at::parallel_for(0, NT * frame, kGrainElements, [&](int64_t begin, int64_t end) {
    int64_t b = begin;
    while (b < end) {
      const int64_t nt = b / frame, off = b - nt * frame;
      const int k = off < ends[0] ? 0 : (off < ends[1] ? 1 : 2);
      const int64_t len = std::min(end, nt * frame + ends[k]) - b;
      const int64_t t = nt % p.T, d = frame_offset(off / HW, p.fold, p.backward);
      if (t + d < 0 || t + d >= p.T) {
        std::memset(out + b, 0, len * sizeof(E));
      } else {
        std::memcpy(out + b, x + (nt + d) * p.s[0] + off, len * sizeof(E));
      }
      b += len;
    }
  });
}

template <typename E>
void shift_planes(const E* x, E* out, const Problem& p, int64_t rows) {
  const int64_t HW = p.H * p.W;
  const bool plane_dense = p.s[3] == 1 && (p.s[2] == p.W || p.H == 1);
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(HW, 1)),
                   [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t nt = r / p.C, c = r - nt * p.C;
      const int64_t t = nt % p.T, d = frame_offset(c, p.fold, p.backward);
      E* dst = out + r * HW;
      if (t + d < 0 || t + d >= p.T) {
        std::memset(dst, 0, HW * sizeof(E));
        continue;
      }
      const E* src = x + (nt + d) * p.s[0] + c * p.s[1];
      if (plane_dense) {
        std::memcpy(dst, src, HW * sizeof(E));
      } else {
        for (int64_t h = 0; h < p.H; ++h) copy_run(dst + h * p.W, src + h * p.s[2], p.W, p.s[3]);
      }
    }
  });
}

template <typename E>
void shift_positions(const E* x, E* out, const Problem& p, int64_t rows) {
  const int64_t HW = p.H * p.W, C = p.C;
  const int64_t cuts[4] = {0, std::min(p.fold, C), std::min(2 * p.fold, C), C};
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / C), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t nt = r / HW, hw = r - nt * HW, h = hw / p.W, w = hw - h * p.W;
      const int64_t t = nt % p.T;
      E* dst = out + r * C;
      for (int k = 0; k < 3; ++k) {
        const int64_t c0 = cuts[k], len = cuts[k + 1] - c0;
        if (len <= 0) continue;
        const int64_t d = frame_offset(c0, p.fold, p.backward);
        if (t + d < 0 || t + d >= p.T) {
          std::memset(dst + c0, 0, len * sizeof(E));
        } else {
          copy_run(dst + c0, x + (nt + d) * p.s[0] + c0 * p.s[1] + h * p.s[2] + w * p.s[3], len, p.s[1]);
        }
      }
    }
  });
}

template <typename E>
void shift_typed(const at::Tensor& x, at::Tensor& out, const Problem& p, bool channels_last) {
  const E* xp = static_cast<const E*>(x.const_data_ptr());
  E* op = static_cast<E*>(out.mutable_data_ptr());
  const int64_t NT = x.size(0);
  const bool dense_frames = p.s[3] == 1 && (p.s[2] == p.W || p.H == 1) && (p.s[1] == p.H * p.W || p.C == 1);
  if (channels_last) {
    shift_positions<E>(xp, op, p, NT * p.H * p.W);
  } else if (dense_frames) {
    shift_dense_frames<E>(xp, op, p, NT);
  } else {
    shift_planes<E>(xp, op, p, NT * p.C);
  }
}

at::Tensor shift_cpu(const at::Tensor& x, int64_t num_segments, int64_t fold_div, bool backward) {
  check_args(x, num_segments, fold_div, "cpu");
  TORCH_CHECK(x.device().is_cpu(), "vidops.temporal_shift (cpu): x must be a CPU tensor, got ", x.device());
  at::Tensor out = new_output(x);
  if (out.numel() == 0) return out;
  Problem p{num_segments, x.size(1), x.size(2), x.size(3), x.size(1) / fold_div,
            {x.stride(0), x.stride(1), x.stride(2), x.stride(3)}, backward};
  const bool cl = output_is_channels_last(x);
  switch (x.element_size()) {
    case 2: shift_typed<uint16_t>(x, out, p, cl); break;
    case 4: shift_typed<uint32_t>(x, out, p, cl); break;
    case 8: shift_typed<uint64_t>(x, out, p, cl); break;
    default: TORCH_CHECK(false, "vidops.temporal_shift (cpu): unsupported dtype ", x.scalar_type());
  }
  return out;
}

at::Tensor shift_fwd_cpu(const at::Tensor& x, int64_t num_segments, int64_t fold_div) {
  return shift_cpu(x, num_segments, fold_div, false);
}

at::Tensor shift_bwd_cpu(const at::Tensor& grad_out, int64_t num_segments, int64_t fold_div) {
  return shift_cpu(grad_out, num_segments, fold_div, true);
}

}  // namespace
}  // namespace tshift
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_temporal_shift_fwd", &vidops::tshift::shift_fwd_cpu);
  m.impl("_temporal_shift_bwd", &vidops::tshift::shift_bwd_cpu);
}
