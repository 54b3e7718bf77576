// CUDA kernels of pixel-wise temporal projection (operators.md §3.2), runtime only (no torch headers).
//
// Forward, one thread per pixel, one pass over x: the thread builds A (T x D) from
// the 4 bilinear neighbours of the low-resolution basis (F.interpolate(size=(H, W), "bilinear",
// align_corners=False) arithmetic; the full-resolution basis is never stored), scales it by the
// power of two s that puts max |A| in [0.5, 1) (nothing depends on the basis's scale; the
// backward's grad_A is s times that of the scaled A), forms
// G = A^T A + lam I, lam = e trace/D (e for A = 0), e = max(eps, 8 u), and its LDL^T factor (pivots
// floored at lam) once (the shared math header, common/subspace_math.h, also used by
// the CPU kernels), then for every channel reads x[n, c, :, pixel] (coalesced across the warp
// along W), solves y = G^{-1} A^T x_c by substitution, forms
// p = x_c - A y, writes pbar = mean_t p and accumulates ||p||^2. ENoPR: a fixed-order block sum per
// block into a workspace, then a fixed-order row sum per sample (deterministic).
//
// Backward, one thread per pixel of a 32 x 8 tile, per channel (v = grad_pbar / T + 2 alpha p,
// q = G^{-1} A^T v): grad_x = v - A q, grad_A -= grad_x y^T + p q^T; then
// grad_A += (2 eps / D)(sum_c q . y) A and the adjoint of the upsampling scatters grad_A into the
// low-resolution basis gradient: into a shared-memory copy of the tile's footprint (shared atomics)
// flushed with one global atomic per touched cell, or straight to global atomics when the
// footprint does not fit in 48 KiB (or the basis has x's size). Atomics make the last bits of
// grad_basis order-dependent.
//
// Two paths: T <= 8 keeps A and the per-channel T-vectors in registers (fully unrolled; the
// production case T = 8; the backward only for float D <= 3 and double D = 1, see kRegisterBwd);
// larger T keeps them in the thread's own column of shared memory with
// runtime T loops (any T that fits the opt-in shared memory, 1-D blocks, global atomics).
#include <cstdint>

#include "common/cuda_check.h"
#include "common/cuda_scalar.h"
#include "common/dtype_code.h"
#include "pixelwise_temporal_projection/pixelwise_temporal_projection_kernel.h"
#include "pixelwise_temporal_projection/pixelwise_temporal_projection_math.h"

namespace vidops {
namespace pwtp_cuda {
namespace {

using vidops::cuda::block_sum;
using vidops::cuda::load;
using vidops::cuda::store;

constexpr int kTMax = 8;  // register path for T <= 8; the shared-memory path takes larger T
constexpr int kFwdThreads = 128;
// <= 128 registers: the float forward needs 64 (D = 1) to 96 (D = 4); a cap of 80 (6 blocks) made
// D = 4 spill 8-16 B
constexpr int kFwdMinBlocks = 4;
constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kBwdThreads = kTileW * kTileH;
// <= 128 registers for float and D = 1 (else up to 255): 2 blocks (16 warps) per SM at the cost of
// 8-24 B of stack (uncapped it needs 152-168 registers, one block per SM)
constexpr int kBwdMinBlocks = 2;

// The register backward keeps A, grad_A (T x D each) and four T-vectors per thread: with float
// and D = 4, or double and D >= 2, that needs more than 255 registers (104 B of stack for float
// D = 4 on sm_80, 184..536 B for double D >= 3, measured with cuobjdump), so those take the
// shared-memory path, which keeps A and grad_A in the thread's column of shared memory.
template <typename acc_t, int D>
constexpr bool kRegisterBwd = sizeof(acc_t) == 4 ? D <= 3 : D <= 1;
constexpr int kGenMaxThreads = 128;
constexpr int kSmemLimit = 48 * 1024;

template <typename acc_t>
struct Args {
  int64_t N, C, T, H, W, h, w;
  int64_t sxn, sxc, sxt, sxh, sxw;
  int64_t hw_in;                    // h * w: the basis is contiguous (N, T*D, h, w), < 2^31 per sample
  int64_t sgn, sgc, sgh, sgw, sge;  // grad_pbar, grad_enopr (backward)
  int64_t tiles;                    // forward: blocks per sample
  int64_t fh, fw;                   // backward: bound of a tile's footprint in the basis (0: no smem)
  acc_t eps, two_alpha_scale;
};

// PyTorch's bilinear source index (align_corners=False, size-based), from the shared math header.
template <typename acc_t>
__device__ __forceinline__ void source_index(int64_t dst, int64_t in, int64_t out, int& i0, int& i1, acc_t& l0,
                                             acc_t& l1) {
  int64_t a, b;
  vidops::pwtp::bilinear_source<acc_t>(dst, in, out, a, b, l1);
  i0 = static_cast<int>(a);
  i1 = static_cast<int>(b);
  l0 = acc_t(1) - l1;
}

// G = A^T A + lam I factorised as L diag L^T, pivots floored at lam (the shared math header; D <= 4
// unrolled); solves by substitution.
template <typename acc_t, int D>
struct Chol {
  vidops::subspace::Ldl<D, acc_t> f;
  __device__ __forceinline__ void solve(const acc_t (&b)[D], acc_t (&y)[D]) const {
    vidops::subspace::ldl_solve<D, acc_t>(f, b, y);
  }
};

// ---- per-pixel pieces shared by both paths ------------------------------------------------------

// The 4 bilinear neighbours of one pixel in the basis (offsets in elements) and their weights.
template <typename acc_t>
struct Neighbours {
  int y0, y1, x0, x1;
  acc_t ly0, ly1, lx0, lx1;
  int o00, o01, o10, o11;  // offsets in a contiguous (h, w) plane

  __device__ __forceinline__ void init(int64_t hh, int64_t ww, const Args<acc_t>& a) {
    source_index(hh, a.h, a.H, y0, y1, ly0, ly1);
    source_index(ww, a.w, a.W, x0, x1, lx0, lx1);
    const int w = static_cast<int>(a.w);
    o00 = y0 * w + x0;
    o01 = y0 * w + x1;
    o10 = y1 * w + x0;
    o11 = y1 * w + x1;
  }
  // F.interpolate's arithmetic: h0l * (w0l * v00 + w1l * v01) + h1l * (w0l * v10 + w1l * v11)
  __device__ __forceinline__ acc_t sample(const acc_t* __restrict__ p) const {
    return ly0 * (lx0 * __ldg(p + o00) + lx1 * __ldg(p + o01)) + ly1 * (lx0 * __ldg(p + o10) + lx1 * __ldg(p + o11));
  }
  // adjoint: add g's 4 weighted shares to a (h, w) plane with row stride `row` (zero weights skipped)
  __device__ __forceinline__ void scatter(acc_t* plane, int64_t row, int r_off, int c_off, acc_t g) const {
    const int r0 = y0 - r_off, r1 = y1 - r_off, q0 = x0 - c_off, q1 = x1 - c_off;
    const acc_t c00 = ly0 * lx0, c01 = ly0 * lx1, c10 = ly1 * lx0, c11 = ly1 * lx1;
    if (c00 != acc_t(0)) atomicAdd(plane + r0 * row + q0, c00 * g);
    if (c01 != acc_t(0)) atomicAdd(plane + r0 * row + q1, c01 * g);
    if (c10 != acc_t(0)) atomicAdd(plane + r1 * row + q0, c10 * g);
    if (c11 != acc_t(0)) atomicAdd(plane + r1 * row + q1, c11 * g);
  }
};

// Packed lower Gram matrix g (D(D+1)/2) of A^T A: zero, accumulate one row of A, factor G.
template <typename acc_t, int D>
struct Gram {
  acc_t g[D * (D + 1) / 2];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < D * (D + 1) / 2; ++i) g[i] = acc_t(0);
  }
  __device__ __forceinline__ void add(const acc_t (&At)[D]) {
#pragma unroll
    for (int i = 0; i < D; ++i)
#pragma unroll
      for (int j = 0; j <= i; ++j) g[vidops::subspace::tri(i, j)] += At[i] * At[j];
  }
  // G = A^T A + lam I, lam = e trace/D (e for A = 0), e = the effective eps of make_args
  __device__ __forceinline__ void factor(acc_t eps, Chol<acc_t, D>& chol) const {
    vidops::subspace::ldl_factor<D, acc_t>(g, vidops::subspace::regulariser<D, acc_t>(g, eps), chol.f);
  }
};

// ---- register path: T <= TMAX (8), A and the per-channel vectors in registers -------------------

template <typename acc_t, int D, int TMAX>
struct Pixel {
  acc_t A[TMAX][D];  // A' = s A
  Chol<acc_t, D> chol;

  // Returns s, the power of two that puts max |A| in [0.5, 1) (pow2_scale).
  __device__ __forceinline__ acc_t build(const acc_t* __restrict__ bn, const Neighbours<acc_t>& nb, const Args<acc_t>& a) {
    acc_t m = acc_t(0);
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
#pragma unroll
      for (int d = 0; d < D; ++d) {
        A[t][d] = t < a.T ? nb.sample(bn + static_cast<int>(t * D + d) * static_cast<int>(a.hw_in)) : acc_t(0);
        const acc_t v = A[t][d] < acc_t(0) ? -A[t][d] : A[t][d];
        m = v > m ? v : m;
      }
    }
    const acc_t scale = vidops::subspace::pow2_scale<acc_t>(m);
    Gram<acc_t, D> G;
    G.zero();
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
#pragma unroll
      for (int d = 0; d < D; ++d) A[t][d] *= scale;
      G.add(A[t]);
    }
    G.factor(a.eps, chol);
    return scale;
  }

  // y = G^{-1} A^T v, then v <- v - A y in place (v zero for t >= T stays zero).
  __device__ __forceinline__ void project(acc_t (&v)[TMAX], acc_t (&y)[D]) const {
    acc_t b[D];
#pragma unroll
    for (int d = 0; d < D; ++d) b[d] = acc_t(0);
#pragma unroll
    for (int t = 0; t < TMAX; ++t)
#pragma unroll
      for (int d = 0; d < D; ++d) b[d] += A[t][d] * v[t];
    chol.solve(b, y);
#pragma unroll
    for (int t = 0; t < TMAX; ++t) {
      acc_t s = v[t];
#pragma unroll
      for (int d = 0; d < D; ++d) s -= A[t][d] * y[d];
      v[t] = s;  // A[t] = 0 and v[t] = 0 for t >= T
    }
  }
};

template <typename scalar_t, typename acc_t, int D, int TMAX>
__global__ void __launch_bounds__(kFwdThreads, sizeof(acc_t) == 8 ? kFwdMinBlocks / 2 : kFwdMinBlocks)
    pwtp_fwd_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ basis, scalar_t* __restrict__ pbar,
                    acc_t* __restrict__ partial, const Args<acc_t> a) {
  __shared__ acc_t scratch[kFwdThreads / 32];
  const int64_t HW = a.H * a.W;
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kFwdThreads + threadIdx.x;
  const bool valid = pix < HW;
  const int64_t hh = valid ? pix / a.W : 0;
  const int64_t ww = valid ? pix - hh * a.W : 0;
  Neighbours<acc_t> nb;
  nb.init(hh, ww, a);
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    acc_t sq = acc_t(0);
    if (valid) {
      Pixel<acc_t, D, TMAX> px;
      px.build(basis + n * a.T * D * a.hw_in, nb, a);
      const scalar_t* xp = x + n * a.sxn + hh * a.sxh + ww * a.sxw;
      scalar_t* op = pbar + n * a.C * HW + pix;
      for (int64_t c = 0; c < a.C; ++c) {
        acc_t v[TMAX];
#pragma unroll
        for (int t = 0; t < TMAX; ++t) v[t] = t < a.T ? load<acc_t>(xp + t * a.sxt) : acc_t(0);
        acc_t y[D];
        px.project(v, y);  // v = p
        acc_t s = acc_t(0), s2 = acc_t(0);
#pragma unroll
        for (int t = 0; t < TMAX; ++t) {
          s += v[t];
          s2 += v[t] * v[t];
        }
        store(op, s / static_cast<acc_t>(a.T));
        sq += s2;
        xp += a.sxc;
        op += HW;
      }
    }
    const acc_t tot = block_sum(sq, scratch);
    if (threadIdx.x == 0) partial[n * a.tiles + blockIdx.x] = tot;
  }
}

// A block of the backward owns a kTileW x kTileH tile of pixels; `fy0, fx0, fh, fw` is the tile's
// footprint in the basis and `use_smem` (uniform) whether its gradient is staged in shared memory.
struct Footprint {
  int fy0, fx0, fh, fw;
  bool use_smem;
};

template <typename acc_t>
__device__ __forceinline__ Footprint tile_footprint(int64_t h_lo, int64_t w_lo, const Args<acc_t>& a) {
  int y0, y1, x0, x1, unused;
  acc_t l0, l1;
  source_index(h_lo, a.h, a.H, y0, unused, l0, l1);
  source_index((h_lo + kTileH < a.H ? h_lo + kTileH : a.H) - 1, a.h, a.H, unused, y1, l0, l1);
  source_index(w_lo, a.w, a.W, x0, unused, l0, l1);
  source_index((w_lo + kTileW < a.W ? w_lo + kTileW : a.W) - 1, a.w, a.W, unused, x1, l0, l1);
  Footprint f;
  f.fy0 = y0;
  f.fx0 = x0;
  f.fh = y1 - y0 + 1;
  f.fw = x1 - x0 + 1;
  f.use_smem = a.fh > 0 && f.fh <= a.fh && f.fw <= a.fw;
  return f;
}

template <typename scalar_t, typename acc_t, int D, int TMAX>
__global__ void __launch_bounds__(kBwdThreads, (sizeof(acc_t) == 8 || D >= 2) ? 1 : kBwdMinBlocks)
    pwtp_bwd_kernel(const scalar_t* __restrict__ gp, const acc_t* __restrict__ ge, const scalar_t* __restrict__ x,
                    const acc_t* __restrict__ basis, scalar_t* __restrict__ gx, acc_t* __restrict__ gb,
                    const Args<acc_t> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // each thread's pixel scale s waits out the channel loop here, not in a register (one more live
  // register spilled 8-16 B on sm_80); volatile so that the store and the load are kept
  __shared__ acc_t scale_slot[kBwdThreads];
  volatile acc_t* my_scale = scale_slot + threadIdx.x;
  acc_t* sacc = reinterpret_cast<acc_t*>(smem_raw);
  const int64_t HW = a.H * a.W;
  const int64_t TD = a.T * D;
  const int64_t tiles_w = (a.W + kTileW - 1) / kTileW;
  const int64_t th = blockIdx.x / tiles_w, tw = blockIdx.x - th * tiles_w;
  const int64_t h_lo = th * kTileH, w_lo = tw * kTileW;
  const int64_t hh = h_lo + threadIdx.x / kTileW, ww = w_lo + threadIdx.x % kTileW;
  const bool valid = hh < a.H && ww < a.W;
  const int64_t pix = hh * a.W + ww;
  const Footprint fp = tile_footprint(h_lo, w_lo, a);
  const int64_t plane = static_cast<int64_t>(fp.fh) * fp.fw;
  Neighbours<acc_t> nb;
  nb.init(valid ? hh : 0, valid ? ww : 0, a);

  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    if (fp.use_smem) {
      for (int64_t i = threadIdx.x; i < TD * plane; i += kBwdThreads) sacc[i] = acc_t(0);
      __syncthreads();
    }
    if (valid) {
      Pixel<acc_t, D, TMAX> px;
      *my_scale = px.build(basis + n * a.T * D * a.hw_in, nb, a);
      const acc_t two_alpha = ge != nullptr ? ge[n * a.sge] * a.two_alpha_scale : acc_t(0);
      const scalar_t* xp = x + n * a.sxn + hh * a.sxh + ww * a.sxw;
      const scalar_t* gpp = gp != nullptr ? gp + n * a.sgn + hh * a.sgh + ww * a.sgw : nullptr;
      scalar_t* gxp = gx + n * a.C * a.T * HW + pix;
      acc_t gA[TMAX][D];
#pragma unroll
      for (int t = 0; t < TMAX; ++t)
#pragma unroll
        for (int d = 0; d < D; ++d) gA[t][d] = acc_t(0);
      acc_t qy = acc_t(0);
      for (int64_t c = 0; c < a.C; ++c) {
        acc_t v[TMAX];
#pragma unroll
        for (int t = 0; t < TMAX; ++t) v[t] = t < a.T ? load<acc_t>(xp + t * a.sxt) : acc_t(0);
        acc_t y[D];
        px.project(v, y);  // v = p
        const acc_t g = gpp != nullptr ? load<acc_t>(gpp + c * a.sgc) / static_cast<acc_t>(a.T) : acc_t(0);
        acc_t r[TMAX];
#pragma unroll
        for (int t = 0; t < TMAX; ++t) r[t] = t < a.T ? g + two_alpha * v[t] : acc_t(0);
        acc_t q[D];
        px.project(r, q);  // r = grad_x_c
#pragma unroll
        for (int t = 0; t < TMAX; ++t) {
          if (t < a.T) store(gxp + t * HW, r[t]);
#pragma unroll
          for (int d = 0; d < D; ++d) gA[t][d] -= r[t] * y[d] + v[t] * q[d];
        }
#pragma unroll
        for (int d = 0; d < D; ++d) qy += q[d] * y[d];
        xp += a.sxc;
        gxp += a.T * HW;
      }
      const acc_t k = acc_t(2) * a.eps / acc_t(D) * qy;
      const acc_t sc = *my_scale;
#pragma unroll
      for (int t = 0; t < TMAX; ++t) {
        if (t < a.T) {
#pragma unroll
          for (int d = 0; d < D; ++d) {
            const acc_t g = (gA[t][d] + k * px.A[t][d]) * sc;  // grad_A = s grad_A'
            const int64_t td = t * D + d;
            if (fp.use_smem)
              nb.scatter(sacc + td * plane, fp.fw, fp.fy0, fp.fx0, g);
            else
              nb.scatter(gb + (n * TD + td) * a.h * a.w, a.w, 0, 0, g);
          }
        }
      }
    }
    if (fp.use_smem) {
      __syncthreads();
      for (int64_t i = threadIdx.x; i < TD * plane; i += kBwdThreads) {
        const acc_t v = sacc[i];
        if (v == acc_t(0)) continue;
        const int64_t td = i / plane, rem = i - td * plane;
        const int64_t ry = rem / fp.fw, rx = rem - ry * fp.fw;
        atomicAdd(gb + ((n * TD + td) * a.h + fp.fy0 + ry) * a.w + fp.fx0 + rx, v);
      }
      __syncthreads();
    }
  }
}

// ---- shared-memory path: any T; each thread keeps its pixel's A (and vectors) in its own column
// of shared memory, [row][blockDim.x], so the T loops need no unrolling ---------------------------

// A' = s A into this thread's column of shared memory, and G's factor; returns s.
template <typename acc_t, int D>
__device__ __forceinline__ acc_t build_columns(acc_t* __restrict__ sA, int B, const acc_t* __restrict__ bn,
                                               const Neighbours<acc_t>& nb, const Args<acc_t>& a,
                                               Chol<acc_t, D>& chol) {
  acc_t m = acc_t(0);
  for (int64_t t = 0; t < a.T; ++t) {
#pragma unroll
    for (int d = 0; d < D; ++d) {
      const acc_t v = nb.sample(bn + static_cast<int>(t * D + d) * static_cast<int>(a.hw_in));
      sA[(t * D + d) * B] = v;
      const acc_t av = v < acc_t(0) ? -v : v;
      m = av > m ? av : m;
    }
  }
  const acc_t s = vidops::subspace::pow2_scale<acc_t>(m);
  Gram<acc_t, D> G;
  G.zero();
  for (int64_t t = 0; t < a.T; ++t) {
    acc_t At[D];
#pragma unroll
    for (int d = 0; d < D; ++d) {
      At[d] = sA[(t * D + d) * B] * s;
      sA[(t * D + d) * B] = At[d];
    }
    G.add(At);
  }
  G.factor(a.eps, chol);
  return s;
}

template <typename scalar_t, typename acc_t, int D>
__global__ void __launch_bounds__(kGenMaxThreads)
    pwtp_fwd_smem_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ basis, scalar_t* __restrict__ pbar,
                         acc_t* __restrict__ partial, const Args<acc_t> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ acc_t scratch[kGenMaxThreads / 32];
  const int B = blockDim.x;
  acc_t* sA = reinterpret_cast<acc_t*>(smem_raw) + threadIdx.x;  // (T*D) rows
  acc_t* sX = sA + a.T * D * B;                                   // T rows
  const int64_t HW = a.H * a.W;
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * B + threadIdx.x;
  const bool valid = pix < HW;
  const int64_t hh = valid ? pix / a.W : 0;
  const int64_t ww = valid ? pix - hh * a.W : 0;
  Neighbours<acc_t> nb;
  nb.init(hh, ww, a);
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    acc_t sq = acc_t(0);
    if (valid) {
      Chol<acc_t, D> chol;
      build_columns<acc_t, D>(sA, B, basis + n * a.T * D * a.hw_in, nb, a, chol);
      const scalar_t* xp = x + n * a.sxn + hh * a.sxh + ww * a.sxw;
      scalar_t* op = pbar + n * a.C * HW + pix;
      for (int64_t c = 0; c < a.C; ++c) {
        acc_t b[D], y[D];
#pragma unroll
        for (int d = 0; d < D; ++d) b[d] = acc_t(0);
        for (int64_t t = 0; t < a.T; ++t) {
          const acc_t v = load<acc_t>(xp + t * a.sxt);
          sX[t * B] = v;
#pragma unroll
          for (int d = 0; d < D; ++d) b[d] += sA[(t * D + d) * B] * v;
        }
        chol.solve(b, y);
        acc_t s = acc_t(0), s2 = acc_t(0);
        for (int64_t t = 0; t < a.T; ++t) {
          acc_t p = sX[t * B];
#pragma unroll
          for (int d = 0; d < D; ++d) p -= sA[(t * D + d) * B] * y[d];
          s += p;
          s2 += p * p;
        }
        store(op, s / static_cast<acc_t>(a.T));
        sq += s2;
        xp += a.sxc;
        op += HW;
      }
    }
    const acc_t tot = block_sum(sq, scratch);
    if (threadIdx.x == 0) partial[n * a.tiles + blockIdx.x] = tot;
  }
}

template <typename scalar_t, typename acc_t, int D>
__global__ void __launch_bounds__(kGenMaxThreads)
    pwtp_bwd_smem_kernel(const scalar_t* __restrict__ gp, const acc_t* __restrict__ ge,
                         const scalar_t* __restrict__ x, const acc_t* __restrict__ basis, scalar_t* __restrict__ gx,
                         acc_t* __restrict__ gb, const Args<acc_t> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int B = blockDim.x;
  acc_t* sA = reinterpret_cast<acc_t*>(smem_raw) + threadIdx.x;  // A: T*D rows
  acc_t* sG = sA + a.T * D * B;                                   // grad_A: T*D rows
  acc_t* sP = sG + a.T * D * B;                                   // x, then p: T rows
  volatile acc_t* sS = sP + a.T * B;                              // the pixel's scale s: 1 row
  const int64_t HW = a.H * a.W;
  const int64_t TD = a.T * D;
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * B + threadIdx.x;
  if (pix >= HW) return;  // no block-wide synchronisation below
  const int64_t hh = pix / a.W, ww = pix - hh * a.W;
  Neighbours<acc_t> nb;
  nb.init(hh, ww, a);
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    Chol<acc_t, D> chol;
    *sS = build_columns<acc_t, D>(sA, B, basis + n * a.T * D * a.hw_in, nb, a, chol);  // kept out of registers
    for (int64_t i = 0; i < TD; ++i) sG[i * B] = acc_t(0);
    const acc_t two_alpha = ge != nullptr ? ge[n * a.sge] * a.two_alpha_scale : acc_t(0);
    const scalar_t* xp = x + n * a.sxn + hh * a.sxh + ww * a.sxw;
    const scalar_t* gpp = gp != nullptr ? gp + n * a.sgn + hh * a.sgh + ww * a.sgw : nullptr;
    scalar_t* gxp = gx + n * a.C * a.T * HW + pix;
    acc_t qy = acc_t(0);
    for (int64_t c = 0; c < a.C; ++c) {
      acc_t b[D], y[D], q[D];
#pragma unroll
      for (int d = 0; d < D; ++d) b[d] = acc_t(0);
      for (int64_t t = 0; t < a.T; ++t) {
        const acc_t v = load<acc_t>(xp + t * a.sxt);
        sP[t * B] = v;
#pragma unroll
        for (int d = 0; d < D; ++d) b[d] += sA[(t * D + d) * B] * v;
      }
      chol.solve(b, y);
      const acc_t g = gpp != nullptr ? load<acc_t>(gpp + c * a.sgc) / static_cast<acc_t>(a.T) : acc_t(0);
#pragma unroll
      for (int d = 0; d < D; ++d) b[d] = acc_t(0);
      for (int64_t t = 0; t < a.T; ++t) {
        acc_t p = sP[t * B];
#pragma unroll
        for (int d = 0; d < D; ++d) p -= sA[(t * D + d) * B] * y[d];
        sP[t * B] = p;
        const acc_t v = g + two_alpha * p;
#pragma unroll
        for (int d = 0; d < D; ++d) b[d] += sA[(t * D + d) * B] * v;
      }
      chol.solve(b, q);
      for (int64_t t = 0; t < a.T; ++t) {
        const acc_t p = sP[t * B];
        acc_t r = g + two_alpha * p;
#pragma unroll
        for (int d = 0; d < D; ++d) r -= sA[(t * D + d) * B] * q[d];
        store(gxp + t * HW, r);
#pragma unroll
        for (int d = 0; d < D; ++d) sG[(t * D + d) * B] -= r * y[d] + p * q[d];
      }
#pragma unroll
      for (int d = 0; d < D; ++d) qy += q[d] * y[d];
      xp += a.sxc;
      gxp += a.T * HW;
    }
    const acc_t k = acc_t(2) * a.eps / acc_t(D) * qy;
    const acc_t sc = *sS;
    for (int64_t i = 0; i < TD; ++i)
      nb.scatter(gb + (n * TD + i) * a.h * a.w, a.w, 0, 0, (sG[i * B] + k * sA[i * B]) * sc);  // s grad_A'
  }
}

// ---- launchers -----------------------------------------------------------------------------------

inline unsigned grid_y(int64_t N) { return static_cast<unsigned>(N < 65535 ? N : 65535); }

template <typename acc_t>
Args<acc_t> make_args(const int64_t* s, const int64_t* xs, double eps) {
  Args<acc_t> a{};
  a.N = s[0]; a.C = s[1]; a.T = s[2]; a.H = s[3]; a.W = s[4]; a.h = s[5]; a.w = s[6];
  a.sxn = xs[0]; a.sxc = xs[1]; a.sxt = xs[2]; a.sxh = xs[3]; a.sxw = xs[4];
  a.hw_in = a.h * a.w;
  a.eps = static_cast<acc_t>(vidops::subspace::effective_eps<acc_t>(eps));
  a.two_alpha_scale = static_cast<acc_t>(2.0 / static_cast<double>(a.H * a.W * a.C));
  return a;
}

// Threads per block of a shared-memory kernel needing `per_thread` bytes: the largest of 128, 64, 32
// that fits the device's opt-in limit (the attribute is raised past 48 KiB when needed); 0 if none.
template <typename Kernel>
const char* smem_block(Kernel kernel, int64_t per_thread, int& threads, int64_t& bytes) {
  int dev = 0, optin = 0;
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  threads = 0;
  for (int b = kGenMaxThreads; b >= 32; b /= 2) {
    if (per_thread * b <= optin) {
      threads = b;
      break;
    }
  }
  if (threads == 0) return "pixelwise_temporal_projection (cuda): T * D too large for the shared-memory kernel";
  bytes = per_thread * threads;
  if (bytes > kSmemLimit)
    VIDOPS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return nullptr;
}

template <typename scalar_t, typename acc_t, int D>
const char* launch_fwd(const void* x, const void* basis, void* pbar, void* enopr, void* ws, const Args<acc_t>& a0,
                       cudaStream_t stream) {
  Args<acc_t> a = a0;
  const int64_t HW = a.H * a.W;
  if (a.T <= kTMax) {
    a.tiles = (HW + kFwdThreads - 1) / kFwdThreads;
    dim3 grid(static_cast<unsigned>(a.tiles), grid_y(a.N));
    pwtp_fwd_kernel<scalar_t, acc_t, D, kTMax><<<grid, kFwdThreads, 0, stream>>>(
        static_cast<const scalar_t*>(x), static_cast<const acc_t*>(basis), static_cast<scalar_t*>(pbar),
        static_cast<acc_t*>(ws), a);
  } else {
    auto kernel = pwtp_fwd_smem_kernel<scalar_t, acc_t, D>;
    int threads = 0;
    int64_t bytes = 0;
    if (const char* err = smem_block(kernel, a.T * (D + 1) * static_cast<int64_t>(sizeof(acc_t)), threads, bytes))
      return err;
    a.tiles = (HW + threads - 1) / threads;
    dim3 grid(static_cast<unsigned>(a.tiles), grid_y(a.N));
    kernel<<<grid, threads, bytes, stream>>>(static_cast<const scalar_t*>(x), static_cast<const acc_t*>(basis),
                                             static_cast<scalar_t*>(pbar), static_cast<acc_t*>(ws), a);
  }
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  vidops::cuda::row_sum_kernel<acc_t><<<grid_y(a.N), 256, 0, stream>>>(
      static_cast<const acc_t*>(ws), static_cast<acc_t*>(enopr), a.N, a.tiles, static_cast<acc_t>(HW * a.C));
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

// The register path (T <= kTMax): one thread per pixel of a kTileH x kTileW tile.
template <typename scalar_t, typename acc_t, int D>
const char* launch_bwd_registers(const void* gp, const void* ge, const void* x, const void* basis, void* gx,
                                 void* gb, Args<acc_t> a, cudaStream_t stream) {
  // bound of a tile's footprint in the basis; stage in shared memory when it fits and the basis is
  // smaller than x (at scale 1 every basis cell has a single writer: plain global atomics)
  const double sh = static_cast<double>(a.h) / static_cast<double>(a.H);
  const double sw = static_cast<double>(a.w) / static_cast<double>(a.W);
  int64_t fh = static_cast<int64_t>((kTileH - 1) * sh) + 3, fw = static_cast<int64_t>((kTileW - 1) * sw) + 3;
  fh = fh < a.h ? fh : a.h;
  fw = fw < a.w ? fw : a.w;
  const int64_t bytes = a.T * D * fh * fw * static_cast<int64_t>(sizeof(acc_t));
  // the kernel's static shared memory (the per-thread scale slots) counts against the 48 KiB too
  const bool smem = bytes <= kSmemLimit - kBwdThreads * static_cast<int64_t>(sizeof(acc_t)) && (a.h < a.H || a.w < a.W);
  a.fh = smem ? fh : 0;
  a.fw = smem ? fw : 0;
  const int64_t tiles = ((a.H + kTileH - 1) / kTileH) * ((a.W + kTileW - 1) / kTileW);
  dim3 grid(static_cast<unsigned>(tiles), grid_y(a.N));
  pwtp_bwd_kernel<scalar_t, acc_t, D, kTMax><<<grid, kBwdThreads, smem ? bytes : 0, stream>>>(
      static_cast<const scalar_t*>(gp), static_cast<const acc_t*>(ge), static_cast<const scalar_t*>(x),
      static_cast<const acc_t*>(basis), static_cast<scalar_t*>(gx), static_cast<acc_t*>(gb), a);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename scalar_t, typename acc_t, int D>
const char* launch_bwd(const void* gp, const void* ge, const void* x, const void* basis, void* gx, void* gb,
                       const Args<acc_t>& a0, cudaStream_t stream) {
  Args<acc_t> a = a0;
  const int64_t HW = a.H * a.W;
  if constexpr (kRegisterBwd<acc_t, D>) {
    if (a.T <= kTMax) return launch_bwd_registers<scalar_t, acc_t, D>(gp, ge, x, basis, gx, gb, a, stream);
  }
  auto kernel = pwtp_bwd_smem_kernel<scalar_t, acc_t, D>;
  int threads = 0;
  int64_t bytes = 0;
  if (const char* err = smem_block(kernel, (a.T * (2 * D + 1) + 1) * static_cast<int64_t>(sizeof(acc_t)), threads, bytes))
    return err;
  dim3 grid(static_cast<unsigned>((HW + threads - 1) / threads), grid_y(a.N));
  kernel<<<grid, threads, bytes, stream>>>(static_cast<const scalar_t*>(gp), static_cast<const acc_t*>(ge),
                                           static_cast<const scalar_t*>(x), static_cast<const acc_t*>(basis),
                                           static_cast<scalar_t*>(gx), static_cast<acc_t*>(gb), a);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename scalar_t, typename acc_t>
const char* fwd_d(int64_t D, const void* x, const void* b, void* pbar, void* en, void* ws, const Args<acc_t>& a,
                  cudaStream_t s) {
  switch (D) {
    case 1: return launch_fwd<scalar_t, acc_t, 1>(x, b, pbar, en, ws, a, s);
    case 2: return launch_fwd<scalar_t, acc_t, 2>(x, b, pbar, en, ws, a, s);
    case 3: return launch_fwd<scalar_t, acc_t, 3>(x, b, pbar, en, ws, a, s);
    case 4: return launch_fwd<scalar_t, acc_t, 4>(x, b, pbar, en, ws, a, s);
    default: return "pixelwise_temporal_projection (cuda): D must be 1..4";
  }
}

template <typename scalar_t, typename acc_t>
const char* bwd_d(int64_t D, const void* gp, const void* ge, const void* x, const void* b, void* gx, void* gb,
                  const Args<acc_t>& a, cudaStream_t s) {
  switch (D) {
    case 1: return launch_bwd<scalar_t, acc_t, 1>(gp, ge, x, b, gx, gb, a, s);
    case 2: return launch_bwd<scalar_t, acc_t, 2>(gp, ge, x, b, gx, gb, a, s);
    case 3: return launch_bwd<scalar_t, acc_t, 3>(gp, ge, x, b, gx, gb, a, s);
    case 4: return launch_bwd<scalar_t, acc_t, 4>(gp, ge, x, b, gx, gb, a, s);
    default: return "pixelwise_temporal_projection (cuda): D must be 1..4";
  }
}

}  // namespace
}  // namespace pwtp_cuda
}  // namespace vidops

extern "C" int64_t vidops_pwtp_fwd_workspace(int64_t N, int64_t H, int64_t W) {
  // one partial per block; the smallest block (32 threads, shared-memory path at large T) bounds it
  return N * ((H * W + 31) / 32);
}

extern "C" const char* vidops_pwtp_fwd_cuda(const void* x, const void* basis, void* pbar, void* enopr,
                                            void* workspace, int dtype, const int64_t* sizes,
                                            const int64_t* x_strides, double eps,
                                            void* stream) {
  using namespace vidops::pwtp_cuda;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t D = sizes[7];
  if (sizes[0] == 0 || sizes[3] * sizes[4] == 0) return nullptr;
  switch (dtype) {
    case vidops::kFloat32:
      return fwd_d<float, float>(D, x, basis, pbar, enopr, workspace, make_args<float>(sizes, x_strides, eps), s);
    case vidops::kFloat64:
      return fwd_d<double, double>(D, x, basis, pbar, enopr, workspace, make_args<double>(sizes, x_strides, eps), s);
    case vidops::kFloat16:
      return fwd_d<__half, float>(D, x, basis, pbar, enopr, workspace, make_args<float>(sizes, x_strides, eps), s);
    case vidops::kBFloat16:
      return fwd_d<__nv_bfloat16, float>(D, x, basis, pbar, enopr, workspace, make_args<float>(sizes, x_strides, eps), s);
    default:
      return "pixelwise_temporal_projection (cuda): unsupported dtype";
  }
}

extern "C" const char* vidops_pwtp_bwd_cuda(const void* grad_pbar, const int64_t* gp_strides, const void* grad_enopr,
                                            int64_t ge_stride, const void* x, const void* basis, void* grad_x,
                                            void* grad_basis_acc, int dtype, const int64_t* sizes,
                                            const int64_t* x_strides, double eps,
                                            void* stream) {
  using namespace vidops::pwtp_cuda;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t D = sizes[7];
  if (sizes[0] == 0 || sizes[3] * sizes[4] == 0) return nullptr;
  auto fill = [&](auto a) {
    if (grad_pbar != nullptr) {
      a.sgn = gp_strides[0]; a.sgc = gp_strides[1]; a.sgh = gp_strides[2]; a.sgw = gp_strides[3];
    }
    a.sge = ge_stride;
    return a;
  };
  switch (dtype) {
    case vidops::kFloat32:
      return bwd_d<float, float>(D, grad_pbar, grad_enopr, x, basis, grad_x, grad_basis_acc,
                                 fill(make_args<float>(sizes, x_strides, eps)), s);
    case vidops::kFloat64:
      return bwd_d<double, double>(D, grad_pbar, grad_enopr, x, basis, grad_x, grad_basis_acc,
                                   fill(make_args<double>(sizes, x_strides, eps)), s);
    case vidops::kFloat16:
      return bwd_d<__half, float>(D, grad_pbar, grad_enopr, x, basis, grad_x, grad_basis_acc,
                                  fill(make_args<float>(sizes, x_strides, eps)), s);
    case vidops::kBFloat16:
      return bwd_d<__nv_bfloat16, float>(D, grad_pbar, grad_enopr, x, basis, grad_x, grad_basis_acc,
                                         fill(make_args<float>(sizes, x_strides, eps)), s);
    default:
      return "pixelwise_temporal_projection (cuda): unsupported dtype";
  }
}
