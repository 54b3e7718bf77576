// Per-pixel math of the pixel-wise temporal projection family (PWTP and temporal squeeze pooling),
// shared by the CPU kernels (g++) and the CUDA kernels (nvcc) (spec 3.2, 4):
//   - bilinear source index and weight (align_corners=False, size-based, as F.interpolate(size=));
//   - the regularised Gram matrix G = A^T A + lam I, lam = eps (trace(A^T A)/D + kTiny);
//   - its LDL^T factorisation and solves, D <= 4 fully unrolled (no sqrt, so the CPU loops over
//     pixels vectorise);
//   - the closed forms: w = (1 - A G^{-1} A^T 1)/T and ||p||^2 = x^T x - b^T y - lam y^T y.
// Everything but bilinear_source is templated on the compute type S: float (double for double
// inputs), or, in the CPU kernels, a GCC vector of them whose lanes are neighbouring pixels (the
// same code then runs SIMD across pixels; constants go through splat, comparisons through ?:).
#pragma once
#include <cstdint>

#include "common/host_device.h"

// Full unrolling of the compile-time D loops (nvcc/clang: "#pragma unroll"; g++: "GCC unroll").
#if defined(__CUDACC__) || defined(__clang__)
#define VIDOPS_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define VIDOPS_UNROLL _Pragma("GCC unroll 16")
#else
#define VIDOPS_UNROLL
#endif

// VIDOPS_HD, always inlined on the host too: the CPU kernels call these from functions compiled
// for AVX2/AVX-512 with vector-typed S, which must not go through an out-of-line default-ISA copy.
#if !defined(__CUDACC__) && defined(__GNUC__)
#define VIDOPS_PWTP_HD VIDOPS_HD __attribute__((always_inline))
#else
#define VIDOPS_PWTP_HD VIDOPS_HD
#endif

namespace vidops {
namespace pwtp {

// lam = eps * (trace(A^T A) / D + kTiny): positive for A = 0, so G stays positive definite.
constexpr double kTiny = 1e-30;

// The lane type of S: S itself for float/double; the CPU kernels specialise it for their vector types.
template <typename S>
struct Lanes {
  using scalar = S;
};

// The constant c in type S (broadcast to every lane for vector types).
template <typename S>
VIDOPS_PWTP_HD S splat(double c) {
  return S{} + static_cast<typename Lanes<S>::scalar>(c);
}

// Source row/column of output index `dst` when an axis of `in_size` is resized to `out_size`
// (bilinear, align_corners=False, scale = in/out): src = (dst + 0.5) * in/out - 0.5 clamped at 0,
// i0 = floor(src), i1 = i0 + 1 clamped to the last index, l1 = src - i0 (weight of i1).
// Identity resize (in == out) gives i0 = i1 = dst, l1 = 0, as PyTorch's kernels do.
template <typename S>
VIDOPS_HD void bilinear_source(int64_t dst, int64_t in_size, int64_t out_size, int64_t& i0, int64_t& i1,
                               S& l1) {
  if (in_size == out_size) {
    i0 = i1 = dst;
    l1 = S(0);
    return;
  }
  const S scale = S(in_size) / S(out_size);
  S src = (S(dst) + S(0.5)) * scale - S(0.5);
  if (src < S(0)) src = S(0);
  int64_t i = static_cast<int64_t>(src);
  if (i > in_size - 1) i = in_size - 1;
  S l = src - S(i);
  l1 = l < S(0) ? S(0) : (l > S(1) ? S(1) : l);
  i0 = i;
  i1 = i + (i < in_size - 1 ? 1 : 0);
}

// Index of the packed lower triangle entry (i, j), j <= i.
VIDOPS_PWTP_HD constexpr int tri(int i, int j) { return i * (i + 1) / 2 + j; }

// lam from the packed Gram matrix g (lower triangle of A^T A).
template <int D, typename S>
VIDOPS_PWTP_HD S regulariser(const S* g, S eps) {
  S tr = splat<S>(0);
VIDOPS_UNROLL
  for (int d = 0; d < D; ++d) tr += g[tri(d, d)];
  return eps * (tr / splat<S>(D) + splat<S>(kTiny));
}

// G = L diag(d) L^T with unit lower L: `l` packed strictly-lower (l[tri(i,j)], j < i), `dinv`
// the inverse pivots. A pivot that is not positive (only for A = 0 when lam underflows, e.g.
// under flush-to-zero) gets dinv = 0, which gives y = 0 for that component (documented: A = 0
// -> y = 0).
template <int D, typename S>
struct Ldl {
  S l[D * (D + 1) / 2 > 0 ? D * (D + 1) / 2 : 1];
  S dinv[D];
};

// Factorise G = gram + lam I (gram packed lower, D(D+1)/2 entries).
template <int D, typename S>
VIDOPS_PWTP_HD void ldl_factor(const S* gram, S lam, Ldl<D, S>& f) {
  S piv[D];
VIDOPS_UNROLL
  for (int j = 0; j < D; ++j) {
    S dj = gram[tri(j, j)] + lam;
VIDOPS_UNROLL
    for (int k = 0; k < j; ++k) dj -= f.l[tri(j, k)] * f.l[tri(j, k)] * piv[k];
    piv[j] = dj;
    f.dinv[j] = dj > splat<S>(0) ? splat<S>(1) / dj : splat<S>(0);
VIDOPS_UNROLL
    for (int i = j + 1; i < D; ++i) {
      S v = gram[tri(i, j)];
VIDOPS_UNROLL
      for (int k = 0; k < j; ++k) v -= f.l[tri(i, k)] * f.l[tri(j, k)] * piv[k];
      f.l[tri(i, j)] = v * f.dinv[j];
    }
  }
}

// y = G^{-1} b.
template <int D, typename S>
VIDOPS_PWTP_HD void ldl_solve(const Ldl<D, S>& f, const S* b, S* y) {
  S z[D];
VIDOPS_UNROLL
  for (int i = 0; i < D; ++i) {
    S v = b[i];
VIDOPS_UNROLL
    for (int k = 0; k < i; ++k) v -= f.l[tri(i, k)] * z[k];
    z[i] = v;
  }
VIDOPS_UNROLL
  for (int i = D - 1; i >= 0; --i) {
    S v = z[i] * f.dinv[i];
VIDOPS_UNROLL
    for (int k = i + 1; k < D; ++k) v -= f.l[tri(k, i)] * y[k];
    y[i] = v;
  }
}

// M = G^{-1}, packed lower (symmetric).
template <int D, typename S>
VIDOPS_PWTP_HD void ldl_inverse(const Ldl<D, S>& f, S* m) {
VIDOPS_UNROLL
  for (int j = 0; j < D; ++j) {
    S e[D], col[D];
VIDOPS_UNROLL
    for (int i = 0; i < D; ++i) e[i] = i == j ? splat<S>(1) : splat<S>(0);
    ldl_solve<D, S>(f, e, col);
VIDOPS_UNROLL
    for (int i = j; i < D; ++i) m[tri(i, j)] = col[i];
  }
}

// y = M b with M packed lower symmetric.
template <int D, typename S>
VIDOPS_PWTP_HD void sym_matvec(const S* m, const S* b, S* y) {
VIDOPS_UNROLL
  for (int i = 0; i < D; ++i) {
    S v = splat<S>(0);
VIDOPS_UNROLL
    for (int k = 0; k < D; ++k) v += m[i >= k ? tri(i, k) : tri(k, i)] * b[k];
    y[i] = v;
  }
}

// ||p||^2 for p = x - A y with y = G^{-1} b, b = A^T x, xx = x^T x:
//   ||p||^2 = xx - 2 b^T y + y^T (G - lam I) y = xx - b^T y - lam y^T y   (G y = b),
// clamped at 0 (rounding can make the difference of two close numbers negative).
template <int D, typename S>
VIDOPS_PWTP_HD S residual_sq(S xx, const S* b, const S* y, S lam) {
  S by = splat<S>(0), yy = splat<S>(0);
VIDOPS_UNROLL
  for (int d = 0; d < D; ++d) {
    by += b[d] * y[d];
    yy += y[d] * y[d];
  }
  const S r = xx - by - lam * yy;
  return r > splat<S>(0) ? r : splat<S>(0);
}

// One entry of the pbar weights w = (1 - A v) / T, v = G^{-1} A^T 1 (the G^{-1}-solve of the
// column sums): w_t = (1 - sum_d A[t][d] v[d]) * inv_T, with A[t][d] at a_t[d * a_stride] and
// v[d] at v[d * v_stride]. pbar_c = sum_t w_t x_c[t] for every channel.
template <int D, typename S>
VIDOPS_PWTP_HD S projection_weight(const S* a_t, int64_t a_stride, const S* v, int64_t v_stride, S inv_T) {
  S av = splat<S>(0);
  VIDOPS_UNROLL
  for (int d = 0; d < D; ++d) av += a_t[d * a_stride] * v[d * v_stride];
  return (splat<S>(1) - av) * inv_T;
}

}  // namespace pwtp
}  // namespace vidops
