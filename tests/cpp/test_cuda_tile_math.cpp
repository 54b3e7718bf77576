// Unit tests of the index helpers the CUDA tile kernels use (motion_band_pass_math.h,
// busy_quiet_math.h), each against a brute-force definition. Run by ctest; no torch, no GPU.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <set>

#include "busy_quiet/busy_quiet_math.h"
#include "motion_band_pass/motion_band_pass_math.h"

using namespace vidops;

static int failures = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      std::printf("%s:%d: %s failed: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                            \
      std::printf("\n");                                   \
      ++failures;                                          \
    }                                                      \
  } while (0)

// halo_source: spatial_source on [-r, n-1+r], -1 elsewhere and for zero padding; always in [0, n) or -1.
static void test_halo_source() {
  for (int mode : {mbp::kReflect, mbp::kSpatialZeros})
    for (int64_t n = 1; n <= 12; ++n)
      for (int r = 0; r <= 6; ++r) {
        if (mode == mbp::kReflect && n <= r) continue;  // reflect needs n > r
        for (int64_t i = -3 * r - 4; i <= n + 3 * r + 4; ++i) {
          const int64_t s = mbp::halo_source(i, n, r, mode);
          int64_t expect = -1;
          if (i >= -r && i <= n - 1 + r) expect = mbp::spatial_source(i, n, mode);
          CHECK(s == expect, "n=%lld r=%d i=%lld mode=%d: %lld vs %lld", (long long)n, r, (long long)i, mode,
                (long long)s, (long long)expect);
          CHECK(s == -1 || (s >= 0 && s < n), "out of range");
        }
      }
}

// reflect_preimage enumerates exactly {x in [-r, n-1+r] : spatial_source(x) == p}.
static void test_reflect_preimage() {
  for (int mode : {mbp::kReflect, mbp::kSpatialZeros})
    for (int64_t n = 1; n <= 12; ++n)
      for (int r = 0; r <= 6; ++r) {
        if (mode == mbp::kReflect && n <= r) continue;
        for (int64_t p = 0; p < n; ++p) {
          std::set<int64_t> expect, got;
          for (int64_t x = -r; x <= n - 1 + r; ++x)
            if (mbp::spatial_source(x, n, mode) == p) expect.insert(x);
          for (int which = 0; which < 3; ++which) {
            int64_t x = 12345;
            if (mbp::reflect_preimage(p, n, r, mode, which, x)) {
              CHECK(got.insert(x).second, "duplicate preimage");
            } else {
              CHECK(x == 12345, "x written for a missing preimage");
            }
          }
          CHECK(got == expect, "n=%lld r=%d p=%lld mode=%d", (long long)n, r, (long long)p, mode);
          CHECK(mbp::reflect_folds_into(p, n, r, mode) == (expect.size() > 1), "folds_into p=%lld", (long long)p);
          // Every G row the gather reads (|x - i| <= r, 0 <= i < n) lies in [p - r, p + r].
          for (int64_t x : expect)
            for (int64_t i = 0; i < n; ++i)
              if (x - i <= r && i - x <= r) CHECK(i >= p - r && i <= p + r, "gather row outside the halo");
        }
      }
}

// temporal_reader_bounds contains every output frame that reads input frame f.
static void test_temporal_reader_bounds() {
  for (int mode : {mbp::kValid, mbp::kReplicate, mbp::kTemporalZeros})
    for (int stride = 1; stride <= 5; ++stride)
      for (int64_t T = 1; T <= 14; ++T) {
        const int64_t T_out = mbp::output_frames(T, stride, mode);
        if (T_out < 1) continue;
        for (int64_t f = 0; f < T; ++f) {
          int64_t lo, hi;
          mbp::temporal_reader_bounds(f, stride, mode, T_out, lo, hi);
          CHECK(lo >= 0 && hi <= T_out - 1, "bounds outside [0, T_out)");
          for (int64_t t = 0; t < T_out; ++t)
            for (int j = 0; j < 3; ++j)
              if (mbp::temporal_source(t, j, stride, mode, T) == f)
                CHECK(t >= lo && t <= hi, "mode=%d s=%d T=%lld f=%lld: reader t=%lld outside [%lld, %lld]", mode,
                      stride, (long long)T, (long long)f, (long long)t, (long long)lo, (long long)hi);
        }
      }
}

// bilinear_taps follows src = max((dst + 0.5) / scale - 0.5, 0) (up to rounding), neighbours floor and floor + 1
// clamped, and first_output_reading partitions the outputs by their top-left source pixel.
static void test_bilinear() {
  for (double scale : {0.3, 0.5, 0.625, 1.0, 1.7, 2.0, 3.3})
    for (int64_t n = 1; n <= 40; ++n) {
      const int64_t m = bq::resized_size(n, scale);
      CHECK(m == static_cast<int64_t>(std::floor(n * scale)), "resized_size");
      int64_t prev_i0 = -1;
      for (int64_t d = 0; d < m; ++d) {
        int64_t i0, i1;
        double w1;
        bq::bilinear_taps(d, scale, n, i0, i1, w1);
        double src = (1.0 / scale) * (d + 0.5) - 0.5;
        if (src < 0) src = 0;
        int64_t e0 = static_cast<int64_t>(std::floor(src));
        if (e0 > n - 1) e0 = n - 1;
        CHECK(i0 == e0 && i1 == (e0 + 1 < n ? e0 + 1 : n - 1), "taps n=%lld d=%lld", (long long)n, (long long)d);
        CHECK(w1 >= 0 && w1 < 1 && std::fabs(w1 - (src - e0)) < 1e-12, "weight n=%lld d=%lld", (long long)n,
              (long long)d);
        CHECK(i0 >= prev_i0, "i0 must be non-decreasing");
        prev_i0 = i0;
      }
      for (int64_t p = 0; p <= n + 2; ++p) {
        const int64_t first = bq::first_output_reading(p, scale, n, m);
        int64_t expect = m;
        for (int64_t d = 0; d < m; ++d) {
          int64_t i0, i1;
          double w1;
          bq::bilinear_taps(d, scale, n, i0, i1, w1);
          if (i0 >= p) {
            expect = d;
            break;
          }
        }
        CHECK(first == expect, "first_output_reading n=%lld p=%lld scale=%g", (long long)n, (long long)p, scale);
      }
    }
  CHECK(bq::resized_size(17, -1.0) == 17, "no resize");
}

int main() {
  test_halo_source();
  test_reflect_preimage();
  test_temporal_reader_bounds();
  test_bilinear();
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("test_cuda_tile_math: all passed\n");
  return 0;
}
