// CUDA kernels of temporal_relation (operators.md §3.1), runtime only (no torch headers).
//
//   u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] f[n, c, t2, i],  t1 < t2 ascending,
//   pair(a, b) = a (2T - a - 1) / 2 + (b - a - 1)
//   grad_f[n, c, t, i] = (1/C') sum_{s != t} grad_u[n, pair(min(t, s), max(t, s)), i] f[n, c, s, i]
//
// One thread per output element (pixels fastest, so every load and store is coalesced along w);
// the reuse of f across pairs is served by L1/L2 (f is the small, low-resolution feature map of
// the PWTP module). Accumulation in float (double for double). Deterministic: no atomics.
#include <cstdint>

#include "common/cuda_check.h"
#include "common/cuda_scalar.h"
#include "common/dtype_code.h"
#include "temporal_relation/temporal_relation_kernel.h"
#include "temporal_relation/temporal_relation_math.h"

namespace vidops {
namespace relation_cuda {
namespace {

using vidops::cuda::load;
using vidops::cuda::store;

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;

struct Args {
  int64_t N, C, T, H, W, P;
  int64_t sfn, sfc, sft, sfh, sfw;
  int64_t sgn, sgp, sgh, sgw;
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    relation_fwd_kernel(const scalar_t* __restrict__ f, scalar_t* __restrict__ u, const Args a) {
  const int64_t HW = a.H * a.W;
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (pix >= HW) return;
  const int64_t hh = pix / a.W, ww = pix - hh * a.W;
  const int64_t sp = hh * a.sfh + ww * a.sfw;
  for (int64_t p = blockIdx.y; p < a.P; p += gridDim.y) {
    int64_t t1 = 0, rem = p;
    while (rem >= a.T - 1 - t1) {
      rem -= a.T - 1 - t1;
      ++t1;
    }
    const int64_t t2 = t1 + 1 + rem;
    for (int64_t n = blockIdx.z; n < a.N; n += gridDim.z) {
      const scalar_t* f1 = f + n * a.sfn + t1 * a.sft + sp;
      const scalar_t* f2 = f + n * a.sfn + t2 * a.sft + sp;
      acc_t s = acc_t(0);
      for (int64_t c = 0; c < a.C; ++c) s += load<acc_t>(f1 + c * a.sfc) * load<acc_t>(f2 + c * a.sfc);
      store(u + (n * a.P + p) * HW + pix, s / static_cast<acc_t>(a.C));
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    relation_bwd_kernel(const scalar_t* __restrict__ gu, const scalar_t* __restrict__ f, scalar_t* __restrict__ gf,
                        const Args a) {
  const int64_t HW = a.H * a.W;
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (pix >= HW) return;
  const int64_t hh = pix / a.W, ww = pix - hh * a.W;
  const int64_t sp = hh * a.sfh + ww * a.sfw;
  const int64_t gsp = hh * a.sgh + ww * a.sgw;
  for (int64_t ct = blockIdx.y; ct < a.C * a.T; ct += gridDim.y) {
    const int64_t c = ct / a.T, t = ct - c * a.T;
    for (int64_t n = blockIdx.z; n < a.N; n += gridDim.z) {
      const scalar_t* fp = f + n * a.sfn + c * a.sfc + sp;
      const scalar_t* gp = gu + n * a.sgn + gsp;
      acc_t s = acc_t(0);
      for (int64_t q = 0; q < a.T; ++q) {
        if (q == t) continue;
        const int64_t pr = vidops::trel::pair_index(q, t, a.T);
        s += load<acc_t>(gp + pr * a.sgp) * load<acc_t>(fp + q * a.sft);
      }
      store(gf + ((n * a.C + c) * a.T + t) * HW + pix, s / static_cast<acc_t>(a.C));
    }
  }
}

inline unsigned cap(int64_t v) { return static_cast<unsigned>(v < kMaxGrid ? v : kMaxGrid); }

Args make_args(const int64_t* s, const int64_t* fs) {
  Args a{};
  a.N = s[0]; a.C = s[1]; a.T = s[2]; a.H = s[3]; a.W = s[4];
  a.P = a.T * (a.T - 1) / 2;
  a.sfn = fs[0]; a.sfc = fs[1]; a.sft = fs[2]; a.sfh = fs[3]; a.sfw = fs[4];
  return a;
}

template <typename scalar_t, typename acc_t>
const char* fwd(const void* f, void* u, const Args& a, cudaStream_t s) {
  dim3 grid(static_cast<unsigned>((a.H * a.W + kThreads - 1) / kThreads), cap(a.P), cap(a.N));
  relation_fwd_kernel<scalar_t, acc_t><<<grid, kThreads, 0, s>>>(static_cast<const scalar_t*>(f),
                                                                   static_cast<scalar_t*>(u), a);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename scalar_t, typename acc_t>
const char* bwd(const void* gu, const void* f, void* gf, const Args& a, cudaStream_t s) {
  dim3 grid(static_cast<unsigned>((a.H * a.W + kThreads - 1) / kThreads), cap(a.C * a.T), cap(a.N));
  relation_bwd_kernel<scalar_t, acc_t><<<grid, kThreads, 0, s>>>(
      static_cast<const scalar_t*>(gu), static_cast<const scalar_t*>(f), static_cast<scalar_t*>(gf), a);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

}  // namespace
}  // namespace relation_cuda
}  // namespace vidops

extern "C" const char* vidops_temporal_relation_fwd_cuda(const void* f, void* u, int dtype, const int64_t* sizes,
                                                         const int64_t* f_strides, void* stream) {
  using namespace vidops::relation_cuda;
  const Args a = make_args(sizes, f_strides);
  if (a.N == 0 || a.P == 0 || a.H * a.W == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case vidops::kFloat32: return fwd<float, float>(f, u, a, s);
    case vidops::kFloat64: return fwd<double, double>(f, u, a, s);
    case vidops::kFloat16: return fwd<__half, float>(f, u, a, s);
    case vidops::kBFloat16: return fwd<__nv_bfloat16, float>(f, u, a, s);
    default: return "temporal_relation (cuda): unsupported dtype";
  }
}

extern "C" const char* vidops_temporal_relation_bwd_cuda(const void* grad_u, const int64_t* gu_strides, const void* f,
                                                         void* grad_f, int dtype, const int64_t* sizes,
                                                         const int64_t* f_strides, void* stream) {
  using namespace vidops::relation_cuda;
  Args a = make_args(sizes, f_strides);
  a.sgn = gu_strides[0]; a.sgp = gu_strides[1]; a.sgh = gu_strides[2]; a.sgw = gu_strides[3];
  if (a.N == 0 || a.C * a.T == 0 || a.H * a.W == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case vidops::kFloat32: return bwd<float, float>(grad_u, f, grad_f, a, s);
    case vidops::kFloat64: return bwd<double, double>(grad_u, f, grad_f, a, s);
    case vidops::kFloat16: return bwd<__half, float>(grad_u, f, grad_f, a, s);
    case vidops::kBFloat16: return bwd<__nv_bfloat16, float>(grad_u, f, grad_f, a, s);
    default: return "temporal_relation (cuda): unsupported dtype";
  }
}
