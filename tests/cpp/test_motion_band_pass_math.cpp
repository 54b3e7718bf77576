// Unit tests of the shared host/device index math (run by ctest; the CUDA kernels use the same code).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "motion_band_pass/motion_band_pass_math.h"
#include "expect.h"

using namespace vidops::mbp;

int main() {
  // T_out = (T + 2 p - 3) / s + 1
  EXPECT_EQ(output_frames(24, 3, kValid), 8);
  EXPECT_EQ(output_frames(8, 1, kReplicate), 8);
  EXPECT_EQ(output_frames(7, 2, kTemporalZeros), 4);
  EXPECT_EQ(output_frames(3, 1, kValid), 1);
  // Stem: output frame t reads frames 3t, 3t+1, 3t+2.
  EXPECT_EQ(temporal_source(2, 0, 3, kValid, 24), 6);
  EXPECT_EQ(temporal_source(2, 2, 3, kValid, 24), 8);
  // Replicate: frame -1 is frame 0, frame T is frame T-1; zeros gives -1 there.
  EXPECT_EQ(temporal_source(0, 0, 1, kReplicate, 5), 0);
  EXPECT_EQ(temporal_source(4, 2, 1, kReplicate, 5), 4);
  EXPECT_EQ(temporal_source(0, 0, 1, kTemporalZeros, 5), -1);
  EXPECT_EQ(temporal_source(4, 2, 1, kTemporalZeros, 5), -1);
  EXPECT_EQ(temporal_source(2, 1, 1, kTemporalZeros, 5), 2);
  // Reflect without repeating the edge: -1 -> 1, -3 -> 3, n -> n-2, n+2 -> n-4.
  EXPECT_EQ(spatial_source(-1, 10, kReflect), 1);
  EXPECT_EQ(spatial_source(-3, 10, kReflect), 3);
  EXPECT_EQ(spatial_source(10, 10, kReflect), 8);
  EXPECT_EQ(spatial_source(12, 10, kReflect), 6);
  EXPECT_EQ(spatial_source(5, 10, kReflect), 5);
  EXPECT_EQ(spatial_source(-1, 10, kSpatialZeros), -1);
  EXPECT_EQ(spatial_source(10, 10, kSpatialZeros), -1);
  // The LoG's raw value at the centre: -1/(pi sigma^4).
  double c = log_raw<double>(0.0, 1.1);
  if (std::fabs(c + 1.0 / (3.141592653589793 * std::pow(1.1, 4))) > 1e-15) {
    std::printf("log_raw centre wrong: %g\n", c);
    ++failures;
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("test_motion_band_pass_math: all passed\n");
  return 0;
}
