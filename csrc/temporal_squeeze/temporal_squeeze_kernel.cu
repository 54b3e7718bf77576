// CUDA kernels of temporal_squeeze (operators.md §4), runtime only (no torch headers).
//
// x (N, C, K, H, W), basis A (N, K, D) shared by every row j = (c, h, w) of a sample,
// G = A^T A + lam I, lam = e trace/D (e for A = 0), e = max(eps, 8 u), y_j = G^{-1} A^T x_j,
// r_j = x_j - A y_j, l_proj[n] = mean_j ||r_j||_2. The kernels solve with A' = s A (s = pow2_scale of
// max |A|, per sample: nothing over- or underflows whatever the basis's scale), y = s y',
// dL/dy' = s dL/dy, grad_A = s grad_A'.
//
// A block serves rows of one sample (grid-stride over the sample's C*H*W rows). It stages A and
// Q = G^{-1} A^T (computed by K threads, one row of Q^T each) in shared memory; every thread
// factors G itself (LDL^T from common/subspace_math.h) (D <= 4, a few dozen flops) for the backward's per-row solves. Per row: y = Q x,
// r = x - A y with x re-read from L1/L2 for each pass (any K, no register arrays).
//
// Backward per row (beta = grad_l / (C H W), v = beta r / ||r|| or 0, q = G^{-1} A^T v,
// g~ = G^{-1} grad_y, e = g~ - q): grad_x = v + A e; grad_A += r e^T - grad_x y^T, and once per
// block -(2 eps / D)(sum e . y) A. grad_A accumulates in the thread's own shared-memory column,
// is summed over the block's threads in a fixed order, and the per-block partials are summed per
// sample in a fixed order: deterministic, no atomics. Same for l_proj.
#include <cstdint>

#include "common/cuda_check.h"
#include "common/cuda_scalar.h"
#include "common/dtype_code.h"
#include "common/subspace_math.h"
#include "temporal_squeeze/temporal_squeeze_kernel.h"

namespace vidops {
namespace tsp_cuda {
namespace {

using vidops::cuda::block_sum;
using vidops::cuda::load;
using vidops::cuda::store;

constexpr int kMaxThreads = 128;
constexpr int64_t kMaxBlocksPerSample = 512;
constexpr int kSmemLimit = 48 * 1024;

template <typename acc_t>
struct Args {
  int64_t N, C, K, H, W;
  int64_t sxn, sxc, sxk, sxh, sxw;
  int64_t sgn, sgc, sgd, sgh, sgw, sgl;
  int64_t blocks;  // per sample
  acc_t eps;
};

template <typename acc_t, int D>
using Ldl = vidops::subspace::Ldl<D, acc_t>;

// Stage A' = s A (K x D) and Q^T (K x D, row k = G^{-1} A'[k, :]^T) of sample n; every thread gets
// G's LDL^T factor (common/subspace_math.h) and returns s.
template <typename acc_t, int D>
__device__ __forceinline__ acc_t setup(const acc_t* __restrict__ bn, acc_t* sA, acc_t* sQ, const Args<acc_t>& a,
                                       Ldl<acc_t, D>& chol) {
  const int64_t KD = a.K * D;
  acc_t m = acc_t(0);  // every thread reads the (small) basis for its scale
  for (int64_t i = 0; i < KD; ++i) {
    const acc_t v = bn[i] < acc_t(0) ? -bn[i] : bn[i];
    m = v > m ? v : m;
  }
  const acc_t s = vidops::subspace::pow2_scale<acc_t>(m);
  __syncthreads();  // the previous sample's readers are done
  for (int64_t i = threadIdx.x; i < KD; i += blockDim.x) sA[i] = bn[i] * s;
  __syncthreads();
  acc_t g[D * (D + 1) / 2];
#pragma unroll
  for (int i = 0; i < D * (D + 1) / 2; ++i) g[i] = acc_t(0);
  for (int64_t k = 0; k < a.K; ++k)
#pragma unroll
    for (int i = 0; i < D; ++i)
#pragma unroll
      for (int j = 0; j <= i; ++j) g[vidops::subspace::tri(i, j)] += sA[k * D + i] * sA[k * D + j];
  vidops::subspace::ldl_factor<D, acc_t>(g, vidops::subspace::regulariser<D, acc_t>(g, a.eps), chol);
  for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
    acc_t b[D], q[D];
#pragma unroll
    for (int d = 0; d < D; ++d) b[d] = sA[k * D + d];
    vidops::subspace::ldl_solve<D, acc_t>(chol, b, q);
#pragma unroll
    for (int d = 0; d < D; ++d) sQ[k * D + d] = q[d];
  }
  __syncthreads();
  return s;
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ const scalar_t* row_ptr(const scalar_t* x, int64_t n, int64_t j, int64_t HW,
                                                   const Args<acc_t>& a, int64_t& c, int64_t& hw) {
  c = j / HW;
  hw = j - c * HW;
  const int64_t hh = hw / a.W, ww = hw - hh * a.W;
  return x + n * a.sxn + c * a.sxc + hh * a.sxh + ww * a.sxw;
}

template <typename scalar_t, typename acc_t, int D>
__global__ void __launch_bounds__(kMaxThreads)
    tsp_fwd_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ basis, scalar_t* __restrict__ y,
                   acc_t* __restrict__ partial, const Args<acc_t> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ acc_t scratch[kMaxThreads / 32];
  acc_t* sA = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* sQ = sA + a.K * D;
  const int64_t HW = a.H * a.W, M = a.C * HW;
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    Ldl<acc_t, D> chol;
    const acc_t sc = setup<acc_t, D>(basis + n * a.K * D, sA, sQ, a, chol);
    acc_t norms = acc_t(0);
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < M;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      int64_t c, hw;
      const scalar_t* xp = row_ptr(x, n, j, HW, a, c, hw);
      acc_t yv[D];
#pragma unroll
      for (int d = 0; d < D; ++d) yv[d] = acc_t(0);
      for (int64_t k = 0; k < a.K; ++k) {
        const acc_t v = load<acc_t>(xp + k * a.sxk);
#pragma unroll
        for (int d = 0; d < D; ++d) yv[d] += sQ[k * D + d] * v;
      }
      scalar_t* yp = y + (n * a.C + c) * D * HW + hw;
#pragma unroll
      for (int d = 0; d < D; ++d) store(yp + d * HW, yv[d] * sc);
      acc_t s2 = acc_t(0);
      for (int64_t k = 0; k < a.K; ++k) {
        acc_t r = load<acc_t>(xp + k * a.sxk);
#pragma unroll
        for (int d = 0; d < D; ++d) r -= sA[k * D + d] * yv[d];
        s2 += r * r;
      }
      norms += sqrt(s2);
    }
    const acc_t tot = block_sum(norms, scratch);
    if (threadIdx.x == 0) partial[n * a.blocks + blockIdx.x] = tot;
  }
}

template <typename scalar_t, typename acc_t, int D>
__global__ void __launch_bounds__(kMaxThreads)
    tsp_bwd_kernel(const scalar_t* __restrict__ gy, const acc_t* __restrict__ gl, const scalar_t* __restrict__ x,
                   const acc_t* __restrict__ basis, scalar_t* __restrict__ gx, acc_t* __restrict__ partial,
                   const Args<acc_t> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ acc_t scratch[kMaxThreads / 32];
  __shared__ acc_t ey_total;
  const int B = blockDim.x;
  const int64_t KD = a.K * D;
  acc_t* sA = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* sQ = sA + KD;
  acc_t* sAcc = sQ + KD;  // KD rows x B columns: this thread's grad_A in column threadIdx.x
  acc_t* mine = sAcc + threadIdx.x;
  const int64_t HW = a.H * a.W, M = a.C * HW;
  const acc_t k2 = acc_t(2) * a.eps / acc_t(D);
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    Ldl<acc_t, D> chol;
    const acc_t sc = setup<acc_t, D>(basis + n * KD, sA, sQ, a, chol);
    for (int64_t i = 0; i < KD; ++i) mine[i * B] = acc_t(0);
    const acc_t beta = gl != nullptr ? gl[n * a.sgl] / static_cast<acc_t>(M) : acc_t(0);
    acc_t ey = acc_t(0);
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * B + threadIdx.x; j < M; j += static_cast<int64_t>(gridDim.x) * B) {
      int64_t c, hw;
      const scalar_t* xp = row_ptr(x, n, j, HW, a, c, hw);
      acc_t yv[D], atr[D];
#pragma unroll
      for (int d = 0; d < D; ++d) {
        yv[d] = acc_t(0);
        atr[d] = acc_t(0);
      }
      for (int64_t k = 0; k < a.K; ++k) {
        const acc_t v = load<acc_t>(xp + k * a.sxk);
#pragma unroll
        for (int d = 0; d < D; ++d) yv[d] += sQ[k * D + d] * v;
      }
      acc_t s2 = acc_t(0);
      for (int64_t k = 0; k < a.K; ++k) {
        acc_t r = load<acc_t>(xp + k * a.sxk);
#pragma unroll
        for (int d = 0; d < D; ++d) r -= sA[k * D + d] * yv[d];
        s2 += r * r;
#pragma unroll
        for (int d = 0; d < D; ++d) atr[d] += sA[k * D + d] * r;
      }
      const acc_t nr = sqrt(s2);
      const acc_t scale = nr > acc_t(0) ? beta / nr : acc_t(0);
      acc_t e[D], q[D];
#pragma unroll
      for (int d = 0; d < D; ++d) atr[d] *= scale;  // A^T v
      vidops::subspace::ldl_solve<D, acc_t>(chol, atr, q);
      if (gy != nullptr) {
        const scalar_t* gp = gy + n * a.sgn + c * a.sgc + (hw / a.W) * a.sgh + (hw % a.W) * a.sgw;
        acc_t b[D];
#pragma unroll
        for (int d = 0; d < D; ++d) b[d] = load<acc_t>(gp + d * a.sgd) * sc;  // dL/dy' = s dL/dy
        vidops::subspace::ldl_solve<D, acc_t>(chol, b, e);
#pragma unroll
        for (int d = 0; d < D; ++d) e[d] -= q[d];
      } else {
#pragma unroll
        for (int d = 0; d < D; ++d) e[d] = -q[d];
      }
#pragma unroll
      for (int d = 0; d < D; ++d) ey += e[d] * yv[d];
      scalar_t* gxp = gx + (n * a.C + c) * a.K * HW + hw;
      for (int64_t k = 0; k < a.K; ++k) {
        acc_t r = load<acc_t>(xp + k * a.sxk);
#pragma unroll
        for (int d = 0; d < D; ++d) r -= sA[k * D + d] * yv[d];
        acc_t g = scale * r;
#pragma unroll
        for (int d = 0; d < D; ++d) g += sA[k * D + d] * e[d];
        store(gxp + k * HW, g);
#pragma unroll
        for (int d = 0; d < D; ++d) mine[(k * D + d) * B] += r * e[d] - g * yv[d];
      }
    }
    const acc_t tot = block_sum(ey, scratch);
    if (threadIdx.x == 0) ey_total = tot;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < KD; i += B) {
      acc_t s = acc_t(0);
      for (int t = 0; t < B; ++t) s += sAcc[i * B + t];
      partial[(n * a.blocks + blockIdx.x) * KD + i] = (s - k2 * ey_total * sA[i]) * sc;  // grad_A = s grad_A'
    }
  }
}

// out[n, i] = sum_b in[n, b, i] (fixed order), optionally divided.
template <typename acc_t>
__global__ void sum_blocks_kernel(const acc_t* __restrict__ in, acc_t* __restrict__ out, int64_t N, int64_t blocks,
                                  int64_t inner, acc_t divisor) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * inner) return;
  const int64_t n = idx / inner, i = idx - n * inner;
  acc_t s = acc_t(0);
  for (int64_t b = 0; b < blocks; ++b) s += in[(n * blocks + b) * inner + i];
  out[idx] = s / divisor;
}

inline unsigned grid_y(int64_t N) { return static_cast<unsigned>(N < 65535 ? N : 65535); }

template <typename acc_t>
Args<acc_t> make_args(const int64_t* s, const int64_t* xs, double eps) {
  Args<acc_t> a{};
  a.N = s[0]; a.C = s[1]; a.K = s[2]; a.H = s[3]; a.W = s[4];
  a.sxn = xs[0]; a.sxc = xs[1]; a.sxk = xs[2]; a.sxh = xs[3]; a.sxw = xs[4];
  a.eps = static_cast<acc_t>(vidops::subspace::effective_eps<acc_t>(eps));
  return a;
}

// Threads per block and dynamic shared memory: the largest of 128, 64, 32 within the opt-in limit.
template <typename Kernel>
const char* pick_block(Kernel kernel, int64_t fixed, int64_t per_thread, int& threads, int64_t& bytes) {
  int dev = 0, optin = 0;
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  optin -= 1024;  // the static scratch
  threads = 0;
  for (int b = kMaxThreads; b >= 32; b /= 2)
    if (fixed + per_thread * b <= optin) {
      threads = b;
      break;
    }
  if (threads == 0) return "temporal_squeeze (cuda): K * D too large for the shared-memory kernel";
  bytes = fixed + per_thread * threads;
  if (bytes > kSmemLimit - 1024)
    VIDOPS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return nullptr;
}

int64_t blocks_per_sample(int64_t M, int threads) {
  const int64_t b = (M + threads - 1) / threads;
  return b < 1 ? 1 : (b < kMaxBlocksPerSample ? b : kMaxBlocksPerSample);
}

template <typename scalar_t, typename acc_t, int D>
const char* launch_fwd(const void* x, const void* basis, void* y, void* l, void* ws, Args<acc_t> a, cudaStream_t s) {
  auto kernel = tsp_fwd_kernel<scalar_t, acc_t, D>;
  int threads = 0;
  int64_t bytes = 0;
  if (const char* err = pick_block(kernel, 2 * a.K * D * static_cast<int64_t>(sizeof(acc_t)), 0, threads, bytes))
    return err;
  threads = kMaxThreads;
  const int64_t M = a.C * a.H * a.W;
  a.blocks = blocks_per_sample(M, kMaxThreads);  // the workspace size assumes kMaxThreads
  dim3 grid(static_cast<unsigned>(a.blocks), grid_y(a.N));
  kernel<<<grid, threads, bytes, s>>>(static_cast<const scalar_t*>(x), static_cast<const acc_t*>(basis),
                                      static_cast<scalar_t*>(y), static_cast<acc_t*>(ws), a);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const int64_t total = a.N;
  sum_blocks_kernel<acc_t><<<static_cast<unsigned>((total + 127) / 128), 128, 0, s>>>(
      static_cast<const acc_t*>(ws), static_cast<acc_t*>(l), a.N, a.blocks, 1, static_cast<acc_t>(M));
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename scalar_t, typename acc_t, int D>
const char* launch_bwd(const void* gy, const void* gl, const void* x, const void* basis, void* gx, void* gb, void* ws,
                       Args<acc_t> a, cudaStream_t s) {
  auto kernel = tsp_bwd_kernel<scalar_t, acc_t, D>;
  int threads = 0;
  int64_t bytes = 0;
  const int64_t KD = a.K * D;
  if (const char* err = pick_block(kernel, 2 * KD * static_cast<int64_t>(sizeof(acc_t)),
                                   KD * static_cast<int64_t>(sizeof(acc_t)), threads, bytes))
    return err;
  const int64_t M = a.C * a.H * a.W;
  a.blocks = blocks_per_sample(M, 32);  // <= the workspace's count (sized for 32-thread blocks)
  const int64_t b_threads = blocks_per_sample(M, threads);
  a.blocks = b_threads < a.blocks ? b_threads : a.blocks;
  dim3 grid(static_cast<unsigned>(a.blocks), grid_y(a.N));
  kernel<<<grid, threads, bytes, s>>>(static_cast<const scalar_t*>(gy), static_cast<const acc_t*>(gl),
                                      static_cast<const scalar_t*>(x), static_cast<const acc_t*>(basis),
                                      static_cast<scalar_t*>(gx), static_cast<acc_t*>(ws), a);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const int64_t total = a.N * KD;
  sum_blocks_kernel<acc_t><<<static_cast<unsigned>((total + 127) / 128), 128, 0, s>>>(
      static_cast<const acc_t*>(ws), static_cast<acc_t*>(gb), a.N, a.blocks, KD, acc_t(1));
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename scalar_t, typename acc_t>
const char* fwd_d(int64_t D, const void* x, const void* b, void* y, void* l, void* ws, const Args<acc_t>& a,
                  cudaStream_t s) {
  switch (D) {
    case 1: return launch_fwd<scalar_t, acc_t, 1>(x, b, y, l, ws, a, s);
    case 2: return launch_fwd<scalar_t, acc_t, 2>(x, b, y, l, ws, a, s);
    case 3: return launch_fwd<scalar_t, acc_t, 3>(x, b, y, l, ws, a, s);
    case 4: return launch_fwd<scalar_t, acc_t, 4>(x, b, y, l, ws, a, s);
    default: return "temporal_squeeze (cuda): D must be 1..4";
  }
}

template <typename scalar_t, typename acc_t>
const char* bwd_d(int64_t D, const void* gy, const void* gl, const void* x, const void* b, void* gx, void* gb,
                  void* ws, const Args<acc_t>& a, cudaStream_t s) {
  switch (D) {
    case 1: return launch_bwd<scalar_t, acc_t, 1>(gy, gl, x, b, gx, gb, ws, a, s);
    case 2: return launch_bwd<scalar_t, acc_t, 2>(gy, gl, x, b, gx, gb, ws, a, s);
    case 3: return launch_bwd<scalar_t, acc_t, 3>(gy, gl, x, b, gx, gb, ws, a, s);
    case 4: return launch_bwd<scalar_t, acc_t, 4>(gy, gl, x, b, gx, gb, ws, a, s);
    default: return "temporal_squeeze (cuda): D must be 1..4";
  }
}

}  // namespace
}  // namespace tsp_cuda
}  // namespace vidops

extern "C" int64_t vidops_tsp_workspace(const int64_t* sizes, int backward) {
  using namespace vidops::tsp_cuda;
  const int64_t M = sizes[1] * sizes[3] * sizes[4];
  if (!backward) return sizes[0] * blocks_per_sample(M, kMaxThreads);
  return sizes[0] * blocks_per_sample(M, 32) * sizes[2] * sizes[5];
}

extern "C" const char* vidops_tsp_fwd_cuda(const void* x, const void* basis, void* y, void* l_proj, void* workspace,
                                           int dtype, const int64_t* sizes, const int64_t* x_strides, double eps,
                                           void* stream) {
  using namespace vidops::tsp_cuda;
  if (sizes[0] == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t D = sizes[5];
  switch (dtype) {
    case vidops::kFloat32: return fwd_d<float, float>(D, x, basis, y, l_proj, workspace, make_args<float>(sizes, x_strides, eps), s);
    case vidops::kFloat64: return fwd_d<double, double>(D, x, basis, y, l_proj, workspace, make_args<double>(sizes, x_strides, eps), s);
    case vidops::kFloat16: return fwd_d<__half, float>(D, x, basis, y, l_proj, workspace, make_args<float>(sizes, x_strides, eps), s);
    case vidops::kBFloat16: return fwd_d<__nv_bfloat16, float>(D, x, basis, y, l_proj, workspace, make_args<float>(sizes, x_strides, eps), s);
    default: return "temporal_squeeze (cuda): unsupported dtype";
  }
}

extern "C" const char* vidops_tsp_bwd_cuda(const void* grad_y, const int64_t* gy_strides, const void* grad_l,
                                           int64_t gl_stride, const void* x, const void* basis, void* grad_x,
                                           void* grad_basis, void* workspace, int dtype, const int64_t* sizes,
                                           const int64_t* x_strides, double eps, void* stream) {
  using namespace vidops::tsp_cuda;
  if (sizes[0] == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t D = sizes[5];
  auto fill = [&](auto a) {
    if (grad_y != nullptr) {
      a.sgn = gy_strides[0]; a.sgc = gy_strides[1]; a.sgd = gy_strides[2]; a.sgh = gy_strides[3]; a.sgw = gy_strides[4];
    }
    a.sgl = gl_stride;
    return a;
  };
  switch (dtype) {
    case vidops::kFloat32:
      return bwd_d<float, float>(D, grad_y, grad_l, x, basis, grad_x, grad_basis, workspace, fill(make_args<float>(sizes, x_strides, eps)), s);
    case vidops::kFloat64:
      return bwd_d<double, double>(D, grad_y, grad_l, x, basis, grad_x, grad_basis, workspace, fill(make_args<double>(sizes, x_strides, eps)), s);
    case vidops::kFloat16:
      return bwd_d<__half, float>(D, grad_y, grad_l, x, basis, grad_x, grad_basis, workspace, fill(make_args<float>(sizes, x_strides, eps)), s);
    case vidops::kBFloat16:
      return bwd_d<__nv_bfloat16, float>(D, grad_y, grad_l, x, basis, grad_x, grad_basis, workspace, fill(make_args<float>(sizes, x_strides, eps)), s);
    default:
      return "temporal_squeeze (cuda): unsupported dtype";
  }
}
