// Device building blocks of the motion band-pass kernels (forward, backward, busy/quiet): the tile
// geometry, the loaders that fill a haloed tile in shared memory, and the k x k stencil on it.
// nvcc only (or the host emulation of common/cuda_launch.h); the per-element index math lives in
// common/band_pass_math.h, shared with the CPU kernels.
//
// Tiling. A block of kThreads = 64 threads owns one kTileH x kTileW = 32 x 32 tile of one output
// frame (n, c, t). Thread (tx, ty) = (tid % 8, tid / 8) owns the 4 x 4 outputs at tile rows
// ty*4 .. ty*4+3 and columns tx*4 .. tx*4+3. The block stages a haloed input tile of
// (32 + k - 1) x (32 + k - 1) values in shared memory (row stride `stride`, see Halo), computes the
// stencil from it, and writes its outputs.
//
// Stencil inner loop (k known at compile time): for each halo row rr the thread loads its window
// of 4 + k - 1 values of that row into registers (16-byte vector loads; a warp's 8 threads of one
// tile row read 8 consecutive 16-byte chunks: no bank conflicts), then for each of its output rows
// o with kernel row a = rr - o in [0, k) it loads the k weights of row a (uniform address: a
// broadcast) and does 4 x k FMAs. Per output that is k*k FMAs for (4 + k - 1)(4 + k - 1)/16 window
// loads and k*k/4 weight loads: FMA-bound. Each output sums its k*k terms in row-major (a, b)
// order, starting from 0, in the accumulation type (float, or double for float64 data).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/band_pass_math.h"
#include "common/band_pass_problem.h"
#include "common/cuda_launch.h"
#include "common/host_device.h"

namespace vidops {
namespace mbp {
namespace cuda {

constexpr int kThreadsX = 8;
constexpr int kThreadsY = 8;
constexpr int kThreads = kThreadsX * kThreadsY;  // 64, blockDim.x of every tile kernel
static_assert(kThreads % 32 == 0, "tile kernels run whole warps");
constexpr int kRowsPerThread = 4;
constexpr int kColsPerThread = 4;
constexpr int kTileW = kThreadsX * kColsPerThread;  // 32
constexpr int kTileH = kThreadsY * kRowsPerThread;  // 32

VIDOPS_HD constexpr int round_up4(int v) { return (v + 3) / 4 * 4; }

// Accumulation type: float for float32/float16/bfloat16 data, double for float64.
template <typename scalar_t>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void convert(float v, float& out) { out = v; }
__device__ __forceinline__ void convert(float v, __half& out) { out = __float2half_rn(v); }
__device__ __forceinline__ void convert(float v, __nv_bfloat16& out) { out = __float2bfloat16_rn(v); }
__device__ __forceinline__ void convert(double v, double& out) { out = v; }

// acc_t -> storage type, round to nearest even.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ scalar_t from_acc(acc_t v) {
  scalar_t out;
  convert(v, out);
  return out;
}

// Geometry of a haloed tile in shared memory: `rows` x `cols` cells hold data (the tile plus k - 1,
// plus `ext` more rows and columns for busy/quiet's resize), stored with row stride `stride`.
// stride is a multiple of 4 (16-byte rows for the vector loads) and 4 mod 8, so that 8
// consecutive rows start in 8 different 16-byte bank groups. Cells of columns [cols, stride) are
// written as 0 by the loaders; the window loads of the last threads of a row reach into them
// (never past stride: stride >= round_up4(kTileW + k - 1) = (kThreadsX - 1) * 4 + round_up4(k + 3)).
struct Halo {
  int k, r, rows, cols, stride;
};

VIDOPS_HD Halo make_halo(int k, int ext) {
  Halo h;
  h.k = k;
  h.r = (k - 1) / 2;
  h.rows = kTileH + k - 1 + ext;
  h.cols = kTileW + k - 1 + ext;
  h.stride = round_up4(h.cols);
  if (h.stride % 8 == 0) h.stride += 4;
  return h;
}

// Weights of one kernel row padded to a multiple of 4 (zeros) so a row loads as 16-byte vectors.
VIDOPS_HD int weight_row_stride(int k) { return round_up4(k); }

// The tile owned by a block, decoded from its linear index: tile column fastest, then tile row,
// output frame, batch, channel (slowest: the backward's per-channel partials are contiguous).
struct TileIndex {
  int64_t tile_x, tile_y, t, n, c;
  int64_t p0, q0;  // image row and column of the tile's top-left output
};

__device__ __forceinline__ TileIndex decode_tile(int64_t blk, int64_t tiles_x, int64_t tiles_y, int64_t frames,
                                                 int64_t N) {
  TileIndex ti;
  ti.tile_x = blk % tiles_x;
  blk /= tiles_x;
  ti.tile_y = blk % tiles_y;
  blk /= tiles_y;
  ti.t = blk % frames;
  blk /= frames;
  ti.n = blk % N;
  ti.c = blk / N;
  ti.p0 = ti.tile_y * kTileH;
  ti.q0 = ti.tile_x * kTileW;
  return ti;
}

// Copies the k x k weights of one channel into shared memory, rows padded to weight_row_stride(k)
// with zeros; flip = true stores the kernel rotated by 180 degrees (the adjoint stencil).
template <typename acc_t>
__device__ __forceinline__ void load_weights(acc_t* __restrict__ s, const acc_t* __restrict__ w, int k, bool flip) {
  const int kp = weight_row_stride(k);
  for (int e = threadIdx.x; e < k * kp; e += kThreads) {
    const int a = e / kp, b = e - a * kp;
    acc_t v = 0;
    if (b < k) v = flip ? w[(k - 1 - a) * k + (k - 1 - b)] : w[a * k + b];
    s[e] = v;
  }
}

// ---- Halo loading ---------------------------------------------------------------------------
// Per tile, the block first resolves the padding of every halo row and column once, into two
// small shared tables of element offsets (fill_halo_offsets): roff[hr] = source row * row stride,
// coff[hc] = source column * column stride, -1 where the cell is zero. The loader then walks the
// rows x stride cells linearly (consecutive threads: consecutive columns, coalesced when x's W
// stride is 1), kLoadUnroll cells per step with all their loads issued before the first use.

constexpr int kLoadUnroll = 4;

// Bytes of the two offset tables of a halo (rows + stride int64), a multiple of 16.
VIDOPS_HD int halo_table_bytes(const Halo& h) { return ((h.rows + h.stride) * 8 + 15) / 16 * 16; }

// roff[hr] / coff[hc] for the halo whose cell (hr, hc) is extended position (row0 + hr, col0 + hc):
// halo_source under spatial padding `mode` (kSpatialZeros: zero extension), times the stride.
// Columns [h.cols, h.stride) are -1.
__device__ __forceinline__ void fill_halo_offsets(int64_t* __restrict__ roff, int64_t* __restrict__ coff,
                                                  const Halo& h, int64_t H, int64_t W, int64_t row0, int64_t col0,
                                                  int64_t sH, int64_t sW, int mode) {
  for (int i = threadIdx.x; i < h.rows + h.stride; i += kThreads) {
    if (i < h.rows) {
      const int64_t si = halo_source(row0 + i, H, h.r, mode);
      roff[i] = si >= 0 ? si * sH : -1;
    } else {
      const int hc = i - h.rows;
      const int64_t sj = hc < h.cols ? halo_source(col0 + hc, W, h.r, mode) : -1;
      coff[hc] = sj >= 0 ? sj * sW : -1;
    }
  }
}

// s[hr * stride + hc] = sum_{j < kTaps, tap[j] != nullptr} tw[j] * src_j[roff[hr] + coff[hc]], summed
// in j order from 0 in acc_t; 0 where roff or coff is -1. tap[j] points at the frame of tap j
// (nullptr: a zero pad frame). With one tap and tw = 1 it copies (exactly) a zero-extended frame.
template <int kTaps, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_halo(acc_t* __restrict__ s, const Halo& h, const int64_t* __restrict__ roff,
                                          const int64_t* __restrict__ coff,
                                          const scalar_t* const (&tap)[kTaps], const acc_t (&tw)[kTaps]) {
  const int cells = h.rows * h.stride;
  int e = threadIdx.x;
  int hr = e / h.stride, hc = e - hr * h.stride;
  for (; e < cells; e += kLoadUnroll * kThreads) {
    acc_t v[kLoadUnroll];
    int idx[kLoadUnroll];
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {
      idx[u] = e + u * kThreads;
      v[u] = 0;
      if (idx[u] < cells) {
        const int64_t ro = roff[hr], co = coff[hc];
        if ((ro | co) >= 0) {  // both >= 0
          const int64_t off = ro + co;
#pragma unroll
          for (int j = 0; j < kTaps; ++j)
            if (tap[j] != nullptr) v[u] += tw[j] * to_acc(tap[j][off]);
        }
      }
      hc += kThreads;  // the cell kThreads further on
      while (hc >= h.stride) {
        hc -= h.stride;
        ++hr;
      }
    }
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u)
      if (idx[u] < cells) s[idx[u]] = v[u];
  }
}

// dst[0..N) = src[0..N) from shared memory with 16-byte loads (src 16-byte aligned, N % 4 == 0).
template <int N>
__device__ __forceinline__ void load_vec(const float* __restrict__ src, float (&dst)[N]) {
  static_assert(N % 4 == 0, "float windows load as float4");
#pragma unroll
  for (int i = 0; i < N; i += 4) {
    const float4 v = *reinterpret_cast<const float4*>(src + i);
    dst[i] = v.x;
    dst[i + 1] = v.y;
    dst[i + 2] = v.z;
    dst[i + 3] = v.w;
  }
}
template <int N>
__device__ __forceinline__ void load_vec(const double* __restrict__ src, double (&dst)[N]) {
  static_assert(N % 2 == 0, "double windows load as double2");
#pragma unroll
  for (int i = 0; i < N; i += 2) {
    const double2 v = *reinterpret_cast<const double2*>(src + i);
    dst[i] = v.x;
    dst[i + 1] = v.y;
  }
}

// acc[o][q] += sum_{a,b} w[a][b] * s[(ty*4 + o + a) * stride + tx*4 + q + b] for the calling
// thread's 4 x 4 outputs: the k x k correlation of the halo tile s (origin: the tile's top-left
// output minus r in each axis) with the weights w (rows padded to weight_row_stride(k)). K > 0 is
// the compile-time kernel size (K == k); K == 0 handles any k with run-time loops. Both add the
// terms of each output in row-major (a, b) order.
template <int K, typename acc_t>
__device__ __forceinline__ void stencil(const acc_t* __restrict__ s, int stride, const acc_t* __restrict__ w, int k,
                                        acc_t (&acc)[kRowsPerThread][kColsPerThread]) {
  const int tx = threadIdx.x % kThreadsX, ty = threadIdx.x / kThreadsX;
  const acc_t* base = s + (ty * kRowsPerThread) * stride + tx * kColsPerThread;
  if constexpr (K > 0) {
    constexpr int kWin = round_up4(kColsPerThread + K - 1);
    constexpr int kWp = round_up4(K);
#pragma unroll
    for (int rr = 0; rr < kRowsPerThread + K - 1; ++rr) {
      acc_t win[kWin];
      load_vec(base + rr * stride, win);
#pragma unroll
      for (int o = 0; o < kRowsPerThread; ++o) {
        const int a = rr - o;
        if (a >= 0 && a < K) {
          acc_t wr[kWp];
          load_vec(w + a * kWp, wr);
#pragma unroll
          for (int b = 0; b < K; ++b)
#pragma unroll
            for (int q = 0; q < kColsPerThread; ++q) acc[o][q] += wr[b] * win[q + b];
        }
      }
    }
  } else {
    const int kp = weight_row_stride(k);
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b) {
        const acc_t wv = w[a * kp + b];
#pragma unroll
        for (int o = 0; o < kRowsPerThread; ++o)
#pragma unroll
          for (int q = 0; q < kColsPerThread; ++q) acc[o][q] += wv * base[(o + a) * stride + q + b];
      }
  }
}

// The stencil at one cell: sum_{a,b} w[a][b] * s[(i + a) * stride + j + b], row-major (a, b).
template <typename acc_t>
__device__ __forceinline__ acc_t stencil_at(const acc_t* __restrict__ s, int stride, const acc_t* __restrict__ w,
                                            int k, int i, int j) {
  const int kp = weight_row_stride(k);
  acc_t v = 0;
  for (int a = 0; a < k; ++a)
    for (int b = 0; b < k; ++b) v += w[a * kp + b] * s[(i + a) * stride + j + b];
  return v;
}

// Stores 4 consecutive values with one vector store: dst aligned to 4 elements (16 bytes for float,
// 8 for half types; double takes two 16-byte stores). On the GPU through __stwb (a plain
// write-back store): an assignment through a cast pointer was split back into scalar stores by
// nvcc 13 inside the kernels.
#ifdef VIDOPS_CUDA_EMULATION
template <typename V>
inline void vector_store(V* dst, V value) { *dst = value; }
#else
template <typename V>
__device__ __forceinline__ void vector_store(V* dst, V value) { __stwb(dst, value); }
#endif

__device__ __forceinline__ void store4(float* dst, const float (&v)[kColsPerThread]) {
  vector_store(reinterpret_cast<float4*>(dst), make_float4(v[0], v[1], v[2], v[3]));
}
__device__ __forceinline__ void store4(double* dst, const double (&v)[kColsPerThread]) {
  vector_store(reinterpret_cast<double2*>(dst), make_double2(v[0], v[1]));
  vector_store(reinterpret_cast<double2*>(dst) + 1, make_double2(v[2], v[3]));
}
template <typename half_t>
__device__ __forceinline__ void store4_half(half_t* dst, const float (&v)[kColsPerThread]) {
  static_assert(sizeof(half_t) == 2, "16-bit types");
  half_t h[kColsPerThread];
#pragma unroll
  for (int q = 0; q < kColsPerThread; ++q) h[q] = from_acc<half_t>(v[q]);
  uint2 bits;
  memcpy(&bits, h, sizeof(bits));
  vector_store(reinterpret_cast<uint2*>(dst), bits);
}
__device__ __forceinline__ void store4(__half* dst, const float (&v)[kColsPerThread]) { store4_half(dst, v); }
__device__ __forceinline__ void store4(__nv_bfloat16* dst, const float (&v)[kColsPerThread]) { store4_half(dst, v); }

// Writes the thread's 4 values of one output row: dst points at the first of them, `valid` of
// them lie inside the image (<= 0: none). vec: dst is aligned to 4 elements (the host checks the
// base pointer and W % 4 == 0), so a full group of 4 goes out as one vector store.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_row(scalar_t* __restrict__ dst, const acc_t (&vals)[kColsPerThread],
                                          int64_t valid, bool vec) {
  if (vec && valid >= kColsPerThread) {
    store4(dst, vals);
  } else {
#pragma unroll
    for (int q = 0; q < kColsPerThread; ++q)
      if (q < valid) dst[q] = from_acc<scalar_t>(vals[q]);
  }
}

// Blocks in a launch: one per tile, capped (the kernels loop over the rest). The emulation build
// lowers the cap with VIDOPS_EMU_MAX_GRID so tests exercise those loops.
constexpr int64_t kMaxGridBlocks = int64_t(1) << 30;

inline unsigned grid_blocks(int64_t blocks) {
  int64_t cap = kMaxGridBlocks;
#ifdef VIDOPS_CUDA_EMULATION
  if (const char* env = std::getenv("VIDOPS_EMU_MAX_GRID")) cap = std::max<int64_t>(1, std::atoll(env));
#endif
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The templated kernel sizes; others run the run-time-k (K = 0) kernels.
inline bool has_static_k(int k) { return k == 3 || k == 5 || k == 7 || k == 9 || k == 11; }

// ---- the band-pass stem shared by the tile kernels (forward, backward, busy/quiet) ------------

// The parameters every stem tile kernel reads: x and the weights (in the accumulation type), the
// geometry, x's element strides, the tile grid and the modes. Kernel parameter structs derive from
// it and fill it with fill_stem (once, from the launcher problem).
template <typename scalar_t>
struct StemParams {
  using acc_t = typename Acc<scalar_t>::type;
  const scalar_t* x;  // (N, C, T, H, W), strides sN..sW
  const acc_t* sw;    // (C, k, k) contiguous
  const acc_t* tw;    // (C, 3) contiguous
  int64_t N, C, T, H, W, T_out;
  int64_t sN, sC, sT, sH, sW;
  int64_t tiles_x, tiles_y, blocks;  // kTileH x kTileW tiles of one output frame; blocks: all of them
  int k, stride, spad, tpad;
};

template <typename scalar_t>
inline void fill_stem(StemParams<scalar_t>& p, const VidopsMbpProblem& pr, const void* x, const void* sw,
                      const void* tw) {
  using acc_t = typename Acc<scalar_t>::type;
  p.x = static_cast<const scalar_t*>(x);
  p.sw = static_cast<const acc_t*>(sw);
  p.tw = static_cast<const acc_t*>(tw);
  p.N = pr.N;
  p.C = pr.C;
  p.T = pr.T;
  p.H = pr.H;
  p.W = pr.W;
  p.T_out = pr.T_out;
  p.sN = pr.x_strides[0];
  p.sC = pr.x_strides[1];
  p.sT = pr.x_strides[2];
  p.sH = pr.x_strides[3];
  p.sW = pr.x_strides[4];
  p.tiles_x = ceil_div(pr.W, kTileW);
  p.tiles_y = ceil_div(pr.H, kTileH);
  p.blocks = p.tiles_x * p.tiles_y * pr.T_out * pr.N * pr.C;
  p.k = pr.k;
  p.stride = pr.temporal_stride;
  p.spad = pr.spatial_padding;
  p.tpad = pr.temporal_padding;
}

// The forward stem of tile ti, as every forward-style kernel runs it: after a barrier (the previous
// tile's shared memory is free), stages the k x k weights of channel ti.c in s_w and pad_s(Y) with
// its halo in s_y (Y = the temporal 3-tap combination of x in acc_t, the spatial padding resolved
// by the offset tables s_roff / s_coff), then adds the k x k stencil of each of the thread's
// outputs into acc. s_y and s_w stay valid for further reads of this tile.
template <int K, typename scalar_t, typename acc_t>
__device__ __forceinline__ void stem_tile(const StemParams<scalar_t>& p, const TileIndex& ti, const Halo& h, int k,
                                          int64_t* s_roff, int64_t* s_coff, acc_t* s_y, acc_t* s_w,
                                          acc_t (&acc)[kRowsPerThread][kColsPerThread]) {
  __syncthreads();  // every thread is done reading the previous tile's shared memory
  load_weights(s_w, p.sw + ti.c * k * k, k, /*flip=*/false);
  fill_halo_offsets(s_roff, s_coff, h, p.H, p.W, ti.p0 - h.r, ti.q0 - h.r, p.sH, p.sW, p.spad);
  acc_t tw[3];
  const scalar_t* tap[3];  // the source frame of each temporal tap, nullptr for a zero pad frame
  const scalar_t* plane = p.x + ti.n * p.sN + ti.c * p.sC;
#pragma unroll
  for (int j = 0; j < 3; ++j) {
    tw[j] = p.tw[ti.c * 3 + j];
    const int64_t f = temporal_source(ti.t, j, p.stride, p.tpad, p.T);
    tap[j] = f >= 0 ? plane + f * p.sT : nullptr;
  }
  __syncthreads();  // offset tables ready
  load_halo(s_y, h, s_roff, s_coff, tap, tw);
  __syncthreads();
  stencil<K>(s_y, h.stride, s_w, k, acc);
}

// f(std::integral_constant<int, K>()) with K = k for the templated kernel sizes (has_static_k),
// K = 0 (the run-time-k kernels) otherwise.
template <typename F>
inline const char* dispatch_k(int k, F&& f) {
  switch (k) {
    case 3: return f(std::integral_constant<int, 3>());
    case 5: return f(std::integral_constant<int, 5>());
    case 7: return f(std::integral_constant<int, 7>());
    case 9: return f(std::integral_constant<int, 9>());
    case 11: return f(std::integral_constant<int, 11>());
    default: return f(std::integral_constant<int, 0>());
  }
}

// Launches a tile kernel over p.blocks tiles (grid_blocks of them, the kernel loops over the
// rest), kThreads threads each, with smem bytes of dynamic shared memory.
template <typename Params>
inline const char* launch_tiles(void (*kernel)(const Params), const Params& p, size_t smem, void* stream) {
  if (const char* e = gpu::allow_dynamic_smem(kernel, smem)) return e;
  return gpu::launch(kernel, dim3(grid_blocks(p.blocks)), dim3(kThreads), smem, stream, p);
}

template <typename T>
struct TypeTag {
  using type = T;
};

// f(TypeTag<scalar_t>()) for the scalar type of a VidopsCudaDtype; `unsupported` for other codes.
template <typename F>
inline const char* dispatch_dtype(int32_t dtype, const char* unsupported, F&& f) {
  switch (dtype) {
    case kVidopsFloat32: return f(TypeTag<float>());
    case kVidopsFloat64: return f(TypeTag<double>());
    case kVidopsFloat16: return f(TypeTag<__half>());
    case kVidopsBFloat16: return f(TypeTag<__nv_bfloat16>());
    default: return unsupported;
  }
}

// Checks what a launcher is given (the glue has checked the tensors; this guards the kernels'
// index math against a malformed call): nullptr when the problem is well formed.
inline const char* validate_problem(const VidopsMbpProblem* p) {
  if (p == nullptr) return "vidops motion band-pass (CUDA): null problem";
  if (p->k < 1 || p->k % 2 == 0) return "vidops motion band-pass (CUDA): the kernel size k must be odd and >= 1";
  if (p->temporal_stride < 1) return "vidops motion band-pass (CUDA): temporal_stride must be >= 1";
  if (p->spatial_padding != kReflect && p->spatial_padding != kSpatialZeros)
    return "vidops motion band-pass (CUDA): unknown spatial padding mode";
  if (p->temporal_padding != kValid && p->temporal_padding != kReplicate && p->temporal_padding != kTemporalZeros)
    return "vidops motion band-pass (CUDA): unknown temporal padding mode";
  if (p->N < 0 || p->C < 0 || p->T < 0 || p->H < 0 || p->W < 0)
    return "vidops motion band-pass (CUDA): negative size";
  if (p->T_out < 1 || p->T_out != output_frames(p->T, p->temporal_stride, p->temporal_padding))
    return "vidops motion band-pass (CUDA): T_out does not match T, the stride and the temporal padding";
  const int r = (p->k - 1) / 2;
  if (p->spatial_padding == kReflect && p->H * p->W > 0 && (p->H <= r || p->W <= r))
    return "vidops motion band-pass (CUDA): reflect padding needs H and W larger than (k - 1) / 2";
  return nullptr;
}

}  // namespace cuda
}  // namespace mbp
}  // namespace vidops
