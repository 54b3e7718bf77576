// Backward CUDA kernels of the motion band-pass filter (operators.md §1.1), with the temporal-first
// factorisation out = S(Y), Y = Tf(x) (vidops.reference.motion_band_pass_backward):
//     gY          = S^T(grad)     adjoint stencil: flipped kernel over the zero-extended grad, plus
//                                 the reflect borders folded back (reflect_preimage)
//     g_sw[c,a,b] = sum_{n,t,i,j} grad[n,c,t,i,j] * pad_s(Y)[n,c,t][i+a, j+b]
//     g_tw[c,j]   = sum_{n,t,h,w} gY[n,c,t,h,w] * x[n,c, src(t,j), h, w]
//     g_x         = Tf^T(gY):     g_x[f] = sum over the taps (t, j) that read frame f of tw[j] * gY[t]
//
// 1. mbp_backward_tile_kernel, one block per 32 x 32 tile of one output frame (n, c, t), 64
//    threads (common/tile_cuda.h): stages pad_s(Y) (rebuilt from x as in the forward)
//    and the zero-extended grad, each with a halo of r, in shared memory; computes gY for the
//    thread's 4 x 4 pixels with the forward's stencil and the flipped kernel, adds the reflect
//    folds on border pixels, accumulates g_tw, and writes g_x directly when each input frame is
//    read by a single output frame (stride >= 3, e.g. the stem), else gY to a workspace. The
//    block's g_sw partial sums are computed by (kernel row a, tile row group g) work items, each
//    summing whole tile rows with a register window; g_sw and g_tw partials are reduced inside the
//    block in a fixed order and written to the workspace, one row per block.
// 2. mbp_reduce_partials_kernel: one block per (channel, weight) sums the per-block partials with a
//    fixed-order tree: deterministic weight gradients without atomics.
// 3. mbp_backward_gather_kernel (only when input frames are read by several output frames, stride
//    1 or 2): g_x[f] gathered from the gY workspace over the readers of frame f.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "common/tile_cuda.h"
#include "motion_band_pass/motion_band_pass_cuda.h"
#include "motion_band_pass/motion_band_pass_math.h"

namespace vidops {
namespace mbp {
namespace cuda {
namespace {

constexpr int kReduceThreads = 64;
constexpr int kGatherThreads = 256;
constexpr size_t kWorkspaceAlign = 256;

template <typename scalar_t>
struct BwdParams : StemParams<scalar_t> {  // x (N, C, T, H, W) with strides sN..sW, weights, tiles
  using acc_t = typename Acc<scalar_t>::type;
  const scalar_t* g;  // grad_out (N, C, T_out, H, W), strides gN..gW
  scalar_t* gx;       // (N, C, T, H, W) contiguous (direct_gx)
  acc_t* gy;          // (N, C, T_out, H, W) contiguous workspace (!direct_gx)
  acc_t* partial;     // (C, k*k + 3, blocks_per_channel): per-block g_sw then g_tw partial sums
  int64_t gN, gC, gT, gH, gW;
  int64_t blocks_per_channel;
  bool direct_gx;
  bool vec_gx;  // W % 4 == 0 and gx aligned: 4 values per store
};

// Work items of the g_sw partial sums: (kernel row a, group g) for g < weight_grad_groups(k);
// group g takes the tile rows i = g, g + groups, ...
__host__ __device__ inline int weight_grad_groups(int k) { return kThreads / k > 0 ? kThreads / k : 1; }

// Shared memory of the tile kernel: first the halo offset tables of x (padded) and of grad (zero
// extended), halo_table_bytes each; then, in acc_t elements from `acc_base` bytes: s_y, s_g (haloed
// tiles), s_w, s_wf (kernel and flipped kernel), s_gy (the tile's gY, for the reflect folds), s_gsw
// (groups x k*k partials), s_gtw (3 x kThreads partials). Vector-loaded arrays start at multiples
// of 4 elements (16 bytes).
struct BwdSmem {
  int xtab, gtab, acc_base;                  // bytes
  int y, g, w, wf, gy, gsw, gtw, acc_total;  // acc_t elements from acc_base
};

__host__ __device__ inline BwdSmem bwd_smem_layout(int k) {
  const Halo h = make_halo(k, 0);
  const int tile = h.rows * h.stride, wsize = k * weight_row_stride(k);
  BwdSmem l;
  l.xtab = 0;
  l.gtab = halo_table_bytes(h);
  l.acc_base = 2 * halo_table_bytes(h);
  l.y = 0;
  l.g = l.y + tile;
  l.w = l.g + tile;
  l.wf = l.w + wsize;
  l.gy = l.wf + wsize;
  l.gsw = l.gy + kTileH * kTileW;
  l.gtw = l.gsw + weight_grad_groups(k) * k * k;
  l.acc_total = l.gtw + 3 * kThreads;
  return l;
}

template <typename acc_t>
__host__ __device__ inline size_t bwd_smem_bytes(int k) {
  const BwdSmem l = bwd_smem_layout(k);
  return static_cast<size_t>(l.acc_base) + static_cast<size_t>(l.acc_total) * sizeof(acc_t);
}

// The reflect-border terms of the adjoint at pixel (pr, pc), whose cell in the halo tile s_g is
// (hr, hc): every preimage pair (x, y) of (pr, pc) (reflect_preimage) other than the pixel itself
// adds sum_{d,e in [-r, r]} G[pr+d][pc+e] * K[x - (pr+d) + r][y - (pc+e) + r] (K = 0 outside
// [0, k)^2). All G cells read lie in the pixel's (2r+1)^2 window of s_g. Called for border pixels
// only (reflect_folds_into).
template <typename acc_t>
__device__ __forceinline__ acc_t reflect_fold_terms(const acc_t* __restrict__ s_g, int stride,
                                                 const acc_t* __restrict__ s_w, int k, int64_t pr, int64_t pc,
                                                 int hr, int hc, int64_t H, int64_t W) {
  const int r = (k - 1) / 2, kp = weight_row_stride(k);
  acc_t extra = 0;
  for (int ix = 0; ix < 3; ++ix) {
    int64_t x;
    if (!reflect_preimage(pr, H, r, kReflect, ix, x)) continue;
    for (int iy = 0; iy < 3; ++iy) {
      int64_t y;
      if (!reflect_preimage(pc, W, r, kReflect, iy, y)) continue;
      if (ix == 0 && iy == 0) continue;  // the pixel itself: the flipped-kernel stencil
      for (int d = -r; d <= r; ++d) {
        const int64_t a = x - (pr + d) + r;
        if (a < 0 || a >= k) continue;
        for (int e = -r; e <= r; ++e) {
          const int64_t b = y - (pc + e) + r;
          if (b < 0 || b >= k) continue;
          extra += s_g[(hr + d) * stride + hc + e] * s_w[a * kp + b];
        }
      }
    }
  }
  return extra;
}

// s_gsw[g*k*k + a*k + b] = sum_{tile rows i = g mod groups} sum_{j < kTileW} G[i][j] * pad_s(Y)[i+a][j+b]
// for every work item (a, g); G is zero outside the image, so out-of-image pixels add nothing.
template <int K, typename acc_t>
__device__ __forceinline__ void weight_grad_partials(const acc_t* __restrict__ s_g, const acc_t* __restrict__ s_y,
                                                     const Halo& h, acc_t* __restrict__ s_gsw) {
  const int k = h.k, kk = k * k, groups = weight_grad_groups(k);
  for (int item = threadIdx.x; item < k * groups; item += kThreads) {
    const int a = item % k, g = item / k;
    if constexpr (K > 0) {
      constexpr int kWin = round_up4(kTileW + K - 1);  // <= h.stride
      acc_t acc[K] = {};
      for (int i = g; i < kTileH; i += groups) {
        acc_t win[kWin];
        load_vec(s_y + (i + a) * h.stride, win);
        const acc_t* grow = s_g + (i + h.r) * h.stride + h.r;
#pragma unroll
        for (int j = 0; j < kTileW; ++j) {
          const acc_t gv = grow[j];
#pragma unroll
          for (int b = 0; b < K; ++b) acc[b] += gv * win[j + b];
        }
      }
#pragma unroll
      for (int b = 0; b < K; ++b) s_gsw[g * kk + a * K + b] = acc[b];
    } else {
      for (int b = 0; b < k; ++b) {
        acc_t v = 0;
        for (int i = g; i < kTileH; i += groups)
          for (int j = 0; j < kTileW; ++j) v += s_g[(i + h.r) * h.stride + h.r + j] * s_y[(i + a) * h.stride + j + b];
        s_gsw[g * kk + a * k + b] = v;
      }
    }
  }
}

template <typename scalar_t, int K>
__global__ void __launch_bounds__(kThreads) mbp_backward_tile_kernel(const BwdParams<scalar_t> p) {
  using acc_t = typename Acc<scalar_t>::type;
  const int k = K > 0 ? K : p.k;
  const int kk = k * k;
  const Halo h = make_halo(k, 0);
  const BwdSmem l = bwd_smem_layout(k);
  VIDOPS_DYNAMIC_SMEM(unsigned char, smem);
  int64_t* s_xroff = reinterpret_cast<int64_t*>(smem + l.xtab);
  int64_t* s_xcoff = s_xroff + h.rows;
  int64_t* s_groff = reinterpret_cast<int64_t*>(smem + l.gtab);
  int64_t* s_gcoff = s_groff + h.rows;
  acc_t* acc_smem = reinterpret_cast<acc_t*>(smem + l.acc_base);
  acc_t* s_y = acc_smem + l.y;
  acc_t* s_g = acc_smem + l.g;
  acc_t* s_w = acc_smem + l.w;
  acc_t* s_wf = acc_smem + l.wf;
  acc_t* s_gy = acc_smem + l.gy;
  acc_t* s_gsw = acc_smem + l.gsw;
  acc_t* s_gtw = acc_smem + l.gtw;
  const int tid = threadIdx.x;
  const int tx = tid % kThreadsX, ty = tid / kThreadsX;
  const int groups = weight_grad_groups(k);

  for (int64_t blk = blockIdx.x; blk < p.blocks; blk += gridDim.x) {
    const TileIndex ti = decode_tile(blk, p.tiles_x, p.tiles_y, p.T_out, p.N);
    __syncthreads();  // every thread is done with the previous tile's shared memory
    load_weights(s_w, p.sw + ti.c * kk, k, /*flip=*/false);
    load_weights(s_wf, p.sw + ti.c * kk, k, /*flip=*/true);
    fill_halo_offsets(s_xroff, s_xcoff, h, p.H, p.W, ti.p0 - h.r, ti.q0 - h.r, p.sH, p.sW, p.spad);
    fill_halo_offsets(s_groff, s_gcoff, h, p.H, p.W, ti.p0 - h.r, ti.q0 - h.r, p.gH, p.gW, kSpatialZeros);
    acc_t tw[3];
    int64_t frame[3];
    const scalar_t* tap[3];  // the source frame of each temporal tap, nullptr for a zero pad frame
    const scalar_t* x_plane = p.x + ti.n * p.sN + ti.c * p.sC;
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      tw[j] = p.tw[ti.c * 3 + j];
      frame[j] = temporal_source(ti.t, j, p.stride, p.tpad, p.T);
      tap[j] = frame[j] >= 0 ? x_plane + frame[j] * p.sT : nullptr;
    }
    const scalar_t* g_tap[1] = {p.g + ti.n * p.gN + ti.c * p.gC + ti.t * p.gT};
    const acc_t one[1] = {acc_t(1)};
    __syncthreads();  // offset tables ready
    load_halo(s_y, h, s_xroff, s_xcoff, tap, tw);        // pad_s(Y), as the forward
    load_halo(s_g, h, s_groff, s_gcoff, g_tap, one);     // grad, zero-extended
    __syncthreads();

    // gY at the thread's 4 x 4 pixels.
    acc_t gy[kRowsPerThread][kColsPerThread] = {};
    stencil<K>(s_g, h.stride, s_wf, k, gy);
    if (p.spad == kReflect && (ti.p0 <= h.r || ti.p0 + kTileH >= p.H - 1 - h.r || ti.q0 <= h.r ||
                               ti.q0 + kTileW >= p.W - 1 - h.r)) {
      // The tile may hold reflect-border pixels (block-uniform test): add their folded terms in
      // shared memory, one cell per thread in turn, then take gY back.
#pragma unroll
      for (int o = 0; o < kRowsPerThread; ++o)
#pragma unroll
        for (int q = 0; q < kColsPerThread; ++q)
          s_gy[(ty * kRowsPerThread + o) * kTileW + tx * kColsPerThread + q] = gy[o][q];
      __syncthreads();
      for (int e = tid; e < kTileH * kTileW; e += kThreads) {
        const int i = e / kTileW, j = e - i * kTileW;
        const int64_t pr = ti.p0 + i, pc = ti.q0 + j;
        if (pr < p.H && pc < p.W &&
            (reflect_folds_into(pr, p.H, h.r, kReflect) || reflect_folds_into(pc, p.W, h.r, kReflect)))
          s_gy[e] += reflect_fold_terms(s_g, h.stride, s_w, k, pr, pc, i + h.r, j + h.r, p.H, p.W);
      }
      __syncthreads();
#pragma unroll
      for (int o = 0; o < kRowsPerThread; ++o)
#pragma unroll
        for (int q = 0; q < kColsPerThread; ++q)
          gy[o][q] = s_gy[(ty * kRowsPerThread + o) * kTileW + tx * kColsPerThread + q];
    }

    // g_tw partials, and g_x (direct) or gY (workspace).
    acc_t gtw[3] = {0, 0, 0};
    const int64_t col = ti.q0 + tx * kColsPerThread;
    if (col < p.W) {
#pragma unroll
      for (int o = 0; o < kRowsPerThread; ++o) {
        const int64_t row = ti.p0 + ty * kRowsPerThread + o;
        if (row >= p.H) continue;
#pragma unroll
        for (int q = 0; q < kColsPerThread; ++q) {
          if (col + q >= p.W) continue;
          const scalar_t* px = x_plane + row * p.sH + (col + q) * p.sW;
#pragma unroll
          for (int j = 0; j < 3; ++j)
            if (frame[j] >= 0) gtw[j] += gy[o][q] * to_acc(px[frame[j] * p.sT]);
        }
        if (p.direct_gx) {
          scalar_t* gx_plane = p.gx + (ti.n * p.C + ti.c) * p.T * p.H * p.W;
#pragma unroll
          for (int j = 0; j < 3; ++j) {
            // Each distinct frame read by this output frame gets the sum of its taps' terms.
            const int64_t f = frame[j];
            bool first_tap_of_f = f >= 0;
#pragma unroll
            for (int jj = 0; jj < j; ++jj)
              if (frame[jj] == f) first_tap_of_f = false;
            if (!first_tap_of_f) continue;
            acc_t vals[kColsPerThread];
#pragma unroll
            for (int q = 0; q < kColsPerThread; ++q) {
              vals[q] = 0;
#pragma unroll
              for (int jj = j; jj < 3; ++jj)
                if (frame[jj] == f) vals[q] += tw[jj] * gy[o][q];
            }
            store_row(gx_plane + (f * p.H + row) * p.W + col, vals, p.W - col, p.vec_gx);
          }
        } else {
          acc_t* gy_frame = p.gy + ((ti.n * p.C + ti.c) * p.T_out + ti.t) * p.H * p.W;
          store_row(gy_frame + row * p.W + col, gy[o], p.W - col, p.vec_gx);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 3; ++j) s_gtw[j * kThreads + tid] = gtw[j];

    // g_sw partials of the tile (reads s_g and s_y only).
    weight_grad_partials<K>(s_g, s_y, h, s_gsw);
    __syncthreads();

    // The block's partials, each summed in a fixed order, to its row of the workspace.
    const int64_t row_in_channel = blk - ti.c * p.blocks_per_channel;
    for (int e = tid; e < kk + 3; e += kThreads) {
      acc_t v = 0;
      if (e < kk) {
        for (int g = 0; g < groups; ++g) v += s_gsw[g * kk + e];
      } else {
        for (int i = 0; i < kThreads; ++i) v += s_gtw[(e - kk) * kThreads + i];
      }
      p.partial[(ti.c * (kk + 3) + e) * p.blocks_per_channel + row_in_channel] = v;
    }
  }
}

// Sums each column of partial (columns = C * (k*k + 3) rows of `rows` values) with a fixed-order
// block tree and writes g_sw (c, e < k*k) and g_tw (c, e - k*k).
template <typename acc_t>
__global__ void __launch_bounds__(kReduceThreads)
    mbp_reduce_partials_kernel(const acc_t* __restrict__ partial, int64_t columns, int64_t rows, int kk,
                               acc_t* __restrict__ gsw, acc_t* __restrict__ gtw) {
  VIDOPS_DYNAMIC_SMEM(acc_t, s);  // kReduceThreads
  const int tid = threadIdx.x;
  for (int64_t column = blockIdx.x; column < columns; column += gridDim.x) {
    acc_t v = 0;
    for (int64_t i = tid; i < rows; i += kReduceThreads) v += partial[column * rows + i];
    __syncthreads();  // thread 0 is done reading the previous column's sum
    s[tid] = v;
    __syncthreads();
    for (int width = kReduceThreads / 2; width > 0; width /= 2) {
      if (tid < width) s[tid] += s[tid + width];
      __syncthreads();
    }
    if (tid == 0) {
      const int64_t c = column / (kk + 3), e = column % (kk + 3);
      if (e < kk) {
        gsw[c * kk + e] = s[0];
      } else {
        gtw[c * 3 + (e - kk)] = s[0];
      }
    }
  }
}

// g_x[n,c,f] = sum over the taps (t, j) with temporal_source(t, j) == f of tw[c,j] * gY[n,c,t],
// in (t, j) order; one thread per element of the contiguous g_x.
template <typename scalar_t>
__global__ void __launch_bounds__(kGatherThreads)
    mbp_backward_gather_kernel(const typename Acc<scalar_t>::type* __restrict__ gy,
                               const typename Acc<scalar_t>::type* __restrict__ tw, scalar_t* __restrict__ gx,
                               int64_t N, int64_t C, int64_t T, int64_t HW, int64_t T_out, int stride, int tpad) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t total = N * C * T * HW;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kGatherThreads;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * kGatherThreads + threadIdx.x; idx < total; idx += step) {
    const int64_t hw = idx % HW;
    const int64_t rest = idx / HW;
    const int64_t f = rest % T;
    const int64_t nc = rest / T;
    const int64_t c = nc % C;
    int64_t lo, hi;
    temporal_reader_bounds(f, stride, tpad, T_out, lo, hi);
    acc_t v = 0;
    for (int64_t t = lo; t <= hi; ++t)
#pragma unroll
      for (int j = 0; j < 3; ++j)
        if (temporal_source(t, j, stride, tpad, T) == f) v += tw[c * 3 + j] * gy[(nc * T_out + t) * HW + hw];
    gx[idx] = from_acc<scalar_t>(v);
  }
}

// ---- host side ----------------------------------------------------------------------------------

struct BwdPlan {
  int64_t tiles_x, tiles_y, blocks_per_channel, blocks;
  bool direct_gx;   // every input frame is read by at most one output frame: the tile kernel writes g_x
  bool covers_all;  // every input frame is read (else g_x is zeroed first in the direct case)
  size_t acc_size, partial_bytes, gy_offset, gy_bytes, total_bytes;
};

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

BwdPlan plan_backward(const VidopsMbpProblem& pr) {
  BwdPlan pl;
  pl.tiles_x = ceil_div(pr.W, kTileW);
  pl.tiles_y = ceil_div(pr.H, kTileH);
  pl.blocks_per_channel = pl.tiles_x * pl.tiles_y * pr.T_out * pr.N;
  pl.blocks = pl.blocks_per_channel * pr.C;
  // Which output frames read each input frame: temporal_source over every tap, as the kernels.
  std::vector<int64_t> reader(static_cast<size_t>(pr.T), -1);
  pl.direct_gx = true;
  for (int64_t t = 0; t < pr.T_out; ++t)
    for (int j = 0; j < 3; ++j) {
      const int64_t f = temporal_source(t, j, pr.temporal_stride, pr.temporal_padding, pr.T);
      if (f < 0) continue;
      if (reader[f] < 0) {
        reader[f] = t;
      } else if (reader[f] != t) {
        pl.direct_gx = false;
      }
    }
  pl.covers_all = true;
  for (int64_t f = 0; f < pr.T; ++f)
    if (reader[f] < 0) pl.covers_all = false;
  pl.acc_size = pr.dtype == kVidopsFloat64 ? sizeof(double) : sizeof(float);
  pl.partial_bytes = static_cast<size_t>(pr.C * (int64_t(pr.k) * pr.k + 3) * pl.blocks_per_channel) * pl.acc_size;
  pl.gy_offset = align_up(pl.partial_bytes, kWorkspaceAlign);
  pl.gy_bytes = pl.direct_gx ? 0 : static_cast<size_t>(pr.N * pr.C * pr.T_out * pr.H * pr.W) * pl.acc_size;
  pl.total_bytes = pl.gy_offset + pl.gy_bytes;
  return pl;
}

template <typename scalar_t>
const char* backward(const VidopsMbpProblem& pr, const BwdPlan& pl, const void* grad, const void* x, const void* sw,
                     const void* tw, void* gx, void* gsw, void* gtw, void* workspace, void* stream) {
  using acc_t = typename Acc<scalar_t>::type;
  const int kk = pr.k * pr.k;
  if (pr.N * pr.C * pr.T * pr.H * pr.W == 0) {  // empty batch or frame: zero weight gradients
    if (const char* e = gpu::memset_async(gsw, 0, static_cast<size_t>(pr.C * kk) * sizeof(acc_t), stream)) return e;
    return gpu::memset_async(gtw, 0, static_cast<size_t>(pr.C * 3) * sizeof(acc_t), stream);
  }
  BwdParams<scalar_t> p;
  fill_stem<scalar_t>(p, pr, x, sw, tw);
  p.g = static_cast<const scalar_t*>(grad);
  p.gx = static_cast<scalar_t*>(gx);
  p.partial = static_cast<acc_t*>(workspace);
  p.gy = pl.direct_gx ? nullptr : reinterpret_cast<acc_t*>(static_cast<unsigned char*>(workspace) + pl.gy_offset);
  p.gN = pr.grad_strides[0];
  p.gC = pr.grad_strides[1];
  p.gT = pr.grad_strides[2];
  p.gH = pr.grad_strides[3];
  p.gW = pr.grad_strides[4];
  p.tiles_x = pl.tiles_x;
  p.tiles_y = pl.tiles_y;
  p.blocks = pl.blocks;
  p.blocks_per_channel = pl.blocks_per_channel;
  p.direct_gx = pl.direct_gx;
  // The workspace gY is 256-byte aligned; g_x as the caller allocated it.
  const void* row_target = pl.direct_gx ? gx : static_cast<const void*>(p.gy);
  const size_t elem = pl.direct_gx ? sizeof(scalar_t) : sizeof(acc_t);
  p.vec_gx = pr.W % kColsPerThread == 0 && reinterpret_cast<uintptr_t>(row_target) % (elem * kColsPerThread) == 0;

  if (pl.direct_gx && !pl.covers_all) {
    const size_t bytes = static_cast<size_t>(pr.N * pr.C * pr.T * pr.H * pr.W) * sizeof(scalar_t);
    if (const char* e = gpu::memset_async(gx, 0, bytes, stream)) return e;
  }
  const size_t smem = bwd_smem_bytes<acc_t>(pr.k);
  const char* err = dispatch_k(pr.k, [&](auto K) {
    return launch_tiles(mbp_backward_tile_kernel<scalar_t, decltype(K)::value>, p, smem, stream);
  });
  if (err) return err;

  const int64_t columns = pr.C * (kk + 3);
  err = gpu::launch(mbp_reduce_partials_kernel<acc_t>, dim3(grid_blocks(columns)), dim3(kReduceThreads),
               kReduceThreads * sizeof(acc_t), stream, static_cast<const acc_t*>(p.partial), columns,
               pl.blocks_per_channel, kk, static_cast<acc_t*>(gsw), static_cast<acc_t*>(gtw));
  if (err) return err;

  if (!pl.direct_gx) {
    const int64_t total = pr.N * pr.C * pr.T * pr.H * pr.W;
    err = gpu::launch(mbp_backward_gather_kernel<scalar_t>, dim3(grid_blocks(ceil_div(total, kGatherThreads))),
                 dim3(kGatherThreads), 0, stream, static_cast<const acc_t*>(p.gy), p.tw, p.gx, pr.N, pr.C, pr.T,
                 pr.H * pr.W, pr.T_out, pr.temporal_stride, pr.temporal_padding);
  }
  return err;
}

}  // namespace
}  // namespace cuda
}  // namespace mbp
}  // namespace vidops

extern "C" int64_t vidops_mbp_backward_workspace_bytes(const VidopsMbpProblem* problem) {
  if (vidops::mbp::cuda::validate_problem(problem) != nullptr) return 0;
  return static_cast<int64_t>(vidops::mbp::cuda::plan_backward(*problem).total_bytes);
}

extern "C" const char* vidops_mbp_backward_cuda(const VidopsMbpProblem* problem, const void* grad_out, const void* x,
                                                const void* spatial_weight, const void* temporal_weight, void* grad_x,
                                                void* grad_spatial_weight, void* grad_temporal_weight,
                                                void* workspace, int64_t workspace_bytes, void* stream) {
  using namespace vidops::mbp::cuda;
  if (const char* e = validate_problem(problem)) return e;
  const VidopsMbpProblem& pr = *problem;
  const BwdPlan pl = plan_backward(pr);
  if (pr.N * pr.C * pr.T * pr.H * pr.W != 0 && (workspace_bytes < static_cast<int64_t>(pl.total_bytes) ||
                                                (pl.total_bytes > 0 && workspace == nullptr)))
    return "vidops._motion_band_pass_bwd (CUDA): workspace smaller than vidops_mbp_backward_workspace_bytes";
  return dispatch_dtype(pr.dtype, "vidops._motion_band_pass_bwd (CUDA): unsupported dtype", [&](auto tag) {
    return backward<typename decltype(tag)::type>(pr, pl, grad_out, x, spatial_weight, temporal_weight, grad_x,
                                                  grad_spatial_weight, grad_temporal_weight, workspace, stream);
  });
}
