// Small-matrix least-squares math of the subspace projections (pixelwise_temporal_projection and
// temporal_squeeze), shared by the CPU kernels (g++) and the CUDA kernels (nvcc):
//   - the power-of-two scale of a basis (pow2_scale): callers solve with A' = s A, whose largest
//     entry lies in [0.5, 1), so that nothing in A'^T A over- or underflows and the result does
//     not depend on the scale of A (multiplying by a power of two is exact);
//   - the regulariser lam = e trace(A^T A)/D (1 for A = 0), e = max(eps, kFloorUlps * machine epsilon);
//   - the LDL^T factorisation of G = A^T A + lam I with pivots floored at lam, and its solve by
//     substitution, D <= 4 fully unrolled (no sqrt, so the CPU loops over pixels vectorise).
// Every pivot of the exact G is >= lam, so the floor only absorbs rounding: with e >= 8 u the
// factorisation and the solve are stable for any rank of A (A = 0 included), and x - A G^{-1} A^T x
// is the residual of the projection onto the column space of A. Callers form that residual
// explicitly (never as x^T x - x^T P x, which cancels) and never multiply by an explicit G^{-1}.
// Everything is templated on the compute type S: float (double for double
// inputs), or, in the CPU kernels, a GCC vector of them whose lanes are neighbouring pixels (the
// same code then runs SIMD across pixels; constants go through splat, comparisons through ?:).
#pragma once
#include <cstdint>
#include <cstring>

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
#define VIDOPS_SUBSPACE_HD VIDOPS_HD __attribute__((always_inline))
#else
#define VIDOPS_SUBSPACE_HD VIDOPS_HD
#endif

namespace vidops {
namespace subspace {

// e = max(eps, kFloorUlps * machine epsilon of the compute type): below it the rounding of A^T A
// exceeds lam and a rank-deficient G is no longer positive definite in floating point.
constexpr double kFloorUlps = 8.0;

template <typename S>
struct MachineEps;
template <>
struct MachineEps<float> {
  static constexpr double value = 1.1920928955078125e-07;  // 2^-23
};
template <>
struct MachineEps<double> {
  static constexpr double value = 2.220446049250313e-16;  // 2^-52
};

// The regulariser scale e for the scalar compute type S (float or double), on the host.
template <typename S>
VIDOPS_HD double effective_eps(double eps) {
  const double floor = kFloorUlps * MachineEps<S>::value;
  return eps > floor ? eps : floor;
}

// The lane type of S: S itself for float/double; the CPU kernels specialise it for their vector types.
template <typename S>
struct Lanes {
  using scalar = S;
};

// The constant c in type S (broadcast to every lane for vector types).
template <typename S>
VIDOPS_SUBSPACE_HD S splat(double c) {
  return S{} + static_cast<typename Lanes<S>::scalar>(c);
}

// Index of the packed lower triangle entry (i, j), j <= i.
VIDOPS_SUBSPACE_HD constexpr int tri(int i, int j) { return i * (i + 1) / 2 + j; }

// lam = e * trace(A^T A) / D from the packed Gram matrix g (lower triangle of A^T A): purely
// relative, so G(s A) = s^2 G(A) and the projection does not depend on the scale of A. A = 0 (trace
// 0) has no scale: lam = e there gives G = e I, y = 0 and the exact answer p = x (pow2_scale's
// s = 0 zeroes the gradient w.r.t. A there). Callers pass the scaled A' of pow2_scale, whose trace
// is >= 1/4 unless A = 0.
template <int D, typename S>
VIDOPS_SUBSPACE_HD S regulariser(const S* g, S eps) {
  S tr = splat<S>(0);
VIDOPS_UNROLL
  for (int d = 0; d < D; ++d) tr += g[tri(d, d)];
  return eps * (tr > splat<S>(0) ? tr / splat<S>(D) : splat<S>(1));
}

template <typename S>
struct FloatBits;
template <>
struct FloatBits<float> {
  using U = uint32_t;
  static constexpr int kMantissa = 23, kExpMask = 0xff, kMaxBiased = 254, kFlip = 253;
};
template <>
struct FloatBits<double> {
  using U = uint64_t;
  static constexpr int kMantissa = 52, kExpMask = 0x7ff, kMaxBiased = 2046, kFlip = 2045;
};

// The power of two s with s m in [0.5, 1) for m = max |A_ij| > 0 (s = 2^-e for m = f 2^e,
// f in [0.5, 1), from m's exponent bits), clamped to the normal numbers (a subnormal m takes the
// largest scale the format allows: 2^126 / 2^1022); 0 for m = 0, so that a zero basis gives y = 0
// and a zero gradient w.r.t. the basis through the callers' y = s y', grad_A = s grad_A'. Scalar S.
template <typename S>
VIDOPS_SUBSPACE_HD S pow2_scale(S m) {
  using FB = FloatBits<S>;
  typename FB::U u;
  memcpy(&u, &m, sizeof(S));
  int sb = FB::kFlip - static_cast<int>((u >> FB::kMantissa) & FB::kExpMask);
  sb = sb < 1 ? 1 : (sb > FB::kMaxBiased ? FB::kMaxBiased : sb);
  const typename FB::U su = static_cast<typename FB::U>(sb) << FB::kMantissa;
  S s;
  memcpy(&s, &su, sizeof(S));
  return m > S(0) ? s : S(0);
}

// G = L diag(d) L^T with unit lower L: `l` packed strictly-lower (l[tri(i,j)], j < i), `dinv`
// the inverse pivots.
template <int D, typename S>
struct Ldl {
  S l[D * (D + 1) / 2 > 0 ? D * (D + 1) / 2 : 1];
  S dinv[D];
};

// Factorise G = gram + lam I (gram packed lower, D(D+1)/2 entries), lam > 0. Each pivot is
// floored at lam (exact pivots of G are >= lam; rounding can make them smaller or negative
// when A is rank deficient).
template <int D, typename S>
VIDOPS_SUBSPACE_HD void ldl_factor(const S* gram, S lam, Ldl<D, S>& f) {
  S piv[D];
VIDOPS_UNROLL
  for (int j = 0; j < D; ++j) {
    S dj = gram[tri(j, j)] + lam;
VIDOPS_UNROLL
    for (int k = 0; k < j; ++k) dj -= f.l[tri(j, k)] * f.l[tri(j, k)] * piv[k];
    dj = dj > lam ? dj : lam;
    piv[j] = dj;
    f.dinv[j] = splat<S>(1) / dj;
VIDOPS_UNROLL
    for (int i = j + 1; i < D; ++i) {
      S v = gram[tri(i, j)];
VIDOPS_UNROLL
      for (int k = 0; k < j; ++k) v -= f.l[tri(i, k)] * f.l[tri(j, k)] * piv[k];
      f.l[tri(i, j)] = v * f.dinv[j];
    }
  }
}

// y = G^{-1} b by forward and backward substitution.
template <int D, typename S>
VIDOPS_SUBSPACE_HD void ldl_solve(const Ldl<D, S>& f, const S* b, S* y) {
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

}  // namespace subspace
}  // namespace vidops
