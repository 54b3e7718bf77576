// Cholesky factor and solve of a small (D <= 4) symmetric positive definite matrix, fully unrolled,
// for host (g++) and device (nvcc) code alike. Pivots are floored at CholFloor so a singular
// matrix (the regularised Gram matrix of A = 0 when eps * TINY underflows) gives a finite factor;
// with a zero right-hand side the solution is then exactly zero.
#pragma once
#include <cmath>

#include "common/host_device.h"

namespace vidops {

template <typename T> struct CholFloor;
template <> struct CholFloor<float> { static constexpr float value = 1e-30f; };
template <> struct CholFloor<double> { static constexpr double value = 1e-300; };

VIDOPS_HD float small_sqrt(float v) {
#ifdef __CUDA_ARCH__
  return sqrtf(v);
#else
  return std::sqrt(v);
#endif
}
VIDOPS_HD double small_sqrt(double v) {
#ifdef __CUDA_ARCH__
  return ::sqrt(v);
#else
  return std::sqrt(v);
#endif
}

template <typename T, int D>
struct SmallCholesky {
  T L[D][D];  // strictly lower part used
  T inv[D];   // 1 / L[j][j]

  // G: only the lower triangle (G[i][j], j <= i) is read.
  VIDOPS_HD void factor(const T (&G)[D][D]) {
#pragma unroll
    for (int j = 0; j < D; ++j) {
      T s = G[j][j];
#pragma unroll
      for (int k = 0; k < j; ++k) s -= L[j][k] * L[j][k];
      inv[j] = T(1) / small_sqrt(s > CholFloor<T>::value ? s : CholFloor<T>::value);
#pragma unroll
      for (int i = j + 1; i < D; ++i) {
        T v = G[i][j];
#pragma unroll
        for (int k = 0; k < j; ++k) v -= L[i][k] * L[j][k];
        L[i][j] = v * inv[j];
      }
    }
  }

  // y = G^{-1} b (forward then backward substitution).
  VIDOPS_HD void solve(const T (&b)[D], T (&y)[D]) const {
    T z[D];
#pragma unroll
    for (int i = 0; i < D; ++i) {
      T v = b[i];
#pragma unroll
      for (int k = 0; k < i; ++k) v -= L[i][k] * z[k];
      z[i] = v * inv[i];
    }
#pragma unroll
    for (int i = D - 1; i >= 0; --i) {
      T v = z[i];
#pragma unroll
      for (int k = i + 1; k < D; ++k) v -= L[k][i] * y[k];
      y[i] = v * inv[i];
    }
  }
};

// The regularised Gram matrix of the thesis' projections: G += eps * (trace(G) / D + tiny) * I
// (lower triangle of G holds A^T A on entry).
template <typename T, int D>
VIDOPS_HD void regularise_gram(T (&G)[D][D], T eps, T tiny) {
  T tr = T(0);
#pragma unroll
  for (int i = 0; i < D; ++i) tr += G[i][i];
  const T reg = eps * (tr / T(D) + tiny);
#pragma unroll
  for (int i = 0; i < D; ++i) G[i][i] += reg;
}

}  // namespace vidops
