// CPU kernels of the pixel-wise temporal projection (spec 3.2), OpenMP over the rows (n, h) of the
// output. One pass over x: per row, the basis is interpolated vertically (low-res row) then
// horizontally (full-res row) into a (T*D, W) buffer, never to the full image; per pixel the
// packed Gram matrix, G^{-1} (LDL^T, D <= 4 unrolled) and the pbar weights w are formed once and
// shared by all channels; per channel x is read once for b = A^T x, x^T x and w^T x.
// Every per-pixel quantity lives in structure-of-arrays row buffers (pixel index innermost) so the
// loops over pixels vectorise. ENoPR: one double partial per row, summed in row order
// (deterministic, independent of the thread count).
//
// Backward per row and channel: y = M b, p = x - A y, q = grad_pbar/T + 2 g_e p (g_e =
// grad_enopr/(H W C)), A^T q = grad_pbar/T A^T 1 + 2 g_e lam y (A^T p = lam y exactly),
// z = M A^T q, grad_x = q - A z, grad_A -= q y^T + p z^T; after the channels
// grad_A += A (sum_c z y^T) + (2 eps / D) tr(sum_c z y^T) A. The adjoint of the horizontal
// interpolation is applied per row; the vertical one in a second pass over the low-res rows that
// sums the full-res rows in ascending order (deterministic, no atomics).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "pixelwise_temporal_projection/pixelwise_temporal_projection_math.h"

namespace vidops {
namespace {

using pwtp::tri;

template <typename S>
struct Resize {  // bilinear tables of one axis
  std::vector<int64_t> i0, i1;
  std::vector<S> l1;
  Resize(int64_t in, int64_t out) : i0(out), i1(out), l1(out) {
    for (int64_t o = 0; o < out; ++o) pwtp::bilinear_source<S>(o, in, out, i0[o], i1[o], l1[o]);
  }
};

// Per-row state shared by the forward and the backward: A (T*D rows of W, stride a_stride),
// M = G^{-1} packed (P rows of W), lam (W), v = M A^T 1 (D rows of W).
template <int D, typename S>
struct RowBasis {
  static constexpr int P = D * (D + 1) / 2;
  int64_t T, H, W, h, w;
  S eps;
  const Resize<S>& ry;
  const Resize<S>& rx;
  std::vector<S> rowb, abuf, m, lam, v, colsum;
  const S* A = nullptr;
  int64_t a_stride = 0;

  RowBasis(int64_t T_, int64_t H_, int64_t W_, int64_t h_, int64_t w_, S eps_, const Resize<S>& ry_,
           const Resize<S>& rx_)
      : T(T_), H(H_), W(W_), h(h_), w(w_), eps(eps_), ry(ry_), rx(rx_),
        rowb(h_ == H_ ? 0 : T_ * D * w_), abuf(w_ == W_ ? 0 : T_ * D * W_), m(P * W_), lam(W_), v(D * W_),
        colsum(D * W_) {}

  // basis_n: (T*D, h, w) of sample n.
  void build(const S* basis_n, int64_t hh) {
    const int64_t TD = T * D;
    // vertical interpolation -> rb (TD rows of w, stride rb_stride)
    const S* rb;
    int64_t rb_stride;
    if (h == H) {
      rb = basis_n + hh * w;
      rb_stride = h * w;
    } else {
      const int64_t y0 = ry.i0[hh], y1 = ry.i1[hh];
      const S l1 = ry.l1[hh], l0 = S(1) - l1;
      for (int64_t td = 0; td < TD; ++td) {
        const S* r0 = basis_n + td * h * w + y0 * w;
        const S* r1 = basis_n + td * h * w + y1 * w;
        S* o = rowb.data() + td * w;
        for (int64_t j = 0; j < w; ++j) o[j] = l0 * r0[j] + l1 * r1[j];
      }
      rb = rowb.data();
      rb_stride = w;
    }
    // horizontal interpolation -> A (TD rows of W)
    if (w == W) {
      A = rb;
      a_stride = rb_stride;
    } else {
      const int64_t* x0 = rx.i0.data();
      const int64_t* x1 = rx.i1.data();
      const S* l1 = rx.l1.data();
      for (int64_t td = 0; td < TD; ++td) {
        const S* r = rb + td * rb_stride;
        S* o = abuf.data() + td * W;
        for (int64_t i = 0; i < W; ++i) o[i] = (S(1) - l1[i]) * r[x0[i]] + l1[i] * r[x1[i]];
      }
      A = abuf.data();
      a_stride = W;
    }
    // packed Gram matrix (into m, overwritten by G^{-1} below) and column sums
    S* g = m.data();
    S* s = colsum.data();
    std::fill(m.begin(), m.end(), S(0));
    std::fill(colsum.begin(), colsum.end(), S(0));
    for (int64_t t = 0; t < T; ++t) {
      const S* at = A + t * D * a_stride;
      for (int64_t i = 0; i < W; ++i) {
        S a[D];
        VIDOPS_UNROLL
        for (int d = 0; d < D; ++d) a[d] = at[d * a_stride + i];
        VIDOPS_UNROLL
        for (int d1 = 0; d1 < D; ++d1) {
          s[d1 * W + i] += a[d1];
          VIDOPS_UNROLL
          for (int d2 = 0; d2 <= d1; ++d2) g[tri(d1, d2) * W + i] += a[d1] * a[d2];
        }
      }
    }
    // per pixel: lam, M = G^{-1}, v = M A^T 1
    S* lm = lam.data();
    S* vv = v.data();
#pragma omp simd
    for (int64_t i = 0; i < W; ++i) {
      S gp[P], mi[P], si[D], vi[D];
      VIDOPS_UNROLL
      for (int k = 0; k < P; ++k) gp[k] = g[k * W + i];
      VIDOPS_UNROLL
      for (int d = 0; d < D; ++d) si[d] = s[d * W + i];
      const S l = pwtp::regulariser<D, S>(gp, eps);
      pwtp::Ldl<D, S> f;
      pwtp::ldl_factor<D, S>(gp, l, f);
      pwtp::ldl_inverse<D, S>(f, mi);
      pwtp::sym_matvec<D, S>(mi, si, vi);
      lm[i] = l;
      VIDOPS_UNROLL
      for (int k = 0; k < P; ++k) g[k * W + i] = mi[k];
      VIDOPS_UNROLL
      for (int d = 0; d < D; ++d) vv[d * W + i] = vi[d];
    }
  }
};

template <int D, typename scalar_t, typename S>
void pwtp_forward(const scalar_t* x, const S* basis, scalar_t* pbar, double* row_sums, int64_t N, int64_t C,
                  int64_t T, int64_t H, int64_t W, int64_t h, int64_t w, S eps) {
  const Resize<S> ry(h, H), rx(w, W);
  const int64_t TD = T * D, HW = H * W;
  const S inv_T = S(1) / S(T);
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    RowBasis<D, S> rb(T, H, W, h, w, eps, ry, rx);
    std::vector<S> wv(T * W), b(D * W), xx(W), pb(W), r(W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, hh = row % H;
      rb.build(basis + n * TD * h * w, hh);
      const S* A = rb.A;
      const int64_t as = rb.a_stride;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < W; ++i)
          wv[t * W + i] = pwtp::projection_weight<D, S>(A + t * D * as + i, as, rb.v.data() + i, W, inv_T);
      double acc = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xc = x + (n * C + c) * T * HW + hh * W;
        std::fill(b.begin(), b.end(), S(0));
        std::fill(xx.begin(), xx.end(), S(0));
        std::fill(pb.begin(), pb.end(), S(0));
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* xt = xc + t * HW;
          const S* at = A + t * D * as;
          const S* wt = wv.data() + t * W;
          for (int64_t i = 0; i < W; ++i) {
            const S xv = static_cast<S>(xt[i]);
            xx[i] += xv * xv;
            pb[i] += wt[i] * xv;
            VIDOPS_UNROLL
            for (int d = 0; d < D; ++d) b[d * W + i] += at[d * as + i] * xv;
          }
        }
        scalar_t* out = pbar + (n * C + c) * HW + hh * W;
        const S* m = rb.m.data();
        const S* lm = rb.lam.data();
#pragma omp simd
        for (int64_t i = 0; i < W; ++i) {
          S mi[RowBasis<D, S>::P], bi[D], yi[D];
          VIDOPS_UNROLL
          for (int k = 0; k < RowBasis<D, S>::P; ++k) mi[k] = m[k * W + i];
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) bi[d] = b[d * W + i];
          pwtp::sym_matvec<D, S>(mi, bi, yi);
          r[i] = pwtp::residual_sq<D, S>(xx[i], bi, yi, lm[i]);
          out[i] = static_cast<scalar_t>(pb[i]);
        }
        for (int64_t i = 0; i < W; ++i) acc += static_cast<double>(r[i]);
      }
      row_sums[row] = acc;
    }
  });
}

template <int D, typename scalar_t, typename S>
void pwtp_backward(const S* grad_pbar, const double* grad_enopr, const scalar_t* x, const S* basis,
                   scalar_t* grad_x, S* grad_basis, S* rows_buf, int64_t N, int64_t C, int64_t T, int64_t H,
                   int64_t W, int64_t h, int64_t w, S eps) {
  constexpr int P = D * (D + 1) / 2;
  const Resize<S> ry(h, H), rx(w, W);
  const int64_t TD = T * D, HW = H * W;
  const S inv_T = S(1) / S(T);
  const S two_eps_D = S(2) * eps / S(D);
  // rows_buf: the horizontally-reduced grad_A of every full-res row, (N, H, TD, w); when h == H it
  // is grad_basis itself viewed as (N, TD, h, w) (row hh written only by row hh).
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    RowBasis<D, S> rb(T, H, W, h, w, eps, ry, rx);
    std::vector<S> b(D * W), y(D * W), z(D * W), szy(D * D * W), ga(TD * W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, hh = row % H;
      rb.build(basis + n * TD * h * w, hh);
      const S* A = rb.A;
      const int64_t as = rb.a_stride;
      const S* m = rb.m.data();
      const S* lm = rb.lam.data();
      const S* s = rb.colsum.data();
      const S ge2 = static_cast<S>(2.0 * grad_enopr[n] / static_cast<double>(HW * C));
      std::fill(szy.begin(), szy.end(), S(0));
      std::fill(ga.begin(), ga.end(), S(0));
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xc = x + (n * C + c) * T * HW + hh * W;
        scalar_t* gxc = grad_x + (n * C + c) * T * HW + hh * W;
        const S* gp = grad_pbar + (n * C + c) * HW + hh * W;
        std::fill(b.begin(), b.end(), S(0));
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* xt = xc + t * HW;
          const S* at = A + t * D * as;
          for (int64_t i = 0; i < W; ++i) {
            const S xv = static_cast<S>(xt[i]);
            VIDOPS_UNROLL
            for (int d = 0; d < D; ++d) b[d * W + i] += at[d * as + i] * xv;
          }
        }
#pragma omp simd
        for (int64_t i = 0; i < W; ++i) {
          S mi[P], bi[D], yi[D], atq[D], zi[D];
          VIDOPS_UNROLL
          for (int k = 0; k < P; ++k) mi[k] = m[k * W + i];
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) bi[d] = b[d * W + i];
          pwtp::sym_matvec<D, S>(mi, bi, yi);
          const S gpt = gp[i] * inv_T, gl = ge2 * lm[i];
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) atq[d] = gpt * s[d * W + i] + gl * yi[d];
          pwtp::sym_matvec<D, S>(mi, atq, zi);
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) {
            y[d * W + i] = yi[d];
            z[d * W + i] = zi[d];
            VIDOPS_UNROLL
            for (int e = 0; e < D; ++e) szy[(d * D + e) * W + i] += zi[d] * yi[e];
          }
        }
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* xt = xc + t * HW;
          scalar_t* gxt = gxc + t * HW;
          const S* at = A + t * D * as;
          S* gat = ga.data() + t * D * W;
          for (int64_t i = 0; i < W; ++i) {
            S ay = S(0), az = S(0);
            VIDOPS_UNROLL
            for (int d = 0; d < D; ++d) {
              ay += at[d * as + i] * y[d * W + i];
              az += at[d * as + i] * z[d * W + i];
            }
            const S p = static_cast<S>(xt[i]) - ay;
            const S q = gp[i] * inv_T + ge2 * p;
            gxt[i] = static_cast<scalar_t>(q - az);
            VIDOPS_UNROLL
            for (int d = 0; d < D; ++d) gat[d * W + i] -= q * y[d * W + i] + p * z[d * W + i];
          }
        }
      }
      // grad_A += A Szy + (2 eps / D) tr(Szy) A
      for (int64_t t = 0; t < T; ++t) {
        const S* at = A + t * D * as;
        S* gat = ga.data() + t * D * W;
        for (int64_t i = 0; i < W; ++i) {
          S a[D], tr = S(0);
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) {
            a[d] = at[d * as + i];
            tr += szy[(d * D + d) * W + i];
          }
          VIDOPS_UNROLL
          for (int e = 0; e < D; ++e) {
            S v = two_eps_D * tr * a[e];
            VIDOPS_UNROLL
            for (int k = 0; k < D; ++k) v += a[k] * szy[(k * D + e) * W + i];
            gat[e * W + i] += v;
          }
        }
      }
      // adjoint of the horizontal interpolation, into this row's slot
      S* dst;
      int64_t dst_stride;
      if (h == H) {
        dst = grad_basis + n * TD * h * w + hh * w;
        dst_stride = h * w;
      } else {
        dst = rows_buf + row * TD * w;
        dst_stride = w;
      }
      for (int64_t td = 0; td < TD; ++td) {
        const S* g = ga.data() + td * W;
        S* o = dst + td * dst_stride;
        if (w == W) {
          for (int64_t i = 0; i < W; ++i) o[i] = g[i];
        } else {
          for (int64_t j = 0; j < w; ++j) o[j] = S(0);
          for (int64_t i = 0; i < W; ++i) {
            o[rx.i0[i]] += (S(1) - rx.l1[i]) * g[i];
            o[rx.i1[i]] += rx.l1[i] * g[i];
          }
        }
      }
    }
  });
  if (h == H) return;
  // adjoint of the vertical interpolation: low-res row j of sample n sums the full-res rows that
  // read it, in ascending order.
  at::parallel_for(0, N * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nj = begin; nj < end; ++nj) {
      const int64_t n = nj / h, j = nj % h;
      for (int64_t td = 0; td < TD; ++td) {
        S* o = grad_basis + n * TD * h * w + td * h * w + j * w;
        for (int64_t k = 0; k < w; ++k) o[k] = S(0);
      }
      for (int64_t hh = 0; hh < H; ++hh) {
        const bool r0 = ry.i0[hh] == j, r1 = ry.i1[hh] == j;
        if (!r0 && !r1) continue;
        const S wgt = (r0 ? S(1) - ry.l1[hh] : S(0)) + (r1 ? ry.l1[hh] : S(0));
        const S* src = rows_buf + (n * H + hh) * TD * w;
        for (int64_t td = 0; td < TD; ++td) {
          S* o = grad_basis + n * TD * h * w + td * h * w + j * w;
          const S* g = src + td * w;
          for (int64_t k = 0; k < w; ++k) o[k] += wgt * g[k];
        }
      }
    }
  });
}

template <typename F>
void dispatch_D(int64_t D, F&& f) {
  switch (D) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    default: TORCH_CHECK(false, "vidops.pixelwise_temporal_projection: D must be in 1..4, got ", D);
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& basis, int64_t D) {
  TORCH_CHECK(x.dim() == 5, "vidops.pixelwise_temporal_projection: x must be (N, C, T, H, W)");
  TORCH_CHECK(basis.dim() == 4, "vidops.pixelwise_temporal_projection: basis must be (N, T*D, h, w)");
  const int64_t T = x.size(2);
  TORCH_CHECK(D >= 1 && D <= 4 && D < T && basis.size(1) == T * D && basis.size(0) == x.size(0),
              "vidops.pixelwise_temporal_projection: basis must be (N, T*D, h, w) with 1 <= D <= 4, D < T");
  TORCH_CHECK(basis.size(2) >= 1 && basis.size(2) <= x.size(3) && basis.size(3) >= 1 && basis.size(3) <= x.size(4),
              "vidops.pixelwise_temporal_projection: basis resolution must not exceed x's");
}

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

std::tuple<at::Tensor, at::Tensor> pwtp_fwd_cpu(const at::Tensor& x_, const at::Tensor& basis_, int64_t D,
                                                double eps) {
  check_inputs(x_, basis_, D);
  const at::Tensor x = x_.contiguous();
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor basis = basis_.to(ct).contiguous();
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t h = basis.size(2), w = basis.size(3);
  at::Tensor pbar = at::empty({N, C, H, W}, x.options());
  at::Tensor enopr = at::empty({N}, x.options().dtype(at::kDouble));
  if (N == 0) return {pbar, enopr.to(ct)};
  std::vector<double> rows(N * H);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pwtp_fwd_cpu", [&] {
    using S = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    dispatch_D(D, [&](auto Dc) {
      pwtp_forward<decltype(Dc)::value, scalar_t, S>(x.data_ptr<scalar_t>(), basis.data_ptr<S>(),
                                                     pbar.data_ptr<scalar_t>(), rows.data(), N, C, T, H, W, h, w,
                                                     static_cast<S>(eps));
    });
  });
  double* e = enopr.data_ptr<double>();
  for (int64_t n = 0; n < N; ++n) {
    double acc = 0.0;
    for (int64_t r = 0; r < H; ++r) acc += rows[n * H + r];
    e[n] = acc / static_cast<double>(H * W * C);
  }
  return {pbar, enopr.to(ct)};
}

std::tuple<at::Tensor, at::Tensor> pwtp_bwd_cpu(const at::Tensor& grad_pbar_, const at::Tensor& grad_enopr_,
                                                const at::Tensor& x_, const at::Tensor& basis_, int64_t D,
                                                double eps) {
  check_inputs(x_, basis_, D);
  const at::Tensor x = x_.contiguous();
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor basis = basis_.to(ct).contiguous();
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t h = basis.size(2), w = basis.size(3);
  TORCH_CHECK(grad_pbar_.sizes() == at::IntArrayRef({N, C, H, W}),
              "vidops.pixelwise_temporal_projection: grad_pbar must be (N, C, H, W)");
  TORCH_CHECK(grad_enopr_.dim() == 1 && grad_enopr_.size(0) == N,
              "vidops.pixelwise_temporal_projection: grad_enopr must be (N,)");
  const at::Tensor grad_pbar = grad_pbar_.to(ct).contiguous();
  const at::Tensor grad_enopr = grad_enopr_.to(at::kDouble).contiguous();
  at::Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor grad_basis = at::empty({N, T * D, h, w}, basis.options());
  if (N == 0) return {grad_x, grad_basis.to(basis_.scalar_type())};
  at::Tensor rows_buf = h == H ? at::Tensor() : at::empty({N, H, T * D, w}, basis.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pwtp_bwd_cpu", [&] {
    using S = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    dispatch_D(D, [&](auto Dc) {
      pwtp_backward<decltype(Dc)::value, scalar_t, S>(
          grad_pbar.data_ptr<S>(), grad_enopr.data_ptr<double>(), x.data_ptr<scalar_t>(), basis.data_ptr<S>(),
          grad_x.data_ptr<scalar_t>(), grad_basis.data_ptr<S>(), h == H ? nullptr : rows_buf.data_ptr<S>(), N, C,
          T, H, W, h, w, static_cast<S>(eps));
    });
  });
  return {grad_x, grad_basis.to(basis_.scalar_type())};
}

}  // namespace
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_pixelwise_temporal_projection_fwd", &vidops::pwtp_fwd_cpu);
  m.impl("_pixelwise_temporal_projection_bwd", &vidops::pwtp_bwd_cpu);
}
