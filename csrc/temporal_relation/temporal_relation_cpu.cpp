// CPU kernels of the temporal relation descriptor (operators.md §3.1), OpenMP over (sample, chunk of
// kChunk positions), SIMD across positions (the vector types and ISA dispatch of
// common/cpu_simd.h).
// Forward: per chunk, for every channel and block of L positions the T frame vectors stay in
// registers and acc[pair] += f[t1] f[t2] accumulates in an L1-resident (P, kChunk) buffer; then
// u = acc / C'. Backward: per chunk grad_u / C' is staged once (P, kChunk); per channel and block
// grad_f[c,t] = sum_{s != t} g[pair(t,s)] f[c,s] with the T frame vectors in registers.
// Accumulation in float (double for double inputs); every output element is summed in the same
// order whatever the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/cpu_simd.h"
#include "temporal_relation/temporal_relation_math.h"

namespace vidops {
namespace trel {
namespace {

using cpu_simd::VecBuf;
using cpu_simd::vload;
using cpu_simd::vstore;

constexpr int64_t kChunk = 256;  // positions per task (a multiple of every vector width)

template <typename scalar_t>
struct Problem {
  const scalar_t* f;
  const scalar_t* grad_u;  // backward
  scalar_t* out;           // u (forward) or grad_f (backward)
  int64_t N, C, T, L;      // L = h * w
};

template <int Unused, typename V, typename S, typename scalar_t>
VIDOPS_AI void forward_impl(const Problem<scalar_t>& pb, int64_t begin, int64_t end) {
  constexpr int VL = sizeof(V) / sizeof(S);
  const int64_t C = pb.C, T = pb.T, L = pb.L, P = num_pairs(T);
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  const V inv_C = subspace::splat<V>(1.0 / static_cast<double>(C));
  VecBuf<V> acc(P * (kChunk / VL)), fv(T);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / chunks, j0 = (task % chunks) * kChunk;
    const int64_t len = std::min(kChunk, L - j0);
    const int64_t nb = (len + VL - 1) / VL;
    for (int64_t k = 0; k < P * nb; ++k) acc[k] = V{};
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* fc = pb.f + (n * C + c) * T * L + j0;
      for (int64_t b = 0; b < nb; ++b) {
        const int nl = static_cast<int>(std::min<int64_t>(VL, len - b * VL));
        for (int64_t t = 0; t < T; ++t) {
          __builtin_prefetch(fc + t * L + b * VL + 4 * VL, 0, 3);
          fv[t] = vload<V, S>(fc + t * L + b * VL, nl);
        }
        V* a = acc.data() + b;
        int64_t p = 0;
        for (int64_t t1 = 0; t1 < T; ++t1) {
          const V f1 = fv[t1];
          for (int64_t t2 = t1 + 1; t2 < T; ++t2, ++p) a[p * nb] += f1 * fv[t2];
        }
      }
    }
    for (int64_t p = 0; p < P; ++p) {
      scalar_t* o = pb.out + (n * P + p) * L + j0;
      for (int64_t b = 0; b < nb; ++b) {
        const int nl = static_cast<int>(std::min<int64_t>(VL, len - b * VL));
        vstore<V, S>(o + b * VL, acc[p * nb + b] * inv_C, nl);
      }
    }
  }
}

template <int Unused, typename V, typename S, typename scalar_t>
VIDOPS_AI void backward_impl(const Problem<scalar_t>& pb, int64_t begin, int64_t end) {
  constexpr int VL = sizeof(V) / sizeof(S);
  const int64_t C = pb.C, T = pb.T, L = pb.L, P = num_pairs(T);
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  const V inv_C = subspace::splat<V>(1.0 / static_cast<double>(C));
  VecBuf<V> g(P * (kChunk / VL)), fv(T);
  std::vector<int64_t> pidx(T * T);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = 0; s < T; ++s) pidx[t * T + s] = s == t ? -1 : pair_index(t, s, T);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / chunks, j0 = (task % chunks) * kChunk;
    const int64_t len = std::min(kChunk, L - j0);
    const int64_t nb = (len + VL - 1) / VL;
    for (int64_t p = 0; p < P; ++p) {
      const scalar_t* src = pb.grad_u + (n * P + p) * L + j0;
      for (int64_t b = 0; b < nb; ++b) {
        const int nl = static_cast<int>(std::min<int64_t>(VL, len - b * VL));
        g[b * P + p] = vload<V, S>(src + b * VL, nl) * inv_C;   // (block, pair): a block's pairs adjacent
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* fc = pb.f + (n * C + c) * T * L + j0;
      scalar_t* gc = pb.out + (n * C + c) * T * L + j0;
      for (int64_t b = 0; b < nb; ++b) {
        const int nl = static_cast<int>(std::min<int64_t>(VL, len - b * VL));
        for (int64_t t = 0; t < T; ++t) {
          __builtin_prefetch(fc + t * L + b * VL + 4 * VL, 0, 3);
          __builtin_prefetch(gc + t * L + b * VL + 4 * VL, 1, 3);
          fv[t] = vload<V, S>(fc + t * L + b * VL, nl);
        }
        const V* gb = g.data() + b * P;
        for (int64_t t = 0; t < T; ++t) {
          V a = V{};
          const int64_t* pi = pidx.data() + t * T;
          for (int64_t s = 0; s < T; ++s)
            if (s != t) a += gb[pi[s]] * fv[s];
          vstore<V, S>(gc + t * L + b * VL, a, nl);
        }
      }
    }
  }
}

VIDOPS_CPU_SIMD_VARIANTS(forward_rows, forward_impl)
VIDOPS_CPU_SIMD_VARIANTS(backward_rows, backward_impl)

void check_f(const at::Tensor& f) {
  TORCH_CHECK(f.dim() == 5 && f.size(1) >= 1 && f.size(2) >= 2,
              "vidops.temporal_relation: f must be (N, C', T, h, w) with C' >= 1 and T >= 2, got ", f.sizes());
}

at::Tensor trel_fwd_cpu(const at::Tensor& f_) {
  check_f(f_);
  const at::Tensor f = f_.contiguous();
  const int64_t N = f.size(0), C = f.size(1), T = f.size(2), h = f.size(3), w = f.size(4);
  at::Tensor u = at::empty({N, num_pairs(T), h, w}, f.options());
  if (u.numel() == 0) return u;
  const int64_t L = h * w, chunks = (L + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "trel_fwd_cpu", [&] {
    using S = cpu_simd::compute_t<scalar_t>;
    const Problem<scalar_t> pb{f.data_ptr<scalar_t>(), nullptr, u.data_ptr<scalar_t>(), N, C, T, L};
    at::parallel_for(0, N * chunks, cpu_simd::grain_for(kChunk * C * num_pairs(T)), [&](int64_t b, int64_t e) {
      forward_rows<0, S, scalar_t>(pb, b, e);
    });
  });
  return u;
}

at::Tensor trel_bwd_cpu(const at::Tensor& grad_u_, const at::Tensor& f_) {
  check_f(f_);
  const at::Tensor f = f_.contiguous();
  const int64_t N = f.size(0), C = f.size(1), T = f.size(2), h = f.size(3), w = f.size(4);
  TORCH_CHECK(grad_u_.sizes() == at::IntArrayRef({N, num_pairs(T), h, w}),
              "vidops.temporal_relation: grad_u must be (N, T(T-1)/2, h, w), got ", grad_u_.sizes());
  const at::Tensor grad_u = grad_u_.to(f.scalar_type()).contiguous();
  at::Tensor gf = at::empty_like(f, at::MemoryFormat::Contiguous);
  if (gf.numel() == 0) return gf;
  const int64_t L = h * w, chunks = (L + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "trel_bwd_cpu", [&] {
    using S = cpu_simd::compute_t<scalar_t>;
    const Problem<scalar_t> pb{f.data_ptr<scalar_t>(), grad_u.data_ptr<scalar_t>(), gf.data_ptr<scalar_t>(), N, C,
                               T, L};
    at::parallel_for(0, N * chunks, cpu_simd::grain_for(kChunk * C * T * T), [&](int64_t b, int64_t e) {
      backward_rows<0, S, scalar_t>(pb, b, e);
    });
  });
  return gf;
}

}  // namespace
}  // namespace trel
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_temporal_relation_fwd", &vidops::trel::trel_fwd_cpu);
  m.impl("_temporal_relation_bwd", &vidops::trel::trel_bwd_cpu);
}
