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
  const double lam = pwtp::regulariser<3, double>(gram, 1e-3);
  EXPECT_NEAR(lam, 1e-3 * (15.0 / 3.0 + pwtp::kTiny), 1e-18);
  pwtp::Ldl<3, double> f;
  pwtp::ldl_factor<3, double>(gram, lam, f);
  const double b[3] = {1, 2, 3};
  double y[3];
  pwtp::ldl_solve<3, double>(f, b, y);
  const double G[3][3] = {{4 + lam, 1, 0.5}, {1, 5 + lam, 1}, {0.5, 1, 6 + lam}};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(G[i][0] * y[0] + G[i][1] * y[1] + G[i][2] * y[2], b[i], 1e-14);
  double m[6], ym[3];
  pwtp::ldl_inverse<3, double>(f, m);
  pwtp::sym_matvec<3, double>(m, b, ym);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(ym[i], y[i], 1e-14);
  // ||p||^2 = x'x - b'y - lam y'y, with x'x chosen so that the residual is 2.5
  const double by = b[0] * y[0] + b[1] * y[1] + b[2] * y[2];
  const double yy = y[0] * y[0] + y[1] * y[1] + y[2] * y[2];
  EXPECT_NEAR((pwtp::residual_sq<3, double>(2.5 + by + lam * yy, b, y, lam)), 2.5, 1e-14);
  EXPECT_NEAR((pwtp::residual_sq<3, double>(by - 1.0, b, y, lam)), 0.0, 0);   // clamped at 0

  // A = 0: lam = eps * tiny > 0, y = 0; a zero pivot (flush to zero) gives dinv = 0, not inf.
  const double zero[3] = {0, 0, 0};
  pwtp::Ldl<2, double> fz;
  pwtp::ldl_factor<2, double>(zero, pwtp::regulariser<2, double>(zero, 1e-6), fz);
  EXPECT_NEAR(fz.dinv[0], 1.0 / (1e-6 * pwtp::kTiny), 1e22);
  pwtp::ldl_factor<2, double>(zero, 0.0, fz);
  EXPECT_NEAR(fz.dinv[0], 0.0, 0);
  EXPECT_NEAR(fz.dinv[1], 0.0, 0);

  // w = (1 - A v) / T: for A = the constant column 1 (T = 4, D = 1) and eps -> 0, v = 1 and w = 0.
  const double a1[4] = {1, 1, 1, 1};
  const double g1[1] = {4};
  pwtp::Ldl<1, double> f1;
  pwtp::ldl_factor<1, double>(g1, 0.0, f1);
  double v1;
  const double s1 = 4;
  pwtp::ldl_solve<1, double>(f1, &s1, &v1);
  for (int t = 0; t < 4; ++t) EXPECT_NEAR((pwtp::projection_weight<1, double>(a1 + t, 1, &v1, 1, 0.25)), 0.0, 1e-15);

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
