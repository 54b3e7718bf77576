// The depthwise 3-D convolution's CUDA kernels (csrc/depthwise_conv3d/depthwise_conv3d_kernels.cuh)
// run on CPU threads (tests/cpp/cuda_emulation.h: one std::thread per CUDA thread, a barrier for
// __syncthreads) against direct loops in double: tiling, halos, zero padding, the flipped kernel of
// grad_x, the weight gradient's work items, chunks and fixed-order reductions, with the launch
// configuration the launchers use. Shared memory is poisoned with NaNs before every block, so a read
// of an element no thread wrote shows up. The GPU runs the same code; only timing, occupancy and the
// half-precision conversions are left to a GPU run.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuda_emulation.h"
#include "depthwise_conv3d/depthwise_conv3d_kernels.cuh"

namespace vidops {
namespace dwc {
namespace gpu {
alignas(64) unsigned char smem_raw[1 << 17];
}  // namespace gpu
}  // namespace dwc
}  // namespace vidops

using namespace vidops::dwc;
using namespace vidops::dwc::gpu;

static int failures = 0;

static void poison() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (size_t i = 0; i + sizeof(double) <= sizeof(smem_raw); i += sizeof(double)) std::memcpy(smem_raw + i, &nan, sizeof(double));
}

// y = sum_{a,b,e} w[c, a,b,e] x[n,c,t+a-pt,h+b-ph,w+e-pw], w reversed when flip.
static std::vector<double> direct_conv(const std::vector<double>& x, const std::vector<double>& w, const Shape& d, bool flip) {
  std::vector<double> y(x.size(), 0.0);
  const int taps = d.taps();
  for (int64_t p = 0; p < d.N * d.C; ++p)
    for (int64_t t = 0; t < d.T; ++t)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t ww = 0; ww < d.W; ++ww) {
          double s = 0;
          for (int a = 0; a < d.kt; ++a)
            for (int b = 0; b < d.kh; ++b)
              for (int e = 0; e < d.kw; ++e) {
                const int64_t ti = t + a - d.pt(), hi = h + b - d.ph(), wi = ww + e - d.pw();
                if (ti < 0 || ti >= d.T || hi < 0 || hi >= d.H || wi < 0 || wi >= d.W) continue;
                const int tap = (a * d.kh + b) * d.kw + e;
                s += w[(p % d.C) * taps + (flip ? taps - 1 - tap : tap)] * x[((p * d.T + ti) * d.H + hi) * d.W + wi];
              }
          y[((p * d.T + t) * d.H + h) * d.W + ww] = s;
        }
  return y;
}

static std::vector<double> direct_wgrad(const std::vector<double>& g, const std::vector<double>& x, const Shape& d) {
  const int taps = d.taps();
  std::vector<double> gw(d.C * taps, 0.0);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t c = 0; c < d.C; ++c)
      for (int a = 0; a < d.kt; ++a)
        for (int b = 0; b < d.kh; ++b)
          for (int e = 0; e < d.kw; ++e) {
            double s = 0;
            for (int64_t t = 0; t < d.T; ++t)
              for (int64_t h = 0; h < d.H; ++h)
                for (int64_t ww = 0; ww < d.W; ++ww) {
                  const int64_t ti = t + a - d.pt(), hi = h + b - d.ph(), wi = ww + e - d.pw();
                  if (ti < 0 || ti >= d.T || hi < 0 || hi >= d.H || wi < 0 || wi >= d.W) continue;
                  const int64_t p = n * d.C + c;
                  s += g[((p * d.T + t) * d.H + h) * d.W + ww] * x[((p * d.T + ti) * d.H + hi) * d.W + wi];
                }
            gw[c * taps + (a * d.kh + b) * d.kw + e] += s;
          }
  return gw;
}

template <typename A>
static void expect_close(const char* what, const Shape& d, const std::vector<A>& got, const std::vector<double>& want, double tol) {
  double err = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::fmax(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::fmax(scale, std::fabs(want[i]));
    if (std::isnan(static_cast<double>(got[i]))) err = INFINITY;
  }
  if (!(err <= tol * scale)) {
    std::printf("FAIL %s N=%lld C=%lld T=%lld H=%lld W=%lld k=%dx%dx%d: max error %g (scale %g)\n", what, (long long)d.N,
                (long long)d.C, (long long)d.T, (long long)d.H, (long long)d.W, d.kt, d.kh, d.kw, err, scale);
    ++failures;
  }
}

template <typename A, int TW, int RPT>
static std::vector<A> run_fwd(const std::vector<A>& x, const std::vector<A>& w, const Shape& d, bool flip) {
  std::vector<A> y(x.size(), std::numeric_limits<A>::quiet_NaN());
  int64_t tiles_h, tiles_w;
  const int64_t blocks = fwd_blocks(d, FwdTile<TW, RPT>::TH, TW, tiles_h, tiles_w);
  if (fwd_smem_bytes<A>(d, FwdTile<TW, RPT>::TH, TW) > 48 * 1024) {
    std::printf("FAIL: forward shared memory too large for the test shapes\n");
    ++failures;
  }
  cuda_emulation::launch(static_cast<unsigned>(blocks), dim3(TW, FwdTile<TW, RPT>::TY),
                         [&] { dwc_fwd_kernel<A, A, TW, RPT>(x.data(), w.data(), y.data(), d, flip, tiles_h, tiles_w); },
                         poison);
  return y;
}

template <typename A>
static std::vector<A> run_wgrad(const std::vector<A>& g, const std::vector<A>& x, const Shape& d) {
  const int64_t chunks = wgrad_chunks(d.C, d.N * d.T, 8);  // small min_tasks: several chunks per channel
  const int groups = wgrad_groups(d.kh * d.kw);
  std::vector<A> partial(d.C * chunks * d.taps(), std::numeric_limits<A>::quiet_NaN());
  std::vector<A> gw(d.C * d.taps(), std::numeric_limits<A>::quiet_NaN());
  cuda_emulation::launch(static_cast<unsigned>(d.C * chunks), dim3(kThreads),
                         [&] { dwc_wgrad_kernel<A, A>(g.data(), x.data(), partial.data(), d, chunks, groups); }, poison);
  const int64_t n = d.C * d.taps();
  cuda_emulation::launch(static_cast<unsigned>((n + 255) / 256), dim3(256),
                         [&] { dwc_wgrad_reduce_kernel<A>(partial.data(), gw.data(), d.C, chunks, d.taps()); }, [] {});
  return gw;
}

template <typename A>
static void check_shape(const Shape& d, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  std::vector<double> x(d.N * d.C * d.plane()), g(x.size()), w(d.C * d.taps());
  for (auto& v : x) v = nd(rng);
  for (auto& v : g) v = nd(rng);
  for (auto& v : w) v = nd(rng);
  std::vector<A> xa(x.begin(), x.end()), ga(g.begin(), g.end()), wa(w.begin(), w.end());
  const double tol = sizeof(A) == 4 ? 1e-5 : 1e-12;
  for (bool flip : {false, true}) {
    const auto want = direct_conv(x, w, d, flip);
    expect_close(flip ? "grad_x 32x16 tile" : "forward 32x16 tile", d, run_fwd<A, 32, 2>(xa, wa, d, flip), want, tol);
    expect_close(flip ? "grad_x 16x16 tile" : "forward 16x16 tile", d, run_fwd<A, 16, 1>(xa, wa, d, flip), want, tol);
  }
  expect_close("grad_w", d, run_wgrad<A>(ga, xa, d), direct_wgrad(g, x, d), tol);
}

int main() {
  std::mt19937 rng(0);
  const Shape shapes[] = {
      {1, 2, 3, 5, 7, 3, 3, 3},     // smaller than one tile
      {1, 1, 3, 18, 35, 3, 7, 7},   // several tiles in H and W, RNL's res3 kernel
      {2, 1, 3, 17, 16, 3, 9, 9},   // CPA's largest kernel, W exactly one 16-wide tile
      {1, 3, 2, 4, 6, 1, 1, 1},
      {1, 2, 5, 6, 33, 5, 3, 1},    // mixed sizes, kernel longer than T
      {2, 2, 3, 1, 1, 3, 3, 3},     // 1x1 images
  };
  for (const auto& d : shapes) check_shape<float>(d, rng);
  check_shape<double>(shapes[1], rng);
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("test_depthwise_conv3d_cuda_emulation: all passed\n");
  return 0;
}
