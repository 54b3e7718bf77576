// CUDA kernels (__global__) of the depthwise 3-D convolution, included by
// depthwise_conv3d_kernel.cu (which launches them) and, with VIDOPS_CUDA_EMULATION, by the C++ unit
// test tests/cpp/test_depthwise_conv3d_cuda_emulation.cpp, which runs them on CPU threads (one
// std::thread per CUDA thread, a barrier for __syncthreads) against a direct loop: the index,
// tiling, halo and reduction logic is tested without a GPU.
//
// forward (and grad_x, with the kernel reversed: flip): one block per (n, c, t, TH x TW output
//   tile). The block stages the whole (C's) kernel in shared memory, then for every temporal tap a
//   whose frame t+a-pt is inside the clip loads the (TH+kh-1) x (TW+kw-1) input halo of that frame
//   (zeros outside: the zero padding) and accumulates. Each thread owns RPT rows of one column and
//   reuses every shared-memory value it reads for all of its rows.
// grad_w: one block per (channel, chunk of the N*T output frames); dwc::wgrad_chunks fixes the
//   chunks from the shape alone. Per frame and spatial tile the block stages grad_out's TH x TW
//   tile and, per temporal tap, the input halo; thread work items are (tap row/column (b, e), row
//   group), each summing its rows of g * shifted x into a private shared-memory slot. The block
//   then adds its row groups in a fixed order into one partial per (channel, chunk, tap), and a
//   second kernel adds the chunks in order: the same bits on every run.
// Accumulation in float (double for float64); float16/bfloat16 inputs are converted on load.
#pragma once
#ifndef VIDOPS_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cstdint>

#include "depthwise_conv3d/depthwise_conv3d_math.h"

namespace vidops {
namespace dwc {
namespace gpu {

enum DType : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };

template <typename T, typename A>
__device__ __forceinline__ A to_acc(T v) { return static_cast<A>(v); }
template <>
__device__ __forceinline__ float to_acc<__half, float>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_acc<__nv_bfloat16, float>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T, typename A>
__device__ __forceinline__ T from_acc(A v) { return static_cast<T>(v); }
template <>
__device__ __forceinline__ __half from_acc<__half, float>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16, float>(float v) { return __float2bfloat16_rn(v); }

constexpr int kThreads = 256;

// ---- launch configuration (shared by the launchers and the emulation test) ---------------------

// Forward tile: TW columns (= blockDim.x), kThreads / TW thread rows, RPT output rows per thread.
template <int TW, int RPT>
struct FwdTile {
  static constexpr int TY = kThreads / TW;
  static constexpr int TH = TY * RPT;
};

// Blocks of the forward grid: one per (n, c, t, tile_h, tile_w).
inline int64_t fwd_blocks(const Shape& d, int TH, int TW, int64_t& tiles_h, int64_t& tiles_w) {
  tiles_h = (d.H + TH - 1) / TH;
  tiles_w = (d.W + TW - 1) / TW;
  return d.N * d.C * d.T * tiles_h * tiles_w;
}

template <typename A>
size_t fwd_smem_bytes(const Shape& d, int TH, int TW) {
  return sizeof(A) * (static_cast<size_t>(d.taps()) + static_cast<size_t>(TH + d.kh - 1) * (TW + d.kw - 1));
}

// ---- forward / grad_x -------------------------------------------------------------------------

// TW columns (= blockDim.x), blockDim.y = kThreads / TW thread rows, RPT output rows per thread:
// an output tile of TW x (blockDim.y * RPT).
template <typename T, typename A, int TW, int RPT>
__global__ void __launch_bounds__(kThreads) dwc_fwd_kernel(const T* __restrict__ x, const A* __restrict__ w,
                                                           T* __restrict__ y, Shape d, bool flip,
                                                           int64_t tiles_h, int64_t tiles_w) {
  constexpr int TH = FwdTile<TW, RPT>::TH;
  extern __shared__ unsigned char smem_raw[];
  A* s_w = reinterpret_cast<A*>(smem_raw);
  const int taps = d.taps();
  const int pitch = TW + d.kw - 1;
  const int rows = TH + d.kh - 1;
  A* s_x = s_w + taps;

  // block -> (plane = n*C + c, t, tile_h, tile_w), 64-bit
  int64_t bid = blockIdx.x;
  const int64_t tw_i = bid % tiles_w;
  bid /= tiles_w;
  const int64_t th_i = bid % tiles_h;
  bid /= tiles_h;
  const int64_t t = bid % d.T;
  const int64_t plane = bid / d.T;
  const int64_t c = plane % d.C;
  const int64_t h0 = th_i * TH, w0 = tw_i * TW;
  const int tid = threadIdx.y * TW + threadIdx.x;

  for (int i = tid; i < taps; i += kThreads) s_w[i] = w[c * taps + (flip ? flipped_flat_tap(i, taps) : i)];

  A acc[RPT];
#pragma unroll
  for (int r = 0; r < RPT; ++r) acc[r] = A(0);

  const T* xp = x + plane * d.plane();
  const int pt = d.pt(), ph = d.ph(), pw = d.pw();
  for (int a = 0; a < d.kt; ++a) {
    const int64_t ti = stencil::zero_pad_source(t, a, pt, d.T);
    if (ti < 0) continue;  // uniform over the block
    __syncthreads();       // the previous frame's halo (and, first time, s_w) is no longer read
    const T* frame = xp + ti * d.frame();
    for (int i = tid; i < rows * pitch; i += kThreads) {
      const int rr = i / pitch, cc = i % pitch;
      const int64_t hi = stencil::zero_pad_source(h0 + rr, 0, ph, d.H);
      const int64_t wi = stencil::zero_pad_source(w0 + cc, 0, pw, d.W);
      s_x[i] = (hi >= 0 && wi >= 0) ? to_acc<T, A>(frame[hi * d.W + wi]) : A(0);
    }
    __syncthreads();
    const A* wa = s_w + a * d.kh * d.kw;
    const int r0 = threadIdx.y * RPT;
    // shared row R feeds output row r with tap row b = R - r0 - r
    for (int R = r0; R < r0 + RPT + d.kh - 1; ++R) {
      const A* srow = s_x + R * pitch + threadIdx.x;
      for (int e = 0; e < d.kw; ++e) {
        const A v = srow[e];
#pragma unroll
        for (int r = 0; r < RPT; ++r) {
          const int b = R - r0 - r;
          if (b >= 0 && b < d.kh) acc[r] += wa[b * d.kw + e] * v;
        }
      }
    }
  }
  const int64_t wo = w0 + threadIdx.x;
  if (wo < d.W) {
#pragma unroll
    for (int r = 0; r < RPT; ++r) {
      const int64_t ho = h0 + threadIdx.y * RPT + r;
      if (ho < d.H) y[plane * d.plane() + (t * d.H + ho) * d.W + wo] = from_acc<T, A>(acc[r]);
    }
  }
}

// ---- grad_w -----------------------------------------------------------------------------------

constexpr int kGW = 32;  // grad_w tile: kGW columns x kGH rows
constexpr int kGH = 16;

// Row groups of the grad_w work items: (tap row/column, group) pairs fill the block's threads.
inline int wgrad_groups(int taps2) {
  int groups = kThreads / taps2;
  if (groups < 1) groups = 1;
  if (groups > kGH) groups = kGH;
  return groups;
}

template <typename A>
size_t wgrad_smem_bytes(const Shape& d, int groups) {
  return sizeof(A) * (static_cast<size_t>(d.kt) * d.kh * d.kw * groups + kGH * kGW +
                      static_cast<size_t>(kGH + d.kh - 1) * (kGW + d.kw - 1));
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) dwc_wgrad_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                                             A* __restrict__ partial, Shape d, int64_t chunks,
                                                             int groups) {
  extern __shared__ unsigned char smem_raw[];
  const int kh = d.kh, kw = d.kw, taps2 = kh * kw;
  const int pitch = kGW + kw - 1;
  const int rows = kGH + kh - 1;
  A* s_acc = reinterpret_cast<A*>(smem_raw);      // [kt][taps2][groups], one slot per work item
  A* s_g = s_acc + d.kt * taps2 * groups;         // [kGH][kGW]
  A* s_x = s_g + kGH * kGW;                       // [rows][pitch]
  const int tid = threadIdx.x;
  const int items = taps2 * groups;
  for (int i = tid; i < d.kt * items; i += kThreads) s_acc[i] = A(0);

  const int64_t c = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  int64_t u0, u1;
  chunk_range(chunk, chunks, d.N * d.T, u0, u1);
  const int pt = d.pt(), ph = d.ph(), pw = d.pw();
  const int64_t tiles_h = (d.H + kGH - 1) / kGH, tiles_w = (d.W + kGW - 1) / kGW;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t n = u / d.T, t = u % d.T;
    const int64_t plane = n * d.C + c;
    const T* gf = g + plane * d.plane() + t * d.frame();
    for (int64_t tile = 0; tile < tiles_h * tiles_w; ++tile) {
      const int64_t h0 = (tile / tiles_w) * kGH, w0 = (tile % tiles_w) * kGW;
      __syncthreads();  // the previous tile's s_g and s_x are no longer read
      for (int i = tid; i < kGH * kGW; i += kThreads) {
        const int64_t hh = h0 + i / kGW, ww = w0 + i % kGW;
        s_g[i] = (hh < d.H && ww < d.W) ? to_acc<T, A>(gf[hh * d.W + ww]) : A(0);
      }
      for (int a = 0; a < d.kt; ++a) {
        const int64_t ti = stencil::zero_pad_source(t, a, pt, d.T);
        if (ti < 0) continue;  // uniform over the block
        __syncthreads();
        const T* frame = x + plane * d.plane() + ti * d.frame();
        for (int i = tid; i < rows * pitch; i += kThreads) {
          const int rr = i / pitch, cc = i % pitch;
          const int64_t hi = stencil::zero_pad_source(h0 + rr, 0, ph, d.H);
          const int64_t wi = stencil::zero_pad_source(w0 + cc, 0, pw, d.W);
          s_x[i] = (hi >= 0 && wi >= 0) ? to_acc<T, A>(frame[hi * d.W + wi]) : A(0);
        }
        __syncthreads();
        for (int item = tid; item < items; item += kThreads) {
          const int j = item % taps2, grp = item / taps2;
          const int b = j / kw, e = j % kw;
          A sum = A(0);
          for (int yy = grp; yy < kGH; yy += groups) {
            const A* grow = s_g + yy * kGW;
            const A* xrow = s_x + (yy + b) * pitch + e;
#pragma unroll 8
            for (int xx = 0; xx < kGW; ++xx) sum += grow[xx] * xrow[xx];
          }
          s_acc[(a * taps2 + j) * groups + grp] += sum;
        }
      }
    }
  }
  __syncthreads();
  const int taps = d.taps();
  for (int i = tid; i < taps; i += kThreads) {
    A s = A(0);
    for (int grp = 0; grp < groups; ++grp) s += s_acc[i * groups + grp];  // fixed order
    partial[(c * chunks + chunk) * taps + i] = s;
  }
}

// gw[c, i] = sum over chunks, in order, of partial[c, chunk, i].
template <typename A>
__global__ void dwc_wgrad_reduce_kernel(const A* __restrict__ partial, A* __restrict__ gw, int64_t C,
                                        int64_t chunks, int taps) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= C * taps) return;
  const int64_t c = i / taps, tap = i % taps;
  A s = A(0);
  for (int64_t k = 0; k < chunks; ++k) s += partial[(c * chunks + k) * taps + tap];
  gw[i] = s;
}

}  // namespace gpu
}  // namespace dwc
}  // namespace vidops
