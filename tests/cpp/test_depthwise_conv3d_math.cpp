// Unit tests of the depthwise 3-D convolution's shared host/device index math (run by ctest; the
// CPU and CUDA kernels use the same code).
#include <cstdio>
#include <vector>

#include "common/stencil.h"
#include "depthwise_conv3d/depthwise_conv3d_math.h"
#include "expect.h"

using namespace vidops;

int main() {
  EXPECT_EQ(stencil::same_pad(1), 0);
  EXPECT_EQ(stencil::same_pad(3), 1);
  EXPECT_EQ(stencil::same_pad(7), 3);
  // tap j of output o reads o + j - p, or -1 in the padding
  EXPECT_EQ(stencil::zero_pad_source(0, 0, 3, 10), -1);
  EXPECT_EQ(stencil::zero_pad_source(0, 3, 3, 10), 0);
  EXPECT_EQ(stencil::zero_pad_source(9, 4, 3, 10), -1);
  EXPECT_EQ(stencil::zero_pad_source(9, 3, 3, 10), 9);
  // valid_taps agrees with zero_pad_source for every output, kernel and (small) size
  for (int n = 1; n <= 6; ++n)
    for (int k = 1; k <= 9; k += 2)
      for (int o = 0; o < n; ++o) {
        int j0, j1;
        stencil::valid_taps(o, k, stencil::same_pad(k), n, j0, j1);
        for (int j = 0; j < k; ++j) {
          const bool inside = stencil::zero_pad_source(o, j, stencil::same_pad(k), n) >= 0;
          EXPECT_EQ(inside, j >= j0 && j < j1);
        }
      }
  // flipping every axis reverses the flat tap order
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 5; ++b)
      for (int e = 0; e < 7; ++e)
        EXPECT_EQ(dwc::tap_index(a, b, e, 3, 5, 7, true), dwc::flipped_flat_tap(dwc::tap_index(a, b, e, 3, 5, 7, false), 105));
  // chunks depend on the shape only and tile [0, units) exactly, in order
  EXPECT_EQ(dwc::wgrad_chunks(256, 32, 64), 1);
  EXPECT_EQ(dwc::wgrad_chunks(1, 32, 64), 32);
  EXPECT_EQ(dwc::wgrad_chunks(3, 100, 64), 22);
  EXPECT_EQ(dwc::wgrad_chunks(4, 0, 64), 1);
  for (int64_t units = 1; units < 40; ++units)
    for (int64_t chunks = 1; chunks <= units; ++chunks) {
      int64_t next = 0;
      for (int64_t i = 0; i < chunks; ++i) {
        int64_t u0, u1;
        dwc::chunk_range(i, chunks, units, u0, u1);
        EXPECT_EQ(u0, next);
        if (u1 <= u0) EXPECT_EQ(u1 - u0, 1);  // never empty when chunks <= units
        next = u1;
      }
      EXPECT_EQ(next, units);
    }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("test_depthwise_conv3d_math: all passed\n");
  return 0;
}
