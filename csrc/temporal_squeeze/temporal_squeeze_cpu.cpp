// CPU kernels of temporal squeeze pooling, OpenMP over (sample, channel, chunk of pixels).
// Per sample the basis is scaled by a power of two, A' = s A with max |A'| in [0.5, 1) (nothing then
// depends on the basis's scale: y = s y', grad_A = s grad_A'), and
// G = A'^T A' + lam I (A' (K, D), lam = e trace/D, e = max(eps, 8 u)) is
// factorised once (LDL^T with pivots floored at lam, common/subspace_math.h) and Pm = G^{-1} A^T
// (D, K) formed by substitution; per position y = Pm x, p = x - A y formed explicitly (the norm is
// not squared, so the cancellation of the closed form would cost half the digits) and ||p||
// summed per task in double; l_proj sums the tasks of a sample in a fixed order (deterministic,
// independent of the thread count).
// Backward per position: q = grad_l/(C H W) p/||p|| (0 where ||p|| = 0), A^T q = (grad_l/(C H W))
// A^T p / ||p||, z = G^{-1}(A^T q - grad_y) by substitution, grad_x = q - A z; per task the sums of
// q y^T, p z^T and z y^T (double), reduced per sample in task order into
// grad_A = -sum q y^T + A sum z y^T - sum p z^T + (2 e / D) tr(sum z y^T) A.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu_simd.h"
#include "common/subspace_math.h"

namespace vidops {
namespace {

using subspace::tri;
using cpu_simd::compute_type;
using cpu_simd::dispatch_D;
constexpr int64_t kChunk = 512;  // positions per task

template <int D, typename S>
struct SampleBasis {  // per-sample solve data
  static constexpr int P = D * (D + 1) / 2;
  std::vector<S> A, Pm;  // A' = s A (K, D), Pm = G^{-1} A'^T (D, K)
  subspace::Ldl<D, S> f;
  S lam, scale;
  SampleBasis(const S* a_in, int64_t K, S eps) : A(a_in, a_in + K * D), Pm(D * K) {
    S m = S(0);
    for (const S v : A) m = std::max(m, std::abs(v));
    scale = subspace::pow2_scale<S>(m);
    for (S& v : A) v *= scale;
    const S* a = A.data();
    S g[P];
    for (int k = 0; k < P; ++k) g[k] = S(0);
    for (int64_t t = 0; t < K; ++t)
      for (int d1 = 0; d1 < D; ++d1)
        for (int d2 = 0; d2 <= d1; ++d2) g[tri(d1, d2)] += a[t * D + d1] * a[t * D + d2];
    lam = subspace::regulariser<D, S>(g, eps);
    subspace::ldl_factor<D, S>(g, lam, f);
    for (int64_t t = 0; t < K; ++t) {
      S col[D];
      subspace::ldl_solve<D, S>(f, a + t * D, col);
      for (int d = 0; d < D; ++d) Pm[d * K + t] = col[d];
    }
  }
};

// y (D rows of kChunk) = Pm x and nrm2 = ||x - A y||^2 for `len` positions of one channel; with
// ATP also atp (D rows of kChunk) = A^T (x - A y).
template <int D, bool ATP, typename scalar_t, typename S>
void project_chunk(const SampleBasis<D, S>& sb, const scalar_t* xc, int64_t K, int64_t HW, int64_t len, S* y,
                   S* nrm2, S* atp = nullptr) {
  std::fill(y, y + D * kChunk, S(0));
  std::fill(nrm2, nrm2 + kChunk, S(0));
  if constexpr (ATP) std::fill(atp, atp + D * kChunk, S(0));
  for (int64_t k = 0; k < K; ++k) {
    const scalar_t* xk = xc + k * HW;
    S pm[D];
    for (int d = 0; d < D; ++d) pm[d] = sb.Pm[d * K + k];
    for (int64_t j = 0; j < len; ++j) {
      const S xv = static_cast<S>(xk[j]);
      VIDOPS_UNROLL
      for (int d = 0; d < D; ++d) y[d * kChunk + j] += pm[d] * xv;
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const scalar_t* xk = xc + k * HW;
    S a[D];
    for (int d = 0; d < D; ++d) a[d] = sb.A[k * D + d];
    for (int64_t j = 0; j < len; ++j) {
      S p = static_cast<S>(xk[j]);
      VIDOPS_UNROLL
      for (int d = 0; d < D; ++d) p -= a[d] * y[d * kChunk + j];
      nrm2[j] += p * p;
      if constexpr (ATP) {
        VIDOPS_UNROLL
        for (int d = 0; d < D; ++d) atp[d * kChunk + j] += a[d] * p;
      }
    }
  }
}

template <int D, typename scalar_t, typename S>
void tsp_forward(const scalar_t* x, const S* basis, scalar_t* yout, double* task_sums, int64_t N, int64_t C,
                 int64_t K, int64_t HW, S eps) {
  std::vector<SampleBasis<D, S>> sbs;
  sbs.reserve(N);
  for (int64_t n = 0; n < N; ++n) sbs.emplace_back(basis + n * K * D, K, eps);
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  const int64_t grain = cpu_simd::grain_for(kChunk * K);
  at::parallel_for(0, N * C * chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<S> y(D * kChunk), nrm2(kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nc = task / chunks, j0 = (task % chunks) * kChunk, n = nc / C;
      const int64_t len = std::min(kChunk, HW - j0);
      project_chunk<D, false, scalar_t, S>(sbs[n], x + nc * K * HW + j0, K, HW, len, y.data(), nrm2.data());
      for (int d = 0; d < D; ++d) {
        scalar_t* o = yout + (nc * D + d) * HW + j0;
        for (int64_t j = 0; j < len; ++j) o[j] = static_cast<scalar_t>(y[d * kChunk + j] * sbs[n].scale);
      }
      double acc = 0.0;
      for (int64_t j = 0; j < len; ++j) acc += static_cast<double>(std::sqrt(nrm2[j]));
      task_sums[task] = acc;
    }
  });
}

template <int D, typename scalar_t, typename S>
void tsp_backward(const S* grad_y, const double* grad_l, const scalar_t* x, const S* basis, scalar_t* grad_x,
                  S* grad_basis, int64_t N, int64_t C, int64_t K, int64_t HW, S eps) {
  std::vector<SampleBasis<D, S>> sbs;
  sbs.reserve(N);
  for (int64_t n = 0; n < N; ++n) sbs.emplace_back(basis + n * K * D, K, eps);
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  const int64_t R = 2 * K * D + D * D;  // per task: sum q y^T (K,D), sum p z^T (K,D), sum z y^T (D,D)
  std::vector<double> partial(N * C * chunks * R);
  const int64_t grain = cpu_simd::grain_for(kChunk * K);
  at::parallel_for(0, N * C * chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<S> y(D * kChunk), nrm2(kChunk), z(D * kChunk), inv(kChunk), pbuf(kChunk), atp(D * kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nc = task / chunks, j0 = (task % chunks) * kChunk, n = nc / C;
      const int64_t len = std::min(kChunk, HW - j0);
      const SampleBasis<D, S>& sb = sbs[n];
      const scalar_t* xc = x + nc * K * HW + j0;
      scalar_t* gxc = grad_x + nc * K * HW + j0;
      const S* gy = grad_y + nc * D * HW + j0;
      const S gl = static_cast<S>(grad_l[n] / static_cast<double>(C * HW));
      const S ys = sb.scale;  // dL/dy' = s dL/dy
      double* part = partial.data() + task * R;
      project_chunk<D, true, scalar_t, S>(sb, xc, K, HW, len, y.data(), nrm2.data(), atp.data());
      // SoA loops over the positions j (innermost, vectorised)
      S* __restrict__ yv = y.data();
      S* __restrict__ zv = z.data();
      S* __restrict__ iv = inv.data();
      const S* __restrict__ n2 = nrm2.data();
      const S* __restrict__ ap = atp.data();
      for (int64_t j = 0; j < len; ++j) {
        const S nrm = std::sqrt(n2[j]);
        iv[j] = nrm > S(0) ? gl / (nrm > S(0) ? nrm : S(1)) : S(0);
      }
      // z = G^{-1} (A^T q - grad_y), A^T q = (grad_l / L) A^T p / ||p||: forward substitution ...
      for (int i = 0; i < D; ++i) {
        S* __restrict__ zi = zv + i * kChunk;
        const S* __restrict__ ai = ap + i * kChunk;
        const S* __restrict__ gi = gy + i * HW;
        for (int64_t j = 0; j < len; ++j) zi[j] = iv[j] * ai[j] - ys * gi[j];
        for (int k = 0; k < i; ++k) {
          const S l = sb.f.l[tri(i, k)];
          const S* __restrict__ zk = zv + k * kChunk;
          for (int64_t j = 0; j < len; ++j) zi[j] -= l * zk[j];
        }
      }
      // ... and back substitution, in place
      for (int i = D - 1; i >= 0; --i) {
        S* __restrict__ zi = zv + i * kChunk;
        const S di = sb.f.dinv[i];
        for (int64_t j = 0; j < len; ++j) zi[j] *= di;
        for (int k = i + 1; k < D; ++k) {
          const S l = sb.f.l[tri(k, i)];
          const S* __restrict__ zk = zv + k * kChunk;
          for (int64_t j = 0; j < len; ++j) zi[j] -= l * zk[j];
        }
      }
      for (int d = 0; d < D; ++d)
        for (int e = 0; e < D; ++e) {
          const S* __restrict__ zd = zv + d * kChunk;
          const S* __restrict__ ye = yv + e * kChunk;
          S acc = S(0);
#pragma omp simd reduction(+ : acc)
          for (int64_t j = 0; j < len; ++j) acc += zd[j] * ye[j];
          part[2 * K * D + d * D + e] = acc;
        }
      for (int64_t k = 0; k < K; ++k) {
        const scalar_t* __restrict__ xk = xc + k * HW;
        scalar_t* __restrict__ gxk = gxc + k * HW;
        S a[D];
        for (int d = 0; d < D; ++d) a[d] = sb.A[k * D + d];
        S* __restrict__ pk = pbuf.data();
        for (int64_t j = 0; j < len; ++j) {
          S p = static_cast<S>(xk[j]), az = S(0);
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) {
            p -= a[d] * yv[d * kChunk + j];
            az += a[d] * zv[d * kChunk + j];
          }
          pk[j] = p;
          gxk[j] = static_cast<scalar_t>(iv[j] * p - az);
        }
        for (int d = 0; d < D; ++d) {
          const S* __restrict__ yd = yv + d * kChunk;
          const S* __restrict__ zd = zv + d * kChunk;
          S sqy = S(0), spz = S(0);
#pragma omp simd reduction(+ : sqy, spz)
          for (int64_t j = 0; j < len; ++j) {
            sqy += iv[j] * pk[j] * yd[j];
            spz += pk[j] * zd[j];
          }
          part[k * D + d] = sqy;
          part[K * D + k * D + d] = spz;
        }
      }
    }
  });
  // per sample: reduce the tasks in order, then grad_A
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> sum(R, 0.0);
    for (int64_t t = n * C * chunks; t < (n + 1) * C * chunks; ++t)
      for (int64_t r = 0; r < R; ++r) sum[r] += partial[t * R + r];
    const S* A = sbs[n].A.data();
    const double* szy = sum.data() + 2 * K * D;
    double tr = 0.0;
    for (int d = 0; d < D; ++d) tr += szy[d * D + d];
    const double te = 2.0 * static_cast<double>(eps) / D * tr;
    for (int64_t k = 0; k < K; ++k)
      for (int e = 0; e < D; ++e) {
        double v = -sum[k * D + e] - sum[K * D + k * D + e] + te * A[k * D + e];
        for (int d = 0; d < D; ++d) v += static_cast<double>(A[k * D + d]) * szy[d * D + e];
        grad_basis[(n * K + k) * D + e] = static_cast<S>(v * static_cast<double>(sbs[n].scale));
      }
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& basis) {
  TORCH_CHECK(x.dim() == 5 && basis.dim() == 3 && basis.size(0) == x.size(0) && basis.size(1) == x.size(2),
              "vidops.temporal_squeeze: x must be (N, C, K, H, W) and basis (N, K, D)");
  TORCH_CHECK(basis.size(2) >= 1 && basis.size(2) <= 4 && basis.size(2) < x.size(2),
              "vidops.temporal_squeeze: D must satisfy 1 <= D <= 4 and D < K");
}

std::tuple<at::Tensor, at::Tensor> tsp_fwd_cpu(const at::Tensor& x_, const at::Tensor& basis_, double eps) {
  check_inputs(x_, basis_);
  const at::Tensor x = x_.contiguous();
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor basis = basis_.to(ct).contiguous();
  const int64_t N = x.size(0), C = x.size(1), K = x.size(2), HW = x.size(3) * x.size(4), D = basis.size(2);
  at::Tensor y = at::empty({N, C, D, x.size(3), x.size(4)}, x.options());
  at::Tensor l = at::empty({N}, x.options().dtype(at::kDouble));
  if (N == 0) return {y, l.to(ct)};
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  std::vector<double> sums(N * C * chunks);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tsp_fwd_cpu", [&] {
    using S = cpu_simd::compute_t<scalar_t>;
    dispatch_D(D, "temporal_squeeze", [&](auto Dc) {
      tsp_forward<decltype(Dc)::value, scalar_t, S>(x.data_ptr<scalar_t>(), basis.data_ptr<S>(),
                                                    y.data_ptr<scalar_t>(), sums.data(), N, C, K, HW,
                                                    static_cast<S>(subspace::effective_eps<S>(eps)));
    });
  });
  double* lp = l.data_ptr<double>();
  for (int64_t n = 0; n < N; ++n) {
    double acc = 0.0;
    for (int64_t t = n * C * chunks; t < (n + 1) * C * chunks; ++t) acc += sums[t];
    lp[n] = acc / static_cast<double>(C * HW);
  }
  return {y, l.to(ct)};
}

std::tuple<at::Tensor, at::Tensor> tsp_bwd_cpu(const at::Tensor& grad_y_, const at::Tensor& grad_l_,
                                               const at::Tensor& x_, const at::Tensor& basis_, double eps) {
  check_inputs(x_, basis_);
  const at::Tensor x = x_.contiguous();
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor basis = basis_.to(ct).contiguous();
  const int64_t N = x.size(0), C = x.size(1), K = x.size(2), HW = x.size(3) * x.size(4), D = basis.size(2);
  TORCH_CHECK(grad_y_.sizes() == at::IntArrayRef({N, C, D, x.size(3), x.size(4)}),
              "vidops.temporal_squeeze: grad_y must be (N, C, D, H, W)");
  TORCH_CHECK(grad_l_.dim() == 1 && grad_l_.size(0) == N, "vidops.temporal_squeeze: grad_l must be (N,)");
  const at::Tensor grad_y = grad_y_.to(ct).contiguous();
  const at::Tensor grad_l = grad_l_.to(at::kDouble).contiguous();
  at::Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor grad_basis = at::empty({N, K, D}, basis.options());
  if (N == 0) return {grad_x, grad_basis.to(basis_.scalar_type())};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tsp_bwd_cpu", [&] {
    using S = cpu_simd::compute_t<scalar_t>;
    dispatch_D(D, "temporal_squeeze", [&](auto Dc) {
      tsp_backward<decltype(Dc)::value, scalar_t, S>(grad_y.data_ptr<S>(), grad_l.data_ptr<double>(),
                                                     x.data_ptr<scalar_t>(), basis.data_ptr<S>(),
                                                     grad_x.data_ptr<scalar_t>(), grad_basis.data_ptr<S>(), N, C,
                                                     K, HW, static_cast<S>(subspace::effective_eps<S>(eps)));
    });
  });
  return {grad_x, grad_basis.to(basis_.scalar_type())};
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_temporal_squeeze_fwd", &vidops::tsp_fwd_cpu);
  m.impl("_temporal_squeeze_bwd", &vidops::tsp_bwd_cpu);
}
