// Unit tests of the shared PWTP / TSP / temporal relation math (run by ctest; the CUDA kernels use the
// same code): bilinear source indices, the regularised LDL^T solve, inverse, closed forms, pairs.
#include <cmath>
#include <cstdio>

#include "pixelwise_temporal_projection/pixelwise_temporal_projection_math.h"
#include "temporal_relation/temporal_relation_math.h"

using namespace vidops;

#include "expect.h"

int main() {
  // Bilinear, align_corners=False, 14 -> 112 (x8): src = (dst + 0.5) / 8 - 0.5, clamped at 0.
  int64_t i0, i1;
  double l1;
  pwtp::bilinear_source<double>(0, 14, 112, i0, i1, l1);
  EXPECT_EQ(i0, 0); EXPECT_EQ(i1, 1); EXPECT_NEAR(l1, 0.0, 0);
  pwtp::bilinear_source<double>(4, 14, 112, i0, i1, l1);
  EXPECT_EQ(i0, 0); EXPECT_EQ(i1, 1); EXPECT_NEAR(l1, 0.0625, 1e-15);
  pwtp::bilinear_source<double>(111, 14, 112, i0, i1, l1);   // src 13.4375: the right edge repeats
  EXPECT_EQ(i0, 13); EXPECT_EQ(i1, 13); EXPECT_NEAR(l1, 0.4375, 1e-15);
  pwtp::bilinear_source<double>(5, 3, 7, i0, i1, l1);         // non-integer: (5.5) * 3/7 - 0.5
  EXPECT_EQ(i0, 1); EXPECT_EQ(i1, 2); EXPECT_NEAR(l1, 5.5 * 3.0 / 7.0 - 1.5, 1e-15);
  pwtp::bilinear_source<double>(6, 9, 9, i0, i1, l1);         // identity
  EXPECT_EQ(i0, 6); EXPECT_EQ(i1, 6); EXPECT_NEAR(l1, 0.0, 0);

  // G = gram + lam I for gram = [[4,1,0.5],[1,5,1],[0.5,1,6]] (packed lower), eps = 1e-3.
  const double gram[6] = {4, 1, 5, 0.5, 1, 6};
  const double lam = subspace::regulariser<3, double>(gram, 1e-3);
  EXPECT_NEAR(lam, 1e-3 * (15.0 / 3.0 + subspace::kTiny), 1e-18);
  subspace::Ldl<3, double> f;
  subspace::ldl_factor<3, double>(gram, lam, f);
  const double b[3] = {1, 2, 3};
  double y[3];
  subspace::ldl_solve<3, double>(f, b, y);
  const double G[3][3] = {{4 + lam, 1, 0.5}, {1, 5 + lam, 1}, {0.5, 1, 6 + lam}};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(G[i][0] * y[0] + G[i][1] * y[1] + G[i][2] * y[2], b[i], 1e-14);

  // The regulariser scale: eps, floored at 8 machine epsilons of the compute type.
  EXPECT_NEAR(subspace::effective_eps<double>(1e-6), 1e-6, 0);
  EXPECT_NEAR(subspace::effective_eps<double>(1e-30), 8 * 2.220446049250313e-16, 0);
  EXPECT_NEAR(subspace::effective_eps<float>(1e-12), 8 * 1.1920928955078125e-07, 0);

  // A = 0: lam = e * kTiny > 0, pivots = lam, y = 0.
  const float zero[3] = {0, 0, 0};
  const float lz = subspace::regulariser<2, float>(zero, static_cast<float>(subspace::effective_eps<float>(1e-12)));
  EXPECT_NEAR(lz, 8 * 1.1920928955078125e-07 * subspace::kTiny, 1e-32);
  subspace::Ldl<2, float> fz;
  subspace::ldl_factor<2, float>(zero, lz, fz);
  EXPECT_NEAR(fz.dinv[0] * lz, 1.0, 1e-6);
  EXPECT_NEAR(fz.dinv[1] * lz, 1.0, 1e-6);
  const float bz[2] = {0, 0};
  float yz[2];
  subspace::ldl_solve<2, float>(fz, bz, yz);
  EXPECT_NEAR(yz[0], 0.0, 0);
  EXPECT_NEAR(yz[1], 0.0, 0);

  // Proportional columns a, 2a (gram exactly singular): the pivots are floored at lam, not 0 or
  // negative, and G^{-1} A^T x lies along (1, 2) with the projection's coefficient.
  const double gs[3] = {1, 2, 4};   // a'a = 1
  const double ls = subspace::regulariser<2, double>(gs, 1e-12);
  subspace::Ldl<2, double> fs;
  subspace::ldl_factor<2, double>(gs, ls, fs);
  EXPECT_NEAR(1.0 / fs.dinv[1], ls * 5.0 / (1.0 + ls), ls * 1e-3);   // exact Schur complement
  const double bs[2] = {0.5, 1.0};  // A^T x for a'x = 0.5
  double ys[2];
  subspace::ldl_solve<2, double>(fs, bs, ys);
  EXPECT_NEAR(ys[0] + 2 * ys[1], 0.5, 1e-9);   // A y = a (y0 + 2 y1) = the projection a (a'x)
  // the minimum-norm (ridge) solution, up to the rounding of b amplified by 1/lam: ~ u / eps relative
  EXPECT_NEAR(ys[1], 2 * ys[0], 1e-3 * ys[1]);

  // Pairs t1 < t2 in ascending order, either argument order.
  EXPECT_EQ(trel::num_pairs(8), 28);
  EXPECT_EQ(trel::pair_index(0, 1, 8), 0);
  EXPECT_EQ(trel::pair_index(0, 7, 8), 6);
  EXPECT_EQ(trel::pair_index(1, 2, 8), 7);
  EXPECT_EQ(trel::pair_index(7, 6, 8), 27);
  EXPECT_EQ(trel::pair_index(3, 5, 6), 3 * (12 - 3 - 1) / 2 + 1);

  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("test_pixelwise_temporal_projection_math: all passed\n");
  return 0;
}
