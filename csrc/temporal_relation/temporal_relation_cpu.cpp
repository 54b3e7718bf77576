// CPU kernels of the temporal relation descriptor (spec 3.1), OpenMP over (sample, chunk of
// positions). Forward: for every channel and pair, acc[pair][j] += f[c,t1,j] f[c,t2,j] (positions j
// innermost, vectorised), then u = acc / C'. Backward: grad_f[c,t,j] = sum_{s != t}
// (grad_u[pair(t,s), j] / C') f[c,s,j]. Accumulation in float (double for double inputs).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "temporal_relation/temporal_relation_math.h"

namespace vidops {
namespace {

constexpr int64_t kChunk = 256;  // positions per task

template <typename scalar_t, typename S>
void trel_forward(const scalar_t* f, scalar_t* u, int64_t N, int64_t C, int64_t T, int64_t L) {
  const int64_t P = trel::num_pairs(T);
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  const S inv_C = S(1) / S(C);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / (kChunk * C * T));  // small calls stay inline
  at::parallel_for(0, N * chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<S> acc(P * kChunk), fr(T * kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, j0 = (task % chunks) * kChunk;
      const int64_t len = std::min(kChunk, L - j0);
      std::fill(acc.begin(), acc.end(), S(0));
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* fc = f + (n * C + c) * T * L + j0;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t j = 0; j < len; ++j) fr[t * kChunk + j] = static_cast<S>(fc[t * L + j]);
        int64_t p = 0;
        for (int64_t t1 = 0; t1 < T; ++t1) {
          const S* __restrict__ a = fr.data() + t1 * kChunk;
          for (int64_t t2 = t1 + 1; t2 < T; ++t2, ++p) {
            const S* __restrict__ b = fr.data() + t2 * kChunk;
            S* __restrict__ o = acc.data() + p * kChunk;
            for (int64_t j = 0; j < len; ++j) o[j] += a[j] * b[j];
          }
        }
      }
      for (int64_t p = 0; p < P; ++p) {
        scalar_t* o = u + (n * P + p) * L + j0;
        const S* a = acc.data() + p * kChunk;
        for (int64_t j = 0; j < len; ++j) o[j] = static_cast<scalar_t>(a[j] * inv_C);
      }
    }
  });
}

template <typename scalar_t, typename S>
void trel_backward(const scalar_t* gu, const scalar_t* f, scalar_t* gf, int64_t N, int64_t C, int64_t T,
                   int64_t L) {
  const int64_t P = trel::num_pairs(T);
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  const S inv_C = S(1) / S(C);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / (kChunk * C * T));  // small calls stay inline
  at::parallel_for(0, N * chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<S> g(P * kChunk), fr(T * kChunk), acc(kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, j0 = (task % chunks) * kChunk;
      const int64_t len = std::min(kChunk, L - j0);
      for (int64_t p = 0; p < P; ++p) {
        const scalar_t* src = gu + (n * P + p) * L + j0;
        S* o = g.data() + p * kChunk;
        for (int64_t j = 0; j < len; ++j) o[j] = static_cast<S>(src[j]) * inv_C;
      }
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* fc = f + (n * C + c) * T * L + j0;
        scalar_t* gc = gf + (n * C + c) * T * L + j0;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t j = 0; j < len; ++j) fr[t * kChunk + j] = static_cast<S>(fc[t * L + j]);
        for (int64_t t = 0; t < T; ++t) {
          S* __restrict__ ac = acc.data();
          for (int64_t j = 0; j < len; ++j) ac[j] = S(0);
          for (int64_t s = 0; s < T; ++s) {
            if (s == t) continue;
            const S* __restrict__ a = g.data() + trel::pair_index(t, s, T) * kChunk;
            const S* __restrict__ b = fr.data() + s * kChunk;
            for (int64_t j = 0; j < len; ++j) ac[j] += a[j] * b[j];
          }
          scalar_t* __restrict__ o = gc + t * L;
          for (int64_t j = 0; j < len; ++j) o[j] = static_cast<scalar_t>(ac[j]);
        }
      }
    }
  });
}

void check_f(const at::Tensor& f) {
  TORCH_CHECK(f.dim() == 5 && f.size(1) >= 1 && f.size(2) >= 2,
              "vidops.temporal_relation: f must be (N, C', T, h, w) with C' >= 1 and T >= 2, got ", f.sizes());
}

at::Tensor trel_fwd_cpu(const at::Tensor& f_) {
  check_f(f_);
  const at::Tensor f = f_.contiguous();
  const int64_t N = f.size(0), C = f.size(1), T = f.size(2), h = f.size(3), w = f.size(4);
  at::Tensor u = at::empty({N, trel::num_pairs(T), h, w}, f.options());
  if (u.numel() == 0) return u;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "trel_fwd_cpu", [&] {
    using S = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    trel_forward<scalar_t, S>(f.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), N, C, T, h * w);
  });
  return u;
}

at::Tensor trel_bwd_cpu(const at::Tensor& grad_u_, const at::Tensor& f_) {
  check_f(f_);
  const at::Tensor f = f_.contiguous();
  const int64_t N = f.size(0), C = f.size(1), T = f.size(2), h = f.size(3), w = f.size(4);
  TORCH_CHECK(grad_u_.sizes() == at::IntArrayRef({N, trel::num_pairs(T), h, w}),
              "vidops.temporal_relation: grad_u must be (N, T(T-1)/2, h, w), got ", grad_u_.sizes());
  const at::Tensor grad_u = grad_u_.to(f.scalar_type()).contiguous();
  at::Tensor gf = at::empty_like(f, at::MemoryFormat::Contiguous);
  if (gf.numel() == 0) return gf;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "trel_bwd_cpu", [&] {
    using S = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    trel_backward<scalar_t, S>(grad_u.data_ptr<scalar_t>(), f.data_ptr<scalar_t>(), gf.data_ptr<scalar_t>(), N, C,
                               T, h * w);
  });
  return gf;
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_temporal_relation_fwd", &vidops::trel_fwd_cpu);
  m.impl("_temporal_relation_bwd", &vidops::trel_bwd_cpu);
}
