// CPU (OpenMP) kernels of the motion band-pass filter (operators.md §1.1).
//
// Forward, per output frame (n, c, t): the 3-tap temporal filter first (exact by linearity, and
// 3x less stencil work at stride 3) into a per-thread padded frame Y, then the k x k stencil of
// Y straight into the output (frames narrower than an AVX2 vector through one flat row of Y's
// pitch, see stencil_flat: 2.3x faster at 7 x 7). x is read once through its strides (any
// layout), the output is written once; besides the output, each thread allocates one padded frame
// (and, for narrow frames, the flat row).
//
// Backward, per (n, c), output frames in order, with out = S(Y), Y = Tf(x):
//   gY    = S^T(grad): the stencil with the flipped kernel over the zero-padded grad, on the padded
//           domain, then the adjoint of the spatial padding (reflect folds the border back);
//   g_tw  = <gY, x[frame]> per tap, computed while Y is rebuilt from x (one read of x);
//   g_sw  = correlation of grad with pad(Y);
//   g_x   = Tf^T(gY), gathered from the last three gY frames and written once per input frame.
// Weight gradients: per-(n, c) partials in double, summed over n in a fixed order (bitwise
// deterministic and independent of the thread count).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/irange.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <string>
#include <tuple>

#include "common/cpu_frames.h"
#include "common/cpu_stencil.h"
#include "motion_band_pass/motion_band_pass_math.h"

namespace vidops {
namespace mbp {
namespace cpu {
namespace {

// The padding names are checked by vidops/ops/motion_band_pass.py (check_args); any other name
// reads as zero padding here, which indexes nothing outside x.
int spatial_mode(const std::string& s) { return s == "reflect" ? kReflect : kSpatialZeros; }

int temporal_mode(const std::string& s) {
  return s == "valid" ? kValid : (s == "replicate" ? kReplicate : kTemporalZeros);
}

// torch's intra-op thread count (1 inside another parallel region, as at::parallel_for does)
int num_threads() { return at::in_parallel_region() ? 1 : at::get_num_threads(); }

struct Geometry {
  int64_t N, C, T, H, W, k, r, T_out;
  int stride, sp, tp;
};

Geometry check(const at::Tensor& x, const at::Tensor& sw, const at::Tensor& tw, int64_t stride,
               const std::string& spatial_padding, const std::string& temporal_padding) {
  TORCH_CHECK(x.dim() == 5, "vidops._motion_band_pass: x must be (N, C, T, H, W), got ", x.sizes());
  TORCH_CHECK(x.device().is_cpu() && sw.device().is_cpu() && tw.device().is_cpu(),
              "vidops._motion_band_pass (cpu): all tensors must be on the CPU");
  Geometry g;
  g.N = x.size(0), g.C = x.size(1), g.T = x.size(2), g.H = x.size(3), g.W = x.size(4);
  TORCH_CHECK(sw.dim() == 3 && sw.size(0) == g.C && sw.size(1) == sw.size(2) && sw.size(1) % 2 == 1,
              "vidops._motion_band_pass: spatial_weight must be (C, k, k) with C=", g.C, " and odd k, got ", sw.sizes());
  TORCH_CHECK(tw.dim() == 2 && tw.size(0) == g.C && tw.size(1) == 3,
              "vidops._motion_band_pass: temporal_weight must be (C, 3) with C=", g.C, ", got ", tw.sizes());
  TORCH_CHECK(stride >= 1 && stride < (int64_t(1) << 30), "vidops._motion_band_pass: temporal_stride must be >= 1, got ", stride);
  g.k = sw.size(1), g.r = (g.k - 1) / 2, g.stride = static_cast<int>(stride);
  g.sp = spatial_mode(spatial_padding), g.tp = temporal_mode(temporal_padding);
  TORCH_CHECK(g.T + 2 * temporal_pad(g.tp) >= 3, "vidops._motion_band_pass: T=", g.T,
              " frames are too few for the 3-tap temporal filter with temporal_padding='", temporal_padding, "'");
  TORCH_CHECK(g.sp != kReflect || (g.H > g.r && g.W > g.r) || x.numel() == 0,
              "vidops._motion_band_pass: reflect padding of ", g.r, " needs H and W > ", g.r, ", got H=", g.H, ", W=", g.W);
  g.T_out = output_frames(g.T, g.stride, g.tp);
  return g;
}

// Per-channel weights as contiguous acc_t: K (C, k, k), its flipped copy, and tw (C, 3).
template <typename acc_t>
struct Weights {
  at::Tensor K, Kflip, tw;
  Weights(const at::Tensor& sw, const at::Tensor& tw_, at::ScalarType acc, bool flipped) {
    K = sw.to(acc).contiguous();
    if (flipped) Kflip = K.flip({1, 2}).contiguous();
    tw = tw_.to(acc).contiguous();
  }
  const acc_t* k(int64_t c, int64_t kk) const { return K.data_ptr<acc_t>() + c * kk; }
  const acc_t* kf(int64_t c, int64_t kk) const { return Kflip.data_ptr<acc_t>() + c * kk; }
  const acc_t* t(int64_t c) const { return tw.data_ptr<acc_t>() + c * 3; }
};

template <typename scalar_t, typename acc_t>
void forward_kernel(const at::Tensor& x, const Weights<acc_t>& wt, const Geometry& g, at::Tensor& out) {
  const scalar_t* xp = x.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t sN = x.stride(0), sC = x.stride(1), sT = x.stride(2), sH = x.stride(3), sW = x.stride(4);
  const Pad P(g.H, g.W, g.r, g.sp);
  const int64_t frame = g.H * g.W, kk = g.k * g.k;
  // Jobs of consecutive output frames (~16K outputs each, at least 8 jobs per thread): one frame
  // per job made small frames (14 x 14) pay a shared counter update and a cache line shared with
  // the other thread's output at every frame.
  const int threads = num_threads();
  const int64_t frames = g.N * g.C * g.T_out;
  const int64_t per_job = std::max<int64_t>(1, std::min<int64_t>((16384 + frame - 1) / frame, frames / (8 * threads)));
  parallel_jobs((frames + per_job - 1) / per_job, threads, [&](const auto& next) {
    const int64_t flat_size = flat_scratch_size(g.H, g.W, P.Wp, sizeof(acc_t));
    Workspace<acc_t> ws({P.size(), 3 * g.W, flat_size});
    acc_t* Y = ws.take(P.size());
    acc_t* scratch = ws.take(3 * g.W);
    acc_t* flat = flat_size > 0 ? ws.take(flat_size) : nullptr;
    for (int64_t job; next(job);) {
      for (int64_t f = job * per_job; f < std::min(frames, (job + 1) * per_job); ++f) {
        const int64_t t = f % g.T_out, nc = f / g.T_out, c = nc % g.C, n = nc / g.C;
        const Taps<acc_t> taps(t, wt.t(c), g.stride, g.tp, g.T);
        fill_temporal_fast(xp + n * sN + c * sC, sT, sH, sW, taps, P, Y, scratch);
        stencil_any<acc_t, scalar_t>(Y, P.Wp, wt.k(c, kk), static_cast<int>(g.k), g.H, g.W, op + f * frame, g.W, flat);
      }
    }
  });
}

at::Tensor motion_band_pass_fwd_cpu(const at::Tensor& x, const at::Tensor& sw, const at::Tensor& tw,
                                    int64_t stride, std::string spatial_padding, std::string temporal_padding) {
  const Geometry g = check(x, sw, tw, stride, spatial_padding, temporal_padding);
  at::Tensor out = at::empty({g.N, g.C, g.T_out, g.H, g.W}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vidops_motion_band_pass_fwd", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const Weights<acc_t> wt(sw, tw, c10::CppTypeToScalarType<acc_t>::value, false);
    forward_kernel<scalar_t, acc_t>(x, wt, g, out);
  });
  return out;
}

// ---- backward --------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t>
void backward_kernel(const at::Tensor& grad, const at::Tensor& x, const Weights<acc_t>& wt, const Geometry& g,
                     at::Tensor& gx, double* partial /* (N*C, k*k + 3) */) {
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* gp = grad.data_ptr<scalar_t>();
  scalar_t* gxp = gx.data_ptr<scalar_t>();
  const int64_t sN = x.stride(0), sC = x.stride(1), sT = x.stride(2), sH = x.stride(3), sW = x.stride(4);
  const int64_t gN = grad.stride(0), gC = grad.stride(1), gT = grad.stride(2), gH = grad.stride(3), gW = grad.stride(4);
  const Pad P(g.H, g.W, g.r, g.sp);                             // Y and gY frames
  const Pad G(g.H, g.W, 2 * g.r, kSpatialZeros);                // grad, zero-padded by k-1
  const int64_t kk = g.k * g.k, npart = kk + 3, frame = g.H * g.W;
  const int k = static_cast<int>(g.k);
  const bool reflect = g.sp == kReflect;
  parallel_jobs(g.N * g.C, num_threads(), [&](const auto& next) {
    Workspace<acc_t> ws({G.size(), P.size(), P.size(), P.size(), P.size(), 3 * g.W});
    acc_t* Gp = ws.take(G.size());
    acc_t* Y = ws.take(P.size());
    std::array<acc_t*, 3> ring;  // gY of output frames t-2, t-1, t (padded layout, slot t % 3)
    for (auto& slot : ring) slot = ws.take(P.size());
    acc_t* scratch = ws.take(3 * g.W);
    std::fill(Gp, Gp + G.size(), acc_t(0));
    std::fill(Y, Y + P.size(), acc_t(0));  // zero border for "zeros" padding
    for (int64_t nc; next(nc);) {
      const int64_t c = nc % g.C, n = nc / g.C;
      const scalar_t* x_nc = xp + n * sN + c * sC;
      const acc_t* tw = wt.t(c);
      double* part = partial + nc * npart;
      for (int64_t q = 0; q < npart; ++q) part[q] = 0.0;
      int64_t next_f = 0;  // next input frame whose gradient is written
      // g_x[f] = sum over taps (t, j) reading f of tw[j] * gY[t]; all such t are in the ring.
      auto emit = [&](int64_t f, int64_t t_now) {
        acc_t w[3];
        const acc_t* src[3];
        int m = 0;
        for (int64_t t = std::max<int64_t>(0, t_now - 2); t <= t_now; ++t) {
          acc_t s = 0;
          bool hit = false;
          for (int j = 0; j < 3; ++j)
            if (temporal_source(t, j, g.stride, g.tp, g.T) == f) s += tw[j], hit = true;
          if (hit) w[m] = s, src[m] = P.interior(ring[t % 3]), ++m;
        }
        scalar_t* dst = gxp + (nc * g.T + f) * frame;
        if (emit_fast(dst, g.H, g.W, m, src, w, P.Wp)) return;
        for (int64_t i = 0; i < g.H; ++i) {
          scalar_t* d = dst + i * g.W;
          const int64_t o = i * P.Wp;
          if (m == 0) {
            for (int64_t j = 0; j < g.W; ++j) d[j] = scalar_t(0);
          } else if (m == 1) {
            for (int64_t j = 0; j < g.W; ++j) d[j] = static_cast<scalar_t>(w[0] * src[0][o + j]);
          } else if (m == 2) {
            for (int64_t j = 0; j < g.W; ++j) d[j] = static_cast<scalar_t>(w[0] * src[0][o + j] + w[1] * src[1][o + j]);
          } else {
            for (int64_t j = 0; j < g.W; ++j)
              d[j] = static_cast<scalar_t>(w[0] * src[0][o + j] + w[1] * src[1][o + j] + w[2] * src[2][o + j]);
          }
        }
      };
      for (int64_t t = 0; t < g.T_out; ++t) {
        // grad frame into the interior of the zero-padded buffer
        const scalar_t* g_t = gp + n * gN + c * gC + t * gT;
        for (int64_t i = 0; i < g.H; ++i) {
          acc_t* d = G.interior(Gp) + i * G.Wp;
          const acc_t* s = row_of(g_t + i * gH, gW, g.W, d);
          if (s != d) std::memcpy(d, s, sizeof(acc_t) * g.W);
        }
        // gY = S^T(grad): flipped-kernel stencil, on the whole padded domain for reflect (then
        // folded), on the interior only for zeros.
        acc_t* gy = ring[t % 3];
        if (reflect) {
          stencil<acc_t, acc_t>(Gp, G.Wp, wt.kf(c, kk), k, P.Hp, P.Wp, gy, P.Wp);
          fold_border(gy, P);
        } else {
          stencil<acc_t, acc_t>(Gp + g.r * G.Wp + g.r, G.Wp, wt.kf(c, kk), k, g.H, g.W, P.interior(gy), P.Wp);
        }
        // Y = Tf(x) (padded) and the temporal-weight dots <gY, x[frame]>
        const Taps<acc_t> taps(t, tw, g.stride, g.tp, g.T);
        double dots[3] = {0, 0, 0};
        fill_temporal_fast(x_nc, sT, sH, sW, taps, P, Y, scratch, P.interior(gy), P.Wp, dots);
        for (int f = 0; f < taps.n; ++f)
          for (int j = 0; j < 3; ++j)
            if (taps.mask[f] & (1 << j)) part[kk + j] += dots[f];
        // g_sw += corr(grad, pad(Y))
        corr_taps<acc_t>(G.interior(Gp), G.Wp, Y, P.Wp, k, g.H, g.W, part);
        while (next_f < g.T && last_reader(next_f, g.stride, g.tp, g.T, g.T_out) <= t) emit(next_f++, t);
      }
      while (next_f < g.T) emit(next_f++, g.T_out - 1);  // frames no tap reads: zeros
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> motion_band_pass_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& sw, const at::Tensor& tw, int64_t stride,
    std::string spatial_padding, std::string temporal_padding) {
  const Geometry g = check(x, sw, tw, stride, spatial_padding, temporal_padding);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef({g.N, g.C, g.T_out, g.H, g.W}),
              "vidops._motion_band_pass_bwd: grad_out must be ", at::IntArrayRef({g.N, g.C, g.T_out, g.H, g.W}),
              ", got ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "vidops._motion_band_pass_bwd: grad_out dtype ",
              grad.scalar_type(), " differs from x dtype ", x.scalar_type());
  at::Tensor gx = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t kk = g.k * g.k;
  std::vector<double> partial(static_cast<size_t>(g.N * g.C * (kk + 3)), 0.0);
  if (x.numel() > 0 && grad.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vidops_motion_band_pass_bwd", [&] {
      using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
      const Weights<acc_t> wt(sw, tw, c10::CppTypeToScalarType<acc_t>::value, true);
      backward_kernel<scalar_t, acc_t>(grad, x, wt, g, gx, partial.data());
    });
  } else {
    gx.zero_();
  }
  // per channel, sum the (n, c) partials over n in order (two fresh tensors: no shared storage)
  at::Tensor g_sw = at::empty({g.C, g.k, g.k}, x.options().dtype(at::kDouble));
  at::Tensor g_tw = at::empty({g.C, 3}, x.options().dtype(at::kDouble));
  double* gs = g_sw.data_ptr<double>();
  double* gt = g_tw.data_ptr<double>();
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t q = 0; q < kk + 3; ++q) {
      double s = 0.0;
      for (int64_t n = 0; n < g.N; ++n) s += partial[(n * g.C + c) * (kk + 3) + q];
      if (q < kk) gs[c * kk + q] = s;
      else gt[c * 3 + q - kk] = s;
    }
  g_sw = g_sw.to(sw.scalar_type());
  g_tw = g_tw.to(tw.scalar_type());
  return {gx, g_sw, g_tw};
}

}  // namespace
}  // namespace cpu
}  // namespace mbp
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_motion_band_pass_fwd", &vidops::mbp::cpu::motion_band_pass_fwd_cpu);
  m.impl("_motion_band_pass_bwd", &vidops::mbp::cpu::motion_band_pass_bwd_cpu);
}
