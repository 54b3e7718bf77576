// Unit tests of the index math added for the CPU kernels (backward frame order, padded
// coordinates, the bilinear resize of busy/quiet); the CUDA kernels share the header.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include "busy_quiet/busy_quiet_math.h"
#include "motion_band_pass/motion_band_pass_math.h"

using namespace vidops::mbp;
using vidops::bq::bilinear_source;
using vidops::bq::quiet_size;

#include "expect.h"

// last_reader(f) must be the largest t whose taps read f, for every mode and stride.
static void check_last_reader(int64_t T, int stride, int mode) {
  const int64_t T_out = output_frames(T, stride, mode);
  for (int64_t f = 0; f < T; ++f) {
    int64_t last = -1;
    for (int64_t t = 0; t < T_out; ++t)
      for (int j = 0; j < 3; ++j)
        if (temporal_source(t, j, stride, mode, T) == f) last = t;
    // frames no tap reads may be emitted at any t: only readers constrain last_reader
    if (last >= 0) EXPECT_EQ(last_reader(f, stride, mode, T, T_out), last);
    // every reader lies within the two frames before the last one (the backward keeps three)
    for (int64_t t = 0; t < T_out; ++t)
      for (int j = 0; j < 3; ++j)
        if (temporal_source(t, j, stride, mode, T) == f && t < last_reader(f, stride, mode, T, T_out) - 2) {
          std::printf("reader t=%lld of frame %lld too early (T=%lld s=%d mode=%d)\n", (long long)t,
                      (long long)f, (long long)T, stride, mode);
          ++failures;
        }
  }
}

int main() {
  for (int mode : {kValid, kReplicate, kTemporalZeros})
    for (int stride = 1; stride <= 5; ++stride)
      for (int64_t T = 3; T <= 13; ++T) check_last_reader(T, stride, mode);
  // Padded coordinates: p = 0 is r columns left of the frame.
  EXPECT_EQ(padded_source(0, 4, 10, kReflect), 4);
  EXPECT_EQ(padded_source(14, 4, 10, kReflect), 8);  // source 10 mirrors to 8
  EXPECT_EQ(padded_source(0, 4, 10, kSpatialZeros), -1);
  EXPECT_EQ(padded_source(7, 4, 10, kSpatialZeros), 3);
  // Output size floor(n * scale); a negative scale means no resize.
  EXPECT_EQ(quiet_size(256, 0.625), 160);
  EXPECT_EQ(quiet_size(13, 0.625), 8);
  EXPECT_EQ(quiet_size(13, -1.0), 13);
  // Bilinear coordinates, align_corners=False: src = (d + 0.5) / s - 0.5, clamped at 0.
  int64_t i0, i1;
  double w1;
  bilinear_source<double>(0, 1.0 / 0.5, 16, 8, i0, i1, w1);  // src 0.5
  EXPECT_EQ(i0, 0); EXPECT_EQ(i1, 1); EXPECT_NEAR(w1, 0.5, 1e-15);
  bilinear_source<double>(0, 1.0 / 2.0, 8, 16, i0, i1, w1);  // src -0.25 -> 0
  EXPECT_EQ(i0, 0); EXPECT_EQ(i1, 1); EXPECT_NEAR(w1, 0.0, 0.0);
  bilinear_source<double>(15, 1.0 / 2.0, 8, 16, i0, i1, w1);  // src 7.25: last sample twice
  EXPECT_EQ(i0, 7); EXPECT_EQ(i1, 7); EXPECT_NEAR(w1, 0.25, 1e-15);
  bilinear_source<double>(5, 1.0 / 1.001, 10, 10, i0, i1, w1);  // size unchanged: a copy
  EXPECT_EQ(i0, 5); EXPECT_EQ(i1, 5); EXPECT_NEAR(w1, 0.0, 0.0);
  float wf;
  bilinear_source<float>(3, static_cast<float>(1.0 / 0.625), 256, 160, i0, i1, wf);  // src 5.1
  EXPECT_EQ(i0, 5); EXPECT_EQ(i1, 6); EXPECT_NEAR(wf, 0.1, 1e-6);
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("test_mbp_backward_and_resize_math: all passed\n");
  return 0;
}
