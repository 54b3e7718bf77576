// Fused CUDA Busy/Quiet split of a BQN clip (operators.md §1.3), one read of the clip:
//     busy[n,c,s]  = sum_j tw[c,j] * (K_c (x) reflectpad(clip[n,c,3s+j]))   (motion band-pass stem)
//     quiet[n,c,s] = clip[n,c,3s]                           quiet = "first"
//                  | mean_j clip[n,c,3s+j] - busy[n,c,s]    quiet = "mean_minus_busy"
//     then optionally quiet = bilinear resize by quiet_scale (align_corners=False, no antialias).
// One block per 32 x 32 tile of one segment, as the forward motion band-pass kernel
// (common/tile_cuda.h), with one more halo row and column so the busy value just below
// and right of the tile can be computed too. Quiet's source values Q (busy in fp32, never rounded
// to the clip's dtype) stay in registers (no resize) or go to a (33 x 33) shared tile from which
// the block computes the resized outputs whose top-left source pixel lies in its tile
// (bq::first_output_reading), so each resized output is computed exactly once with all 4 sources
// at hand. The raw frames for quiet are re-read at the tile's pixels right after the halo load
// (L2 hits).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "busy_quiet/busy_quiet_cuda.h"
#include "busy_quiet/busy_quiet_math.h"
#include "common/tile_cuda.h"

namespace vidops {
namespace bq {
namespace cuda {
namespace {

using namespace vidops::mbp;
using namespace vidops::mbp::cuda;

constexpr int kQStride = kTileW + 1;  // s_q is (kTileH + 1) x (kTileW + 1)

template <typename scalar_t>
struct BqParams : StemParams<scalar_t> {  // the stem: temporal stride 3, "valid"; T_out = S segments
  scalar_t* busy;   // (N, C, S, H, W) contiguous
  scalar_t* quiet;  // (N, C, S, qH, qW) contiguous
  int64_t qH, qW;
  double scale;  // > 0 when resize
  int mode;
  bool resize, vec_busy, vec_quiet;
};

// Quiet's source value at image pixel (row, col) of segment frames `frame`, given busy there.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t quiet_source(const scalar_t* __restrict__ plane, const int64_t (&frame)[3],
                                              int64_t sT, int64_t offset, acc_t busy, int mode) {
  if (mode == kFirst) return to_acc(plane[frame[0] * sT + offset]);
  const acc_t sum = to_acc(plane[frame[0] * sT + offset]) + to_acc(plane[frame[1] * sT + offset]) +
                    to_acc(plane[frame[2] * sT + offset]);
  return sum / acc_t(3) - busy;
}

template <typename scalar_t, int K>
__global__ void __launch_bounds__(kThreads) busy_quiet_kernel(const BqParams<scalar_t> p) {
  using acc_t = typename Acc<scalar_t>::type;
  const int k = K > 0 ? K : p.k;
  const Halo h = make_halo(k, 1);
  VIDOPS_DYNAMIC_SMEM(unsigned char, smem);
  int64_t* s_roff = reinterpret_cast<int64_t*>(smem);                  // h.rows source row offsets
  int64_t* s_coff = s_roff + h.rows;                                   // h.stride source column offsets
  acc_t* s_y = reinterpret_cast<acc_t*>(smem + halo_table_bytes(h));   // h.rows x h.stride
  acc_t* s_w = s_y + h.rows * h.stride;                    // k x weight_row_stride(k)
  acc_t* s_q = s_w + k * weight_row_stride(k);             // (kTileH + 1) x kQStride
  const int tid = threadIdx.x;
  const int tx = tid % kThreadsX, ty = tid / kThreadsX;

  for (int64_t blk = blockIdx.x; blk < p.blocks; blk += gridDim.x) {
    const TileIndex ti = decode_tile(blk, p.tiles_x, p.tiles_y, p.T_out, p.N);  // ti.t: the segment
    acc_t busy[kRowsPerThread][kColsPerThread] = {};
    stem_tile<K>(p, ti, h, k, s_roff, s_coff, s_y, s_w, busy);
    const scalar_t* plane = p.x + ti.n * p.sN + ti.c * p.sC;
    int64_t frame[3];
#pragma unroll
    for (int j = 0; j < 3; ++j) frame[j] = temporal_source(ti.t, j, 3, kValid, p.T);  // 3 s + j, inside the clip

    const int64_t plane_index = (ti.n * p.C + ti.c) * p.T_out + ti.t;
    const int64_t col = ti.q0 + tx * kColsPerThread;
#pragma unroll
    for (int o = 0; o < kRowsPerThread; ++o) {
      // Quiet's source values of this row (0 outside the image): straight to quiet when there is
      // no resize, else to s_q, the tile plus one row and column of Q for the resize below.
      const int64_t row = ti.p0 + ty * kRowsPerThread + o;
      acc_t q_row[kColsPerThread];
#pragma unroll
      for (int q = 0; q < kColsPerThread; ++q) {
        q_row[q] = 0;
        if (row < p.H && col + q < p.W)
          q_row[q] = quiet_source(plane, frame, p.sT, row * p.sH + (col + q) * p.sW, busy[o][q], p.mode);
      }
      if (row < p.H && col < p.W) {
        store_row(p.busy + (plane_index * p.H + row) * p.W + col, busy[o], p.W - col, p.vec_busy);
        if (!p.resize) store_row(p.quiet + (plane_index * p.H + row) * p.W + col, q_row, p.W - col, p.vec_quiet);
      }
      if (p.resize) {
#pragma unroll
        for (int q = 0; q < kColsPerThread; ++q)
          s_q[(ty * kRowsPerThread + o) * kQStride + tx * kColsPerThread + q] = q_row[q];
      }
    }
    if (!p.resize) continue;

    // The row below and the column right of the tile (0 outside the image).
    for (int e = tid; e < kTileW + 1 + kTileH; e += kThreads) {
      const int i = e <= kTileW ? kTileH : e - (kTileW + 1);
      const int j = e <= kTileW ? e : kTileW;
      const int64_t row = ti.p0 + i, c2 = ti.q0 + j;
      acc_t v = 0;
      if (row < p.H && c2 < p.W) {
        const acc_t b = p.mode == kMeanMinusBusy ? stencil_at(s_y, h.stride, s_w, k, i, j) : acc_t(0);
        v = quiet_source(plane, frame, p.sT, row * p.sH + c2 * p.sW, b, p.mode);
      }
      s_q[i * kQStride + j] = v;
    }
    __syncthreads();

    // The resized outputs whose top-left source pixel (y0, x0) lies in this tile.
    const int64_t ho0 = first_output_reading(ti.p0, p.scale, p.H, p.qH);
    const int64_t ho1 = first_output_reading(ti.p0 + kTileH, p.scale, p.H, p.qH);
    const int64_t wo0 = first_output_reading(ti.q0, p.scale, p.W, p.qW);
    const int64_t wo1 = first_output_reading(ti.q0 + kTileW, p.scale, p.W, p.qW);
    const int64_t nwo = wo1 - wo0, count = (ho1 - ho0) * nwo;
    scalar_t* q_plane = p.quiet + plane_index * p.qH * p.qW;
    for (int64_t e = tid; e < count; e += kThreads) {
      const int64_t ho = ho0 + e / nwo, wo = wo0 + e % nwo;
      int64_t y0, y1, x0, x1;
      double wy, wx;
      bilinear_taps(ho, p.scale, p.H, y0, y1, wy);
      bilinear_taps(wo, p.scale, p.W, x0, x1, wx);
      // y0 - p0 in [0, kTileH), y1 - p0 in [0, kTileH] (y1 <= y0 + 1, and y1 < H), likewise x.
      const acc_t* q00 = s_q + (y0 - ti.p0) * kQStride + (x0 - ti.q0);
      const int64_t dy = (y1 - y0) * kQStride, dx = x1 - x0;
      const acc_t ly = static_cast<acc_t>(wy), lx = static_cast<acc_t>(wx);
      const acc_t v = (acc_t(1) - ly) * ((acc_t(1) - lx) * q00[0] + lx * q00[dx]) +
                      ly * ((acc_t(1) - lx) * q00[dy] + lx * q00[dy + dx]);
      q_plane[ho * p.qW + wo] = from_acc<scalar_t>(v);
    }
  }
}

template <typename scalar_t>
const char* busy_quiet(const VidopsBusyQuietProblem& bp, const void* x, const void* sw, const void* tw, void* busy,
                       void* quiet, void* stream) {
  using acc_t = typename Acc<scalar_t>::type;
  const VidopsMbpProblem& pr = bp.mbp;
  BqParams<scalar_t> p;
  fill_stem<scalar_t>(p, pr, x, sw, tw);
  p.busy = static_cast<scalar_t*>(busy);
  p.quiet = static_cast<scalar_t*>(quiet);
  p.qH = bp.quiet_H;
  p.qW = bp.quiet_W;
  p.resize = bp.quiet_scale > 0;
  p.scale = bp.quiet_scale;
  p.mode = bp.quiet_mode;
  const size_t vec_bytes = sizeof(scalar_t) * kColsPerThread;
  p.vec_busy = pr.W % kColsPerThread == 0 && reinterpret_cast<uintptr_t>(busy) % vec_bytes == 0;
  p.vec_quiet = pr.W % kColsPerThread == 0 && reinterpret_cast<uintptr_t>(quiet) % vec_bytes == 0;
  const Halo h = make_halo(pr.k, 1);
  const size_t smem =
      halo_table_bytes(h) +
      static_cast<size_t>(h.rows * h.stride + pr.k * weight_row_stride(pr.k) + (kTileH + 1) * kQStride) *
          sizeof(acc_t);
  return dispatch_k(pr.k, [&](auto K) {
    return launch_tiles(busy_quiet_kernel<scalar_t, decltype(K)::value>, p, smem, stream);
  });
}

}  // namespace
}  // namespace cuda
}  // namespace bq
}  // namespace vidops

extern "C" const char* vidops_busy_quiet_cuda(const VidopsBusyQuietProblem* problem, const void* clip,
                                              const void* spatial_weight, const void* temporal_weight, void* busy,
                                              void* quiet, void* stream) {
  using namespace vidops::bq;
  using namespace vidops::bq::cuda;
  if (problem == nullptr) return "vidops._busy_quiet_fwd (CUDA): null problem";
  if (const char* e = vidops::mbp::cuda::validate_problem(&problem->mbp)) return e;
  const VidopsBusyQuietProblem& bp = *problem;
  const VidopsMbpProblem& pr = bp.mbp;
  if (pr.temporal_stride != 3 || pr.temporal_padding != vidops::mbp::kValid || pr.T % 3 != 0)
    return "vidops._busy_quiet_fwd (CUDA): the clip must be S segments of 3 frames (stride 3, valid)";
  if (bp.quiet_mode != kFirst && bp.quiet_mode != kMeanMinusBusy) return "vidops._busy_quiet_fwd (CUDA): unknown quiet mode";
  if (bp.quiet_H != resized_size(pr.H, bp.quiet_scale) || bp.quiet_W != resized_size(pr.W, bp.quiet_scale))
    return "vidops._busy_quiet_fwd (CUDA): quiet size does not match the scale";
  if (pr.N * pr.C * pr.T_out * pr.H * pr.W == 0) return nullptr;
  if (bp.quiet_H < 1 || bp.quiet_W < 1) return "vidops._busy_quiet_fwd (CUDA): the resized quiet is empty";
  return dispatch_dtype(pr.dtype, "vidops._busy_quiet_fwd (CUDA): unsupported dtype", [&](auto tag) {
    return busy_quiet<typename decltype(tag)::type>(bp, clip, spatial_weight, temporal_weight, busy, quiet, stream);
  });
}
