// CUDA kernels and launchers of the depthwise 3-D convolution (operators.md §2). Runtime-only: no
// torch headers; the C++ glue (depthwise_conv3d_cuda.cpp) passes a CudaProblem, raw pointers and
// the current stream, and turns a returned message into a TORCH_CHECK. Compiled by nvcc for the
// extension and by g++ with VIDOPS_CUDA_EMULATION for the GPU-less tests (tests/cuda_emulation.py).
//
//   y[n,c,o] = bias[c] + sum_k w[c,k] x[n,c, s*o + k - p]   per axis (t, h, w), zeros outside x
//
// Every tensor is read and written through its element strides. Two families of kernels:
//
// tile (channels not innermost, e.g. NCDHW): one block per (n, c, chunk of output frames, TH x TW
//   output tile). The block keeps a ring of kt input halos ((TH-1)*sh + kh) x ((TW-1)*sw + kw) in
//   shared memory (zeros outside: the padding) and walks its output frames in order, loading only
//   the source frames the next output adds (each input frame once per block at st < kt); each
//   thread accumulates RPT output rows of one column, reusing every shared value it reads for all
//   of its rows. The kernel is staged in shared memory too.
// channel (channels innermost: channels_last_3d; also the any-layout fallback with V = 1): a block
//   owns CVB channel vectors of V channels (blockIdx.y picks the group) and PB positions; thread
//   (cv, pos) computes V channels (one 4- to 16-byte load) of WPT consecutive output columns, so a
//   warp reads whole channel rows (coalesced) and each input vector feeds up to kw outputs. The
//   block's weights sit in shared memory as [tap][channel]. With CVB = 1 consecutive threads take
//   consecutive positions of one channel: coalesced for NCDHW too.
//
// grad_x: stride 1 on every axis is the forward on grad_y with the kernel reversed and padding
//   k-1-p (either family); any other stride is the transposed gather of the channel kernel: for
//   each grad_x element only the taps k with (i + p - k) divisible by s contribute, enumerated
//   directly (k = (i + p) mod s, step s), so no masked work.
// grad_w, grad_b: deterministic two-pass reductions, no atomics. Pass 1 writes one partial sum per
//   (block slot, tap, channel); the slots' ranges of output rows depend on the shape only. Pass 2
//   adds the slots in order. tile: block per (channel, chunk of output frames), per 16 x 32 output
//   tile it stages grad_y and the strided input halo; work items (tap row, tap column, row group)
//   sum their rows into private shared slots, added in a fixed order at the end. channel: thread
//   per (channel vector, tap row segment of KWT taps, sub-slot), streaming the output rows of its
//   chunk with one grad_y load feeding KWT taps; the (a, b) = (0, 0) threads also sum grad_b.
// Accumulation in float (double for float64); float16/bfloat16 are converted on load.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda_launch.h"
#include "common/dtype_code.h"
#include "depthwise_conv3d/depthwise_conv3d_cuda.h"

namespace vidops {
namespace dwc {
namespace gpu_kernels {
namespace {

constexpr int kThreads = 256;

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> struct Store;
template <> struct Store<float> { __device__ static float conv(float v) { return v; } };
template <> struct Store<double> { __device__ static double conv(double v) { return v; } };
template <> struct Store<__half> { __device__ static __half conv(float v) { return __float2half_rn(v); } };
template <> struct Store<__nv_bfloat16> {
  __device__ static __nv_bfloat16 conv(float v) { return __float2bfloat16_rn(v); }
};

// V consecutive elements as one aligned load/store (V > 1: unit channel stride, aligned address).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, typename A, int V>
__device__ __forceinline__ void load_vec(const T* p, int64_t cs, A (&out)[V]) {
  if constexpr (V == 1) {
    out[0] = to_acc(p[0]);
  } else {
    const Pack<T, V> q = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
    for (int v = 0; v < V; ++v) out[v] = to_acc(q.v[v]);
  }
  (void)cs;
}

template <typename T, typename A, int V>
__device__ __forceinline__ void store_vec(T* p, int64_t cs, const A (&in)[V]) {
  if constexpr (V == 1) {
    p[0] = Store<T>::conv(in[0]);
  } else {
    Pack<T, V> q;
#pragma unroll
    for (int v = 0; v < V; ++v) q.v[v] = Store<T>::conv(in[v]);
    *reinterpret_cast<Pack<T, V>*>(p) = q;
  }
  (void)cs;
}

// One stencil pass: `in` (N, C, Ti, Hi, Wi) -> `out` (N, C, To, Ho, Wo), out[o] = sum_k wk[k]
// in[s*o + k - p] (+ bias), wk = w or w reversed on every axis (flip); p may be negative.
struct Geo {
  int64_t N, C, Ti, Hi, Wi, To, Ho, Wo;
  int kt, kh, kw, st, sh, sw, pt, ph, pw;
  int flip;
  int frames_per_block;  // 0: automatic
  int64_t is[5], os[5];
  __host__ __device__ int taps() const { return kt * kh * kw; }
};

// ---- tile forward ---------------------------------------------------------------------------

template <int TW, int RPT>
struct Tile {
  static constexpr int TY = kThreads / TW;
  static constexpr int TH = TY * RPT;
};

inline int64_t tile_rows(const Geo& g, int TH) { return static_cast<int64_t>(TH - 1) * g.sh + g.kh; }
inline int64_t tile_pitch(const Geo& g, int TW) { return static_cast<int64_t>(TW - 1) * g.sw + g.kw; }

// Shared memory of the tile kernel: the kernel plus a ring of kt input halos.
template <typename A>
size_t tile_smem_bytes(const Geo& g, int TH, int TW) {
  return sizeof(A) * (static_cast<size_t>(g.taps()) +
                      static_cast<size_t>(g.kt) * static_cast<size_t>(tile_rows(g, TH) * tile_pitch(g, TW)));
}

// Block: (plane n*C + c, chunk of TB consecutive output frames, tile_h, tile_w). The block walks its
// output frames in order; input frame ti's halo lives in ring slot ti % kt, so consecutive output
// frames (whose windows of kt source frames overlap at st < kt) load only the frames they add: every
// input frame is read once per block instead of kt times.
template <typename T, typename A, int TW, int RPT>
__global__ void __launch_bounds__(kThreads) dwc_fwd_tile_kernel(const T* __restrict__ in, const A* __restrict__ w,
                                                                const A* __restrict__ bias, T* __restrict__ out,
                                                                const Geo g, int64_t tiles_h, int64_t tiles_w,
                                                                int64_t TB) {
  constexpr int TH = Tile<TW, RPT>::TH;
  VIDOPS_DYNAMIC_SMEM(A, s_w);
  const int taps = g.taps();
  const int rows = (TH - 1) * g.sh + g.kh;
  const int pitch = (TW - 1) * g.sw + g.kw;
  const int halo = rows * pitch;
  A* s_ring = s_w + taps;  // [kt][rows][pitch]

  uint32_t bid = blockIdx.x;  // 32-bit decoding (no 64-bit division calls): every factor < 2^31
  const int64_t tw_i = bid % static_cast<uint32_t>(tiles_w);
  bid /= static_cast<uint32_t>(tiles_w);
  const int64_t th_i = bid % static_cast<uint32_t>(tiles_h);
  bid /= static_cast<uint32_t>(tiles_h);
  const uint32_t chunks_t = static_cast<uint32_t>((g.To + TB - 1) / TB);
  const int64_t t_chunk = bid % chunks_t;
  const uint32_t plane = bid / chunks_t;
  const int64_t n = plane / static_cast<uint32_t>(g.C), c = plane % static_cast<uint32_t>(g.C);
  const int64_t h0 = th_i * TH, w0 = tw_i * TW;
  const int64_t hi0 = h0 * g.sh - g.ph, wi0 = w0 * g.sw - g.pw;
  const int tid = threadIdx.y * TW + threadIdx.x;

  for (int i = tid; i < taps; i += kThreads) s_w[i] = w[c * taps + (g.flip ? taps - 1 - i : i)];

  const T* src = in + n * g.is[0] + c * g.is[1];
  const int r0 = threadIdx.y * RPT;
  const int64_t wo = w0 + threadIdx.x;
  const A b0 = bias ? bias[c] : A(0);
  T* dst = out + n * g.os[0] + c * g.os[1] + wo * g.os[4];
  const int64_t to_end = (t_chunk + 1) * TB < g.To ? (t_chunk + 1) * TB : g.To;
  int64_t loaded = -1;  // the last input frame in the ring (frames are loaded in increasing order)
  for (int64_t to = t_chunk * TB; to < to_end; ++to) {
    __syncthreads();  // the previous output frame no longer reads the ring (and, first time, s_w is written)
    for (int a = 0; a < g.kt; ++a) {
      const int64_t ti = to * g.st + a - g.pt;
      if (ti < 0 || ti >= g.Ti || ti <= loaded) continue;  // uniform over the block
      const T* frame = src + ti * g.is[2];
      A* s_x = s_ring + (static_cast<int>(ti) % g.kt) * halo;
      for (int i = tid; i < halo; i += kThreads) {
        const int rr = i / pitch, cc = i % pitch;
        const int64_t hi = hi0 + rr, wi = wi0 + cc;
        s_x[i] = (hi >= 0 && hi < g.Hi && wi >= 0 && wi < g.Wi) ? to_acc(frame[hi * g.is[3] + wi * g.is[4]]) : A(0);
      }
    }
    {
      const int64_t last = to * g.st + g.kt - 1 - g.pt;
      const int64_t top = last < g.Ti ? last : g.Ti - 1;
      if (top > loaded) loaded = top;
    }
    __syncthreads();

    A acc[RPT];
#pragma unroll
    for (int r = 0; r < RPT; ++r) acc[r] = A(0);
    for (int a = 0; a < g.kt; ++a) {
      const int64_t ti = to * g.st + a - g.pt;
      if (ti < 0 || ti >= g.Ti) continue;
      const A* s_x = s_ring + (static_cast<int>(ti) % g.kt) * halo;
      const A* wa = s_w + a * g.kh * g.kw;
      // shared row R feeds output row r0 + r with tap row b = R - (r0 + r) * sh
      const int R_end = (r0 + RPT - 1) * g.sh + g.kh;
      for (int R = r0 * g.sh; R < R_end; ++R) {
        const A* srow = s_x + R * pitch + threadIdx.x * g.sw;
        for (int e = 0; e < g.kw; ++e) {
          const A v = srow[e];
#pragma unroll
          for (int r = 0; r < RPT; ++r) {
            const int b = R - (r0 + r) * g.sh;
            if (b >= 0 && b < g.kh) acc[r] += wa[b * g.kw + e] * v;
          }
        }
      }
    }
    if (wo < g.Wo) {
#pragma unroll
      for (int r = 0; r < RPT; ++r) {
        const int64_t ho = h0 + r0 + r;
        if (ho < g.Ho) dst[to * g.os[2] + ho * g.os[3]] = Store<T>::conv(acc[r] + b0);
      }
    }
  }
}

// ---- channel kernels ------------------------------------------------------------------------

// Block shape of the channel kernels: CVB channel vectors of V channels x PB positions.
struct ChanPlan {
  int V, CVB, PB, groups;
  int64_t cvecs;
};

// Channel vectors fill the block first (up to 32, split into balanced groups), positions the rest;
// `max_cvb` caps the channels per block (their weights sit in shared memory). cl == false: one
// channel per block and consecutive positions in consecutive threads (coalesced for NCDHW).
inline ChanPlan chan_plan(int64_t C, int V, bool cl, int64_t max_cvb) {
  ChanPlan p;
  p.V = V;
  p.cvecs = C / V;
  int64_t cvb = cl ? (p.cvecs < 32 ? p.cvecs : 32) : 1;
  if (cvb > max_cvb) cvb = max_cvb;
  if (cvb < 1) cvb = 1;
  const int64_t groups = (p.cvecs + cvb - 1) / cvb;
  cvb = (p.cvecs + groups - 1) / groups;
  p.CVB = static_cast<int>(cvb);
  p.groups = static_cast<int>(groups < 0x7fffffffLL ? groups : 0x7fffffffLL);
  p.PB = static_cast<int>(kThreads / cvb);
  return p;
}

// Stages the block's weights as s_w[tap * (CVB*V) + channel - c_lo] (zeros past C).
template <typename A>
__device__ __forceinline__ void stage_weights(const A* __restrict__ w, A* s_w, const Geo& g, int64_t c_lo, int cw,
                                              int tid, int nthreads) {
  const int taps = g.taps();
  for (int i = tid; i < taps * cw; i += nthreads) {
    const int tap = i / cw, cl = i % cw;
    const int64_t c = c_lo + cl;
    s_w[i] = c < g.C ? w[c * taps + (g.flip ? taps - 1 - tap : tap)] : A(0);
  }
}

// Forward (and stride-1 grad_x): thread = (V channels, WPT consecutive output columns).
template <typename T, typename A, int V, int WPT>
__global__ void __launch_bounds__(kThreads) dwc_fwd_chan_kernel(const T* __restrict__ in, const A* __restrict__ w,
                                                                const A* __restrict__ bias, T* __restrict__ out,
                                                                const Geo g, int CVB, int PB, int PR, int PWG) {
  VIDOPS_DYNAMIC_SMEM(A, s_w);
  const int cw = CVB * V;
  const int tid = threadIdx.x, nthreads = CVB * PB;
  const int64_t c_lo = static_cast<int64_t>(blockIdx.y) * cw;
  stage_weights(w, s_w, g, c_lo, cw, tid, nthreads);
  __syncthreads();

  const int cvl = tid % CVB;
  const int64_t c0 = c_lo + static_cast<int64_t>(cvl) * V;
  // the block's positions: a patch of PR output rows x PWG column groups of one output frame, so
  // the input rows that neighbouring output rows share are read by one block (L1 reuse);
  // block (n, to, row tile, column-group tile), 32-bit decoding (the launcher checks the range)
  const uint32_t wgroups = static_cast<uint32_t>((g.Wo + WPT - 1) / WPT);
  const uint32_t wg_tiles = (wgroups + PWG - 1) / PWG;
  const uint32_t row_tiles = (static_cast<uint32_t>(g.Ho) + PR - 1) / PR;
  const int local = tid / CVB;
  uint32_t r = blockIdx.x;
  const uint32_t wg_t = r % wg_tiles;
  r /= wg_tiles;
  const uint32_t row_t = r % row_tiles;
  r /= row_tiles;
  const int64_t to = r % static_cast<uint32_t>(g.To);
  const int64_t n = r / static_cast<uint32_t>(g.To);
  const int64_t ho = static_cast<int64_t>(row_t) * PR + local / PWG;
  const int64_t wg = static_cast<int64_t>(wg_t) * PWG + local % PWG;
  if (c0 >= g.C || local >= PR * PWG || ho >= g.Ho || wg >= wgroups) return;
  const int64_t wo0 = wg * WPT;

  A acc[WPT][V];
#pragma unroll
  for (int q = 0; q < WPT; ++q)
#pragma unroll
    for (int v = 0; v < V; ++v) acc[q][v] = A(0);

  const int khw = g.kh * g.kw;
  const int cols = (WPT - 1) * g.sw + g.kw;
  const int64_t wi0 = wo0 * g.sw - g.pw;
  const A* wl = s_w + cvl * V;
  for (int a = 0; a < g.kt; ++a) {
    const int64_t ti = to * g.st + a - g.pt;
    if (ti < 0 || ti >= g.Ti) continue;
    for (int b = 0; b < g.kh; ++b) {
      const int64_t hi = ho * g.sh + b - g.ph;
      if (hi < 0 || hi >= g.Hi) continue;
      const T* row = in + n * g.is[0] + c0 * g.is[1] + ti * g.is[2] + hi * g.is[3];
      const A* wrow = wl + (a * khw + b * g.kw) * cw;
      for (int j = 0; j < cols; ++j) {
        const int64_t wi = wi0 + j;
        if (wi < 0 || wi >= g.Wi) continue;
        A xv[V];
        load_vec<T, A, V>(row + wi * g.is[4], g.is[1], xv);
#pragma unroll
        for (int q = 0; q < WPT; ++q) {
          const int e = j - q * g.sw;
          if (e >= 0 && e < g.kw) {
            const A* wv = wrow + e * cw;
#pragma unroll
            for (int v = 0; v < V; ++v) acc[q][v] += wv[v] * xv[v];
          }
        }
      }
    }
  }
  A b0[V];
#pragma unroll
  for (int v = 0; v < V; ++v) b0[v] = bias ? bias[c0 + v] : A(0);
  T* dst = out + n * g.os[0] + c0 * g.os[1] + to * g.os[2] + ho * g.os[3];
#pragma unroll
  for (int q = 0; q < WPT; ++q) {
    const int64_t wo = wo0 + q;
    if (wo < g.Wo) {
      A o[V];
#pragma unroll
      for (int v = 0; v < V; ++v) o[v] = acc[q][v] + b0[v];
      store_vec<T, A, V>(dst + wo * g.os[4], g.os[1], o);
    }
  }
}

// Transposed gather (grad_x at any stride): `in` = grad_y (To, Ho, Wo), `out` = grad_x (Ti, Hi, Wi);
// g.p* are the forward's padding. out[i] = sum over k = (i + p) mod s, step s, with
// o = (i + p - k) / s < Lo, of w[k] in[o].
template <typename T, typename A, int V>
__global__ void __launch_bounds__(kThreads) dwc_dx_chan_kernel(const T* __restrict__ in, const A* __restrict__ w,
                                                               T* __restrict__ out, const Geo g, int CVB, int PB) {
  VIDOPS_DYNAMIC_SMEM(A, s_w);
  const int cw = CVB * V;
  const int tid = threadIdx.x, nthreads = CVB * PB;
  const int64_t c_lo = static_cast<int64_t>(blockIdx.y) * cw;
  stage_weights(w, s_w, g, c_lo, cw, tid, nthreads);
  __syncthreads();

  const int cvl = tid % CVB;
  const int64_t c0 = c_lo + static_cast<int64_t>(cvl) * V;
  // flat position (n, ti, hi, wi) < 2^31 (the launcher checks): 32-bit decoding
  const uint32_t pos = blockIdx.x * static_cast<uint32_t>(PB) + static_cast<uint32_t>(tid / CVB);
  if (c0 >= g.C || pos >= static_cast<uint64_t>(g.N * g.Ti * g.Hi * g.Wi)) return;
  uint32_t r = pos;
  const int wi = static_cast<int>(r % static_cast<uint32_t>(g.Wi));
  r /= static_cast<uint32_t>(g.Wi);
  const int hi = static_cast<int>(r % static_cast<uint32_t>(g.Hi));
  r /= static_cast<uint32_t>(g.Hi);
  const int ti = static_cast<int>(r % static_cast<uint32_t>(g.Ti));
  const int64_t n = r / static_cast<uint32_t>(g.Ti);

  A acc[V];
#pragma unroll
  for (int v = 0; v < V; ++v) acc[v] = A(0);
  const int khw = g.kh * g.kw;
  const A* wl = s_w + cvl * V;
  const T* src = in + n * g.is[0] + c0 * g.is[1];
  const int nt = ti + g.pt, nh = hi + g.ph, nw = wi + g.pw;  // >= 0 (padding >= 0); sizes < 2^31
  for (int a = nt % g.st; a < g.kt && a <= nt; a += g.st) {
    const int64_t to = (nt - a) / g.st;
    if (to >= g.To) continue;
    for (int b = nh % g.sh; b < g.kh && b <= nh; b += g.sh) {
      const int64_t ho = (nh - b) / g.sh;
      if (ho >= g.Ho) continue;
      const T* row = src + to * g.is[2] + ho * g.is[3];
      for (int e = nw % g.sw; e < g.kw && e <= nw; e += g.sw) {
        const int64_t wo = (nw - e) / g.sw;
        if (wo >= g.Wo) continue;
        A gv[V];
        load_vec<T, A, V>(row + wo * g.is[4], g.is[1], gv);
        const A* wv = wl + (a * khw + b * g.kw + e) * cw;
#pragma unroll
        for (int v = 0; v < V; ++v) acc[v] += wv[v] * gv[v];
      }
    }
  }
  store_vec<T, A, V>(out + n * g.os[0] + c0 * g.os[1] + static_cast<int64_t>(ti) * g.os[2] +
                         static_cast<int64_t>(hi) * g.os[3] + static_cast<int64_t>(wi) * g.os[4],
                     g.os[1], acc);
}

// ---- weight and bias gradient ---------------------------------------------------------------

// Geometry of the gradient pass: x (N, C, T, H, W) with strides xs, grad_y (N, C, To, Ho, Wo)
// with strides gs.
struct WGeo {
  int64_t N, C, T, H, W, To, Ho, Wo;
  int kt, kh, kw, st, sh, sw, pt, ph, pw;
  int need_w, need_b;
  int64_t xs[5], gs[5];
  __host__ __device__ int taps() const { return kt * kh * kw; }
};

constexpr int kGW = 32;  // tile weight gradient: kGH x kGW outputs per step
constexpr int kGH = 16;

inline int wgrad_groups(int taps2) {
  int groups = kThreads / taps2;
  if (groups < 1) groups = 1;
  if (groups > kGH) groups = kGH;
  return groups;
}

inline int64_t wtile_rows(const WGeo& g) { return static_cast<int64_t>(kGH - 1) * g.sh + g.kh; }
inline int64_t wtile_pitch(const WGeo& g) { return static_cast<int64_t>(kGW - 1) * g.sw + g.kw; }

template <typename A>
size_t wgrad_tile_smem_bytes(const WGeo& g, int groups) {
  return sizeof(A) * (static_cast<size_t>(g.taps() + 1) * groups + kGH * kGW +
                      static_cast<size_t>(wtile_rows(g) * wtile_pitch(g)));
}

// Block per (channel, chunk of the N*To output frames); partial[(c*chunks + chunk)*(taps+1) + i],
// i = taps: the bias.
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) dwc_wgrad_tile_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                                                                  A* __restrict__ partial, const WGeo g,
                                                                  int64_t chunks, int groups) {
  VIDOPS_DYNAMIC_SMEM(A, s_acc);  // [taps + 1][groups]: one slot per work item
  const int kh = g.kh, kw = g.kw, taps2 = kh * kw, taps = g.taps();
  const int pitch = (kGW - 1) * g.sw + kw;
  const int rows = (kGH - 1) * g.sh + kh;
  A* s_g = s_acc + (taps + 1) * groups;  // [kGH][kGW]
  A* s_x = s_g + kGH * kGW;               // [rows][pitch]
  const int tid = threadIdx.x;
  const int items = taps2 * groups;
  for (int i = tid; i < (taps + 1) * groups; i += kThreads) s_acc[i] = A(0);

  const int64_t c = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t units = g.N * g.To;
  const int64_t base = units / chunks, extra = units % chunks;
  const int64_t u0 = chunk * base + (chunk < extra ? chunk : extra);
  const int64_t u1 = u0 + base + (chunk < extra ? 1 : 0);
  const int64_t tiles_h = (g.Ho + kGH - 1) / kGH, tiles_w = (g.Wo + kGW - 1) / kGW;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t n = u / g.To, to = u % g.To;
    const T* gf = gy + n * g.gs[0] + c * g.gs[1] + to * g.gs[2];
    const T* xc = x + n * g.xs[0] + c * g.xs[1];
    for (int64_t tile = 0; tile < tiles_h * tiles_w; ++tile) {
      const int64_t h0 = (tile / tiles_w) * kGH, w0 = (tile % tiles_w) * kGW;
      const int64_t hi0 = h0 * g.sh - g.ph, wi0 = w0 * g.sw - g.pw;
      __syncthreads();  // the previous tile's s_g and s_x are no longer read
      for (int i = tid; i < kGH * kGW; i += kThreads) {
        const int64_t hh = h0 + i / kGW, ww = w0 + i % kGW;
        s_g[i] = (hh < g.Ho && ww < g.Wo) ? to_acc(gf[hh * g.gs[3] + ww * g.gs[4]]) : A(0);
      }
      if (g.need_b) {
        __syncthreads();
        for (int grp = tid; grp < groups; grp += kThreads) {
          A s = A(0);
          for (int yy = grp; yy < kGH; yy += groups)
            for (int xx = 0; xx < kGW; ++xx) s += s_g[yy * kGW + xx];
          s_acc[taps * groups + grp] += s;
        }
      }
      if (!g.need_w) continue;
      for (int a = 0; a < g.kt; ++a) {
        const int64_t ti = to * g.st + a - g.pt;
        if (ti < 0 || ti >= g.T) continue;  // uniform over the block
        __syncthreads();
        const T* frame = xc + ti * g.xs[2];
        for (int i = tid; i < rows * pitch; i += kThreads) {
          const int rr = i / pitch, cc = i % pitch;
          const int64_t hi = hi0 + rr, wi = wi0 + cc;
          s_x[i] = (hi >= 0 && hi < g.H && wi >= 0 && wi < g.W) ? to_acc(frame[hi * g.xs[3] + wi * g.xs[4]]) : A(0);
        }
        __syncthreads();
        for (int item = tid; item < items; item += kThreads) {
          const int j = item % taps2, grp = item / taps2;
          const int b = j / kw, e = j % kw;
          A sum = A(0);
          for (int yy = grp; yy < kGH; yy += groups) {
            const A* grow = s_g + yy * kGW;
            const A* xrow = s_x + (yy * g.sh + b) * pitch + e;
#pragma unroll 8
            for (int xx = 0; xx < kGW; ++xx) sum += grow[xx] * xrow[xx * g.sw];
          }
          s_acc[(a * taps2 + j) * groups + grp] += sum;
        }
      }
    }
  }
  __syncthreads();
  for (int i = tid; i <= taps; i += kThreads) {
    A s = A(0);
    for (int grp = 0; grp < groups; ++grp) s += s_acc[i * groups + grp];  // fixed order
    partial[(c * chunks + chunk) * (taps + 1) + i] = s;
  }
}

// Channel weight gradient: block (channel group, chunk); thread (channel vector, segment = (a, b,
// KWT taps e0..e0+KWT-1), sub-slot pb) sums the output rows u0 + pb, u0 + pb + PB, ... of its chunk.
// partial[((chunk*PB + pb) * (taps+1) + tap) * C + c], tap = taps: the bias.
template <typename T, typename A, int V, int KWT>
__global__ void __launch_bounds__(kThreads) dwc_wgrad_chan_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                                                                  A* __restrict__ partial, const WGeo g,
                                                                  int64_t chunks, int CVB, int PB) {
  const int tid = threadIdx.x;
  const int segs_w = g.kw / KWT, segs = g.kt * g.kh * segs_w;
  const int cvl = tid % CVB;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.y) * CVB + cvl) * V;
  if (c0 >= g.C || tid >= (kThreads / CVB) * CVB) return;
  const int taps = g.taps();
  const int64_t chunk = blockIdx.x;
  const int64_t units = g.N * g.To * g.Ho;  // output rows
  const int64_t base = units / chunks, extra = units % chunks;
  const int64_t u0 = chunk * base + (chunk < extra ? chunk : extra);
  const int64_t u1 = u0 + base + (chunk < extra ? 1 : 0);
  // work items (segment, sub-slot pb); more segments than threads: a thread takes several
  for (int item = tid / CVB; item < segs * PB; item += kThreads / CVB) {
    const int seg = item % segs, pb = item / segs;
    const int a = seg / (g.kh * segs_w), b = (seg / segs_w) % g.kh, e0 = (seg % segs_w) * KWT;
    const bool bias_thread = g.need_b && seg == 0;
    A acc[KWT][V], accb[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      accb[v] = A(0);
#pragma unroll
      for (int k = 0; k < KWT; ++k) acc[k][v] = A(0);
    }
    for (int64_t u = u0 + pb; u < u1; u += PB) {
      // output row u < 2^31 (the plan checks): 32-bit decoding
      const uint32_t u32 = static_cast<uint32_t>(u), Ho32 = static_cast<uint32_t>(g.Ho);
      const int64_t ho = u32 % Ho32, to = (u32 / Ho32) % static_cast<uint32_t>(g.To);
      const int64_t n = u32 / (Ho32 * static_cast<uint32_t>(g.To));
      const int64_t ti = to * g.st + a - g.pt, hi = ho * g.sh + b - g.ph;
      const bool row_ok = g.need_w && ti >= 0 && ti < g.T && hi >= 0 && hi < g.H;
      if (!row_ok && !bias_thread) continue;
      const T* grow = gy + n * g.gs[0] + c0 * g.gs[1] + to * g.gs[2] + ho * g.gs[3];
      const T* xrow = x + n * g.xs[0] + c0 * g.xs[1] + ti * g.xs[2] + hi * g.xs[3];
      for (int64_t wo = 0; wo < g.Wo; ++wo) {
        A gv[V];
        load_vec<T, A, V>(grow + wo * g.gs[4], g.gs[1], gv);
        if (bias_thread) {
#pragma unroll
          for (int v = 0; v < V; ++v) accb[v] += gv[v];
        }
        if (!row_ok) continue;
#pragma unroll
        for (int k = 0; k < KWT; ++k) {
          const int64_t wi = wo * g.sw + e0 + k - g.pw;
          if (wi >= 0 && wi < g.W) {
            A xv[V];
            load_vec<T, A, V>(xrow + wi * g.xs[4], g.xs[1], xv);
#pragma unroll
            for (int v = 0; v < V; ++v) acc[k][v] += gv[v] * xv[v];
          }
        }
      }
    }
    A* slot = partial + (chunk * PB + pb) * (taps + 1) * g.C;
    if (g.need_w) {
#pragma unroll
      for (int k = 0; k < KWT; ++k) {
        const int tap = (a * g.kh + b) * g.kw + e0 + k;
#pragma unroll
        for (int v = 0; v < V; ++v) slot[tap * g.C + c0 + v] = acc[k][v];
      }
    }
    if (bias_thread) {
#pragma unroll
      for (int v = 0; v < V; ++v) slot[taps * g.C + c0 + v] = accb[v];
    }
  }
}

// gw[c*taps + i] (i < taps) and gb[c] (i = taps) = sum over slots, in order, of
// partial[slot*s_slot + i*s_tap + c*s_c].
template <typename A>
__global__ void dwc_wgrad_reduce_kernel(const A* __restrict__ partial, A* __restrict__ gw, A* __restrict__ gb,
                                        int64_t C, int taps, int64_t slots, int64_t s_slot, int64_t s_tap,
                                        int64_t s_c) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= C * (taps + 1)) return;
  const int64_t c = idx / (taps + 1);
  const int i = static_cast<int>(idx % (taps + 1));
  if (i < taps ? gw == nullptr : gb == nullptr) return;
  A s = A(0);
  const A* p = partial + i * s_tap + c * s_c;
  for (int64_t k = 0; k < slots; ++k) s += p[k * s_slot];
  if (i < taps)
    gw[c * taps + i] = s;
  else
    gb[c] = s;
}

// ---- plans (host) ---------------------------------------------------------------------------

inline bool channels_inner(int64_t C, const int64_t* s) { return C > 1 && s[1] == 1; }

// Channels per block whose weights fit the default shared memory (at least one vector).
template <typename A>
int64_t max_cvb(int taps, int V) {
  const int64_t per_cv = static_cast<int64_t>(sizeof(A)) * taps * V;
  const int64_t m = static_cast<int64_t>(gpu::kDefaultSmemBytes) / per_cv;
  return m < 1 ? 1 : m;
}

template <typename A>
size_t chan_weight_smem(int taps, const ChanPlan& cp) {
  return sizeof(A) * static_cast<size_t>(taps) * cp.CVB * cp.V;
}

constexpr int64_t kMinTileBlocks = 2048;  // tile forward: blocks enough to fill a GPU several times

inline bool grid_ok(int64_t blocks, int64_t groups) { return blocks <= 0x7fffffffLL && groups <= 65535; }
constexpr const char* kTooManyBlocks = "vidops depthwise_conv3d: too many CUDA blocks for one launch (split the batch)";

template <typename T, typename A, int V, int WPT>
const char* launch_fwd_chan(const T* in, const A* w, const A* bias, T* out, const Geo& g, bool cl, void* stream) {
  const ChanPlan cp = chan_plan(g.C, V, cl, max_cvb<A>(g.taps(), V));
  const size_t smem = chan_weight_smem<A>(g.taps(), cp);
  auto kernel = dwc_fwd_chan_kernel<T, A, V, WPT>;
  if (const char* e = gpu::allow_dynamic_smem(kernel, smem)) return e;
  const int64_t wgroups = (g.Wo + WPT - 1) / WPT;
  // patch: about kh rows (the rows one input row feeds) by the column groups that fill the block
  const int64_t rows_want = g.Ho < g.kh ? g.Ho : g.kh;
  int64_t pwg = cp.PB / (rows_want > 0 ? rows_want : 1);
  if (pwg > wgroups) pwg = wgroups;
  if (pwg < 1) pwg = 1;
  int64_t pr = cp.PB / pwg;
  if (pr > g.Ho) pr = g.Ho;
  if (pr < 1) pr = 1;
  const int64_t blocks = g.N * g.To * ((g.Ho + pr - 1) / pr) * ((wgroups + pwg - 1) / pwg);
  if (!grid_ok(blocks, cp.groups) || g.N * g.To * g.Ho * wgroups > 0x7fffffffLL) return kTooManyBlocks;
  return gpu::launch(kernel, dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(cp.groups)),
                     dim3(static_cast<unsigned>(cp.CVB * cp.PB)), smem, stream, in, w, bias, out, g, cp.CVB, cp.PB,
                     static_cast<int>(pr), static_cast<int>(pwg));
}

template <typename T, typename A, int V>
const char* fwd_chan_v(const T* in, const A* w, const A* bias, T* out, const Geo& g, bool cl, void* stream) {
  if (g.Wo >= 4) return launch_fwd_chan<T, A, V, 4>(in, w, bias, out, g, cl, stream);
  return launch_fwd_chan<T, A, V, 1>(in, w, bias, out, g, cl, stream);
}

// The widest channel vector (elements, at most 16 bytes) that C, the strides (unit channel
// stride, the others multiples) and the addresses of both tensors allow.
template <typename T>
int vec_width(int64_t C, const int64_t* s_in, const int64_t* s_out, const void* p_in, const void* p_out) {
  for (int v = static_cast<int>(16 / sizeof(T)); v > 1; v /= 2) {
    bool ok = C % v == 0 && s_in[1] == 1 && s_out[1] == 1;
    for (int d = 0; d < 5 && ok; ++d)
      if (d != 1) ok = s_in[d] % v == 0 && s_out[d] % v == 0;
    ok = ok && reinterpret_cast<uintptr_t>(p_in) % (v * sizeof(T)) == 0 &&
         reinterpret_cast<uintptr_t>(p_out) % (v * sizeof(T)) == 0;
    if (ok) return v;
  }
  return 1;
}

template <typename T, typename A>
const char* fwd_chan(const T* in, const A* w, const A* bias, T* out, const Geo& g, bool cl, void* stream) {
  const int v = cl ? vec_width<T>(g.C, g.is, g.os, in, out) : 1;
  if constexpr (sizeof(T) <= 2) {
    if (v == 8) return fwd_chan_v<T, A, 8>(in, w, bias, out, g, cl, stream);
  }
  if constexpr (sizeof(T) <= 4) {
    if (v == 4) return fwd_chan_v<T, A, 4>(in, w, bias, out, g, cl, stream);
  }
  if (v == 2) return fwd_chan_v<T, A, 2>(in, w, bias, out, g, cl, stream);
  return fwd_chan_v<T, A, 1>(in, w, bias, out, g, cl, stream);
}

template <typename T, typename A, int TW, int RPT>
const char* launch_fwd_tile(const T* in, const A* w, const A* bias, T* out, const Geo& g, void* stream) {
  constexpr int TH = Tile<TW, RPT>::TH;
  const int64_t tiles_h = (g.Ho + TH - 1) / TH, tiles_w = (g.Wo + TW - 1) / TW;
  // output frames per block: all of them while (n, c, tile) blocks alone fill the GPU, else chunks
  const int64_t base = g.N * g.C * tiles_h * tiles_w;
  int64_t chunks_t = (kMinTileBlocks + base - 1) / base;
  if (chunks_t > g.To) chunks_t = g.To;
  if (chunks_t < 1) chunks_t = 1;
  const int64_t TB = g.frames_per_block > 0 ? g.frames_per_block : (g.To + chunks_t - 1) / chunks_t;
  chunks_t = (g.To + TB - 1) / TB;
  const int64_t blocks = base * chunks_t;
  if (!grid_ok(blocks, 1)) return kTooManyBlocks;
  const size_t smem = tile_smem_bytes<A>(g, TH, TW);
  return gpu::launch(dwc_fwd_tile_kernel<T, A, TW, RPT>, dim3(static_cast<unsigned>(blocks)),
                     dim3(TW, Tile<TW, RPT>::TY), smem, stream, in, w, bias, out, g, tiles_h, tiles_w, TB);
}

// One stencil pass: the channel kernel when the output's channels are innermost, else the tile
// kernel while its halo fits the default shared memory, else the channel kernel with one channel
// per block.
template <typename T, typename A>
const char* stencil(const T* in, const A* w, const A* bias, T* out, const Geo& g, void* stream) {
  if (channels_inner(g.C, g.os)) return fwd_chan<T, A>(in, w, bias, out, g, true, stream);
  if (g.Wo <= 16) {
    if (tile_smem_bytes<A>(g, Tile<16, 1>::TH, 16) <= gpu::kDefaultSmemBytes)
      return launch_fwd_tile<T, A, 16, 1>(in, w, bias, out, g, stream);
  } else if (tile_smem_bytes<A>(g, Tile<32, 2>::TH, 32) <= gpu::kDefaultSmemBytes) {
    return launch_fwd_tile<T, A, 32, 2>(in, w, bias, out, g, stream);
  }
  return fwd_chan<T, A>(in, w, bias, out, g, false, stream);
}

template <typename T, typename A, int V>
const char* launch_dx_chan(const T* in, const A* w, T* out, const Geo& g, bool cl, void* stream) {
  const ChanPlan cp = chan_plan(g.C, V, cl, max_cvb<A>(g.taps(), V));
  const size_t smem = chan_weight_smem<A>(g.taps(), cp);
  auto kernel = dwc_dx_chan_kernel<T, A, V>;
  if (const char* e = gpu::allow_dynamic_smem(kernel, smem)) return e;
  const int64_t blocks = (g.N * g.Ti * g.Hi * g.Wi + cp.PB - 1) / cp.PB;
  if (!grid_ok(blocks * cp.PB, cp.groups)) return kTooManyBlocks;
  return gpu::launch(kernel, dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(cp.groups)),
                     dim3(static_cast<unsigned>(cp.CVB * cp.PB)), smem, stream, in, w, out, g, cp.CVB, cp.PB);
}

template <typename T, typename A>
const char* dx_chan(const T* in, const A* w, T* out, const Geo& g, void* stream) {
  const bool cl = channels_inner(g.C, g.os);
  const int v = cl ? vec_width<T>(g.C, g.is, g.os, in, out) : 1;
  if constexpr (sizeof(T) <= 2) {
    if (v == 8) return launch_dx_chan<T, A, 8>(in, w, out, g, cl, stream);
  }
  if constexpr (sizeof(T) <= 4) {
    if (v == 4) return launch_dx_chan<T, A, 4>(in, w, out, g, cl, stream);
  }
  if (v == 2) return launch_dx_chan<T, A, 2>(in, w, out, g, cl, stream);
  return launch_dx_chan<T, A, 1>(in, w, out, g, cl, stream);
}

// The weight-gradient plan, from the problem and the vector width: tile kernel for channels not
// innermost while its tiles fit the default shared memory, channel kernel otherwise.
struct WPlan {
  bool tile;
  int groups;  // tile: row groups
  int V, KWT, CVB, PB, cgroups;
  int64_t chunks;
  int64_t slots() const { return tile ? chunks : chunks * PB; }
};

constexpr int64_t kMinWgradBlocks = 1024;  // enough blocks to fill a GPU several times

template <typename A>
WPlan wgrad_plan(const WGeo& g, int V) {
  WPlan p{};
  const int taps2 = g.kh * g.kw;
  const bool cl = channels_inner(g.C, g.xs);
  p.groups = wgrad_groups(taps2);
  p.tile = !cl && wgrad_tile_smem_bytes<A>(g, p.groups) <= gpu::kDefaultSmemBytes;
  if (p.tile) {
    const int64_t units = g.N * g.To;
    int64_t want = (kMinWgradBlocks + g.C - 1) / g.C;
    p.chunks = want < units ? want : (units > 0 ? units : 1);
    return p;
  }
  p.V = cl ? V : 1;
  p.KWT = g.kw % 3 == 0 ? 3 : 1;
  const int segs = g.kt * g.kh * (g.kw / p.KWT);
  const int64_t cvecs = g.C / p.V;
  int64_t cvb = 1;
  if (cl) {
    cvb = segs >= kThreads ? 1 : kThreads / segs;
    if (cvb > cvecs) cvb = cvecs;
    if (cvb > 32) cvb = 32;
    const int64_t cg = (cvecs + cvb - 1) / cvb;
    cvb = (cvecs + cg - 1) / cg;
  }
  p.CVB = static_cast<int>(cvb);
  p.cgroups = static_cast<int>((cvecs + cvb - 1) / cvb);
  const int64_t per_pb = cvb * segs;
  p.PB = per_pb >= kThreads ? 1 : static_cast<int>(kThreads / per_pb);
  const int64_t rows = g.N * g.To * g.Ho;
  const int64_t want = (kMinWgradBlocks + p.cgroups - 1) / p.cgroups;
  p.chunks = want < rows ? want : (rows > 0 ? rows : 1);
  return p;
}

template <typename T>
int wgrad_vec(const WGeo& g, const void* gy, const void* x) {
  return channels_inner(g.C, g.xs) ? vec_width<T>(g.C, g.gs, g.xs, gy, x) : 1;
}

template <typename A>
int64_t wgrad_workspace(const WGeo& g, int V) {
  const WPlan p = wgrad_plan<A>(g, V);
  return static_cast<int64_t>(sizeof(A)) * p.slots() * (g.taps() + 1) * g.C;
}

template <typename T, typename A, int V>
const char* launch_wgrad_chan(const T* gy, const T* x, A* partial, const WGeo& g, const WPlan& p, void* stream) {
  if (!grid_ok(p.chunks, p.cgroups) || g.N * g.To * g.Ho > 0x7fffffffLL) return kTooManyBlocks;
  auto kernel = p.KWT == 3 ? dwc_wgrad_chan_kernel<T, A, V, 3> : dwc_wgrad_chan_kernel<T, A, V, 1>;
  return gpu::launch(kernel, dim3(static_cast<unsigned>(p.chunks), static_cast<unsigned>(p.cgroups)),
                     dim3(kThreads), 0, stream, gy, x, partial, g, p.chunks, p.CVB, p.PB);
}

template <typename T, typename A>
const char* wgrad_typed(const T* gy, const T* x, A* gw, A* gb, void* ws, int64_t ws_bytes, const WGeo& g,
                        void* stream) {
  const int v = wgrad_vec<T>(g, gy, x);
  const WPlan p = wgrad_plan<A>(g, v);
  const int taps = g.taps();
  const int64_t need = static_cast<int64_t>(sizeof(A)) * p.slots() * (taps + 1) * g.C;
  if (need > ws_bytes || ws == nullptr) return "vidops depthwise_conv3d: weight-gradient workspace too small";
  A* partial = static_cast<A*>(ws);
  const char* err = nullptr;
  int64_t s_slot, s_tap, s_c;
  if (p.tile) {
    const size_t smem = wgrad_tile_smem_bytes<A>(g, p.groups);
    const int64_t blocks = g.C * p.chunks;
    if (!grid_ok(blocks, 1)) return kTooManyBlocks;
    err = gpu::launch(dwc_wgrad_tile_kernel<T, A>, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), smem, stream,
                      gy, x, partial, g, p.chunks, p.groups);
    s_slot = taps + 1;
    s_tap = 1;
    s_c = p.chunks * (taps + 1);
  } else {
    if constexpr (sizeof(T) <= 2) {
      if (p.V == 8) err = launch_wgrad_chan<T, A, 8>(gy, x, partial, g, p, stream);
    }
    if constexpr (sizeof(T) <= 4) {
      if (p.V == 4) err = launch_wgrad_chan<T, A, 4>(gy, x, partial, g, p, stream);
    }
    if (p.V == 2) err = launch_wgrad_chan<T, A, 2>(gy, x, partial, g, p, stream);
    if (p.V == 1) err = launch_wgrad_chan<T, A, 1>(gy, x, partial, g, p, stream);
    s_slot = static_cast<int64_t>(taps + 1) * g.C;
    s_tap = g.C;
    s_c = 1;
  }
  if (err) return err;
  const int64_t n = g.C * (taps + 1);
  return gpu::launch(dwc_wgrad_reduce_kernel<A>, dim3(static_cast<unsigned>((n + 255) / 256)), dim3(256), 0, stream,
                     static_cast<const A*>(partial), gw, gb, g.C, taps, p.slots(), s_slot, s_tap, s_c);
}

// ---- problem -> geometry ------------------------------------------------------------------------

inline void copy5(int64_t* dst, const int64_t* src) {
  for (int i = 0; i < 5; ++i) dst[i] = src[i];
}

inline Geo forward_geo(const CudaProblem& p) {
  Geo g{};
  g.N = p.N; g.C = p.C;
  g.Ti = p.T; g.Hi = p.H; g.Wi = p.W;
  g.To = p.To; g.Ho = p.Ho; g.Wo = p.Wo;
  g.kt = p.kt; g.kh = p.kh; g.kw = p.kw;
  g.st = p.st; g.sh = p.sh; g.sw = p.sw;
  g.pt = p.pt; g.ph = p.ph; g.pw = p.pw;
  g.flip = 0;
  g.frames_per_block = p.frames_per_block;
  copy5(g.is, p.x_strides);
  copy5(g.os, p.y_strides);
  return g;
}

// grad_x at stride 1: the forward pass over grad_y with the reversed kernel and padding k-1-p.
inline Geo grad_x_geo(const CudaProblem& p) {
  Geo g{};
  g.N = p.N; g.C = p.C;
  g.Ti = p.To; g.Hi = p.Ho; g.Wi = p.Wo;
  g.To = p.T; g.Ho = p.H; g.Wo = p.W;
  g.kt = p.kt; g.kh = p.kh; g.kw = p.kw;
  g.st = 1; g.sh = 1; g.sw = 1;
  g.pt = p.kt - 1 - p.pt; g.ph = p.kh - 1 - p.ph; g.pw = p.kw - 1 - p.pw;
  g.flip = 1;
  g.frames_per_block = p.frames_per_block;
  copy5(g.is, p.y_strides);
  copy5(g.os, p.gx_strides);
  return g;
}

// grad_x at any stride: the transposed gather (dwc_dx_chan_kernel's convention).
inline Geo transposed_geo(const CudaProblem& p) {
  Geo g = forward_geo(p);
  copy5(g.is, p.y_strides);
  copy5(g.os, p.gx_strides);
  return g;
}

inline WGeo wgrad_geo(const CudaProblem& p, bool need_w, bool need_b) {
  WGeo g{};
  g.N = p.N; g.C = p.C; g.T = p.T; g.H = p.H; g.W = p.W;
  g.To = p.To; g.Ho = p.Ho; g.Wo = p.Wo;
  g.kt = p.kt; g.kh = p.kh; g.kw = p.kw;
  g.st = p.st; g.sh = p.sh; g.sw = p.sw;
  g.pt = p.pt; g.ph = p.ph; g.pw = p.pw;
  g.need_w = need_w;
  g.need_b = need_b;
  copy5(g.xs, p.x_strides);
  copy5(g.gs, p.y_strides);
  return g;
}

template <typename T>
const char* forward_typed(const CudaProblem& p, const void* x, const void* w, const void* bias, void* y, void* stream) {
  using A = typename AccOf<T>::type;
  return stencil<T, A>(static_cast<const T*>(x), static_cast<const A*>(w), static_cast<const A*>(bias),
                       static_cast<T*>(y), forward_geo(p), stream);
}

template <typename T>
const char* grad_x_typed(const CudaProblem& p, const void* gy, const void* w, void* gx, void* stream) {
  using A = typename AccOf<T>::type;
  if (p.st == 1 && p.sh == 1 && p.sw == 1)
    return stencil<T, A>(static_cast<const T*>(gy), static_cast<const A*>(w), nullptr, static_cast<T*>(gx),
                         grad_x_geo(p), stream);
  return dx_chan<T, A>(static_cast<const T*>(gy), static_cast<const A*>(w), static_cast<T*>(gx), transposed_geo(p),
                       stream);
}

const char* check_problem(const CudaProblem* p) {
  if (p == nullptr) return "vidops depthwise_conv3d: no problem";
  if (p->kt < 1 || p->kh < 1 || p->kw < 1 || p->st < 1 || p->sh < 1 || p->sw < 1 || p->pt < 0 || p->ph < 0 ||
      p->pw < 0)
    return "vidops depthwise_conv3d: invalid kernel, stride or padding";
  return nullptr;
}

}  // namespace
}  // namespace gpu_kernels
}  // namespace dwc
}  // namespace vidops

using vidops::dwc::CudaProblem;

extern "C" const char* vidops_dwc_forward_cuda(const CudaProblem* p, const void* x, const void* w, const void* bias,
                                               void* y, void* stream) {
  using namespace vidops::dwc::gpu_kernels;
  if (const char* e = check_problem(p)) return e;
  if (p->N * p->C * p->To * p->Ho * p->Wo == 0) return nullptr;
  switch (p->dtype) {
    case vidops::kFloat32: return forward_typed<float>(*p, x, w, bias, y, stream);
    case vidops::kFloat64: return forward_typed<double>(*p, x, w, bias, y, stream);
    case vidops::kFloat16: return forward_typed<__half>(*p, x, w, bias, y, stream);
    case vidops::kBFloat16: return forward_typed<__nv_bfloat16>(*p, x, w, bias, y, stream);
    default: return "vidops depthwise_conv3d: unsupported dtype code";
  }
}

extern "C" const char* vidops_dwc_grad_x_cuda(const CudaProblem* p, const void* grad_y, const void* w, void* grad_x,
                                              void* stream) {
  using namespace vidops::dwc::gpu_kernels;
  if (const char* e = check_problem(p)) return e;
  if (p->N * p->C * p->T * p->H * p->W == 0) return nullptr;
  switch (p->dtype) {
    case vidops::kFloat32: return grad_x_typed<float>(*p, grad_y, w, grad_x, stream);
    case vidops::kFloat64: return grad_x_typed<double>(*p, grad_y, w, grad_x, stream);
    case vidops::kFloat16: return grad_x_typed<__half>(*p, grad_y, w, grad_x, stream);
    case vidops::kBFloat16: return grad_x_typed<__nv_bfloat16>(*p, grad_y, w, grad_x, stream);
    default: return "vidops depthwise_conv3d: unsupported dtype code";
  }
}

extern "C" int64_t vidops_dwc_wgrad_workspace_bytes(const CudaProblem* p) {
  using namespace vidops::dwc::gpu_kernels;
  if (check_problem(p) != nullptr) return 0;
  const WGeo g = wgrad_geo(*p, true, true);
  // the largest over the vector widths the launch may pick (it depends on the addresses too)
  int64_t most = 0;
  for (int v = 1; v <= 8; v *= 2) {
    if (p->C % v != 0) continue;
    const int64_t b = p->dtype == vidops::kFloat64 ? (v <= 2 ? wgrad_workspace<double>(g, v) : 0)
                                                   : wgrad_workspace<float>(g, v);
    most = b > most ? b : most;
  }
  return most;
}

extern "C" const char* vidops_dwc_wgrad_cuda(const CudaProblem* p, const void* grad_y, const void* x, void* grad_w,
                                             void* grad_b, void* workspace, int64_t workspace_bytes, void* stream) {
  using namespace vidops::dwc::gpu_kernels;
  if (const char* e = check_problem(p)) return e;
  if (grad_w == nullptr && grad_b == nullptr) return nullptr;
  const WGeo g = wgrad_geo(*p, grad_w != nullptr, grad_b != nullptr);
  if (p->C == 0) return nullptr;  // N = 0: the plans still launch and write zeros
  switch (p->dtype) {
    case vidops::kFloat32:
      return wgrad_typed<float, float>(static_cast<const float*>(grad_y), static_cast<const float*>(x),
                                       static_cast<float*>(grad_w), static_cast<float*>(grad_b), workspace,
                                       workspace_bytes, g, stream);
    case vidops::kFloat64:
      return wgrad_typed<double, double>(static_cast<const double*>(grad_y), static_cast<const double*>(x),
                                         static_cast<double*>(grad_w), static_cast<double*>(grad_b), workspace,
                                         workspace_bytes, g, stream);
    case vidops::kFloat16:
      return wgrad_typed<__half, float>(static_cast<const __half*>(grad_y), static_cast<const __half*>(x),
                                        static_cast<float*>(grad_w), static_cast<float*>(grad_b), workspace,
                                        workspace_bytes, g, stream);
    case vidops::kBFloat16:
      return wgrad_typed<__nv_bfloat16, float>(static_cast<const __nv_bfloat16*>(grad_y),
                                               static_cast<const __nv_bfloat16*>(x), static_cast<float*>(grad_w),
                                               static_cast<float*>(grad_b), workspace, workspace_bytes, g, stream);
    default: return "vidops depthwise_conv3d: unsupported dtype code";
  }
}
