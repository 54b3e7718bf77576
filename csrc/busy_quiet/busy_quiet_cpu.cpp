// CPU kernel of the fused Busy/Quiet split (operators.md §1.3): per (n, c, segment s), one read of the
// three frames 3s..3s+2 gives
//   busy  = the stem motion band-pass (stride 3, "valid", reflect), temporal filter first;
//   quiet = frame 3s ("first") or mean of the three frames - busy ("mean_minus_busy"),
//           kept in acc_t, then copied or bilinearly resized (align_corners=False, no
//           antialias, as F.interpolate(scale_factor=quiet_scale) computes it).
// Building blocks shared with the motion band-pass kernels: common/cpu_frames.h, common/cpu_stencil.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "busy_quiet/busy_quiet_math.h"
#include "common/cpu_frames.h"
#include "common/cpu_stencil.h"

namespace vidops {
namespace bq {
namespace cpu {
namespace {

using mbp::kReflect;
using mbp::kValid;
using mbp::cpu::fill_temporal;
using mbp::cpu::Pad;
using mbp::cpu::parallel_jobs;
using mbp::cpu::stencil;
using mbp::cpu::Taps;
using mbp::cpu::Workspace;

// Source indices and weights of one resized axis (bilinear_source in the math header).
template <typename acc_t>
struct Axis {
  std::vector<int64_t> i0, i1;
  std::vector<acc_t> w0, w1;
  Axis(int64_t n_in, int64_t n_out, double scale) : i0(n_out), i1(n_out), w0(n_out), w1(n_out) {
    const acc_t inv = static_cast<acc_t>(1.0 / scale);
    for (int64_t d = 0; d < n_out; ++d) {
      bilinear_source(d, inv, n_in, n_out, i0[d], i1[d], w1[d]);
      w0[d] = acc_t(1) - w1[d];
    }
  }
};

template <typename scalar_t, typename acc_t>
void busy_quiet_kernel(const at::Tensor& clip, const at::Tensor& sw, const at::Tensor& tw, bool first,
                       double scale, at::Tensor& busy, at::Tensor& quiet) {
  const int64_t N = clip.size(0), C = clip.size(1), H = clip.size(3), W = clip.size(4);
  const int64_t S = clip.size(2) / 3, k = sw.size(1), kk = k * k;
  const int64_t h = quiet.size(3), w = quiet.size(4);
  const bool resize = scale > 0;
  const at::ScalarType acc = c10::CppTypeToScalarType<acc_t>::value;
  const at::Tensor K = sw.to(acc).contiguous(), TW = tw.to(acc).contiguous();
  const acc_t* Kp = K.data_ptr<acc_t>();
  const acc_t* twp = TW.data_ptr<acc_t>();
  const scalar_t* xp = clip.data_ptr<scalar_t>();
  scalar_t* bp = busy.data_ptr<scalar_t>();
  scalar_t* qp = quiet.data_ptr<scalar_t>();
  const int64_t sN = clip.stride(0), sC = clip.stride(1), sT = clip.stride(2), sH = clip.stride(3),
                sW = clip.stride(4);
  const Pad P(H, W, (k - 1) / 2, kReflect);
  const Axis<acc_t> ay(H, resize ? h : 0, scale), ax(W, resize ? w : 0, scale);
  const int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  parallel_jobs(N * C * S, threads, [&](const auto& next) {
    Workspace<acc_t> ws({P.size(), 3 * W, H * W, H * W});
    acc_t* Y = ws.take(P.size());
    acc_t* scratch = ws.take(3 * W);
    acc_t* B = ws.take(H * W);  // busy in acc_t (mean_minus_busy)
    acc_t* Q = ws.take(H * W);  // quiet before the resize
    for (int64_t job; next(job);) {
      const int64_t s = job % S, nc = job / S, c = nc % C, n = nc / C;
      const scalar_t* x_nc = xp + n * sN + c * sC;
      scalar_t* busy_f = bp + job * H * W;
      const Taps<acc_t> taps(s, twp + c * 3, 3, kValid, 3 * S);
      fill_temporal<scalar_t, acc_t>(x_nc, sT, sH, sW, taps, P, Y, scratch, nullptr, 0, nullptr, first ? nullptr : Q);
      if (first) {
        stencil<acc_t, scalar_t>(Y, P.Wp, Kp + c * kk, static_cast<int>(k), H, W, busy_f, W);
        const scalar_t* f0 = x_nc + 3 * s * sT;
        for (int64_t i = 0; i < H; ++i)
          for (int64_t j = 0; j < W; ++j) Q[i * W + j] = static_cast<acc_t>(f0[i * sH + j * sW]);
      } else {
        stencil<acc_t, acc_t>(Y, P.Wp, Kp + c * kk, static_cast<int>(k), H, W, B, W);
        for (int64_t p = 0; p < H * W; ++p) {
          busy_f[p] = static_cast<scalar_t>(B[p]);
          Q[p] -= B[p];
        }
      }
      scalar_t* q_f = qp + job * h * w;
      if (!resize) {
        for (int64_t p = 0; p < H * W; ++p) q_f[p] = static_cast<scalar_t>(Q[p]);
        continue;
      }
      // separable blend, in the order of PyTorch's generic CPU upsample kernel (its other CPU
      // path blends the four products; results agree to rounding, not bitwise)
      for (int64_t oy = 0; oy < h; ++oy) {
        const acc_t* r0 = Q + ay.i0[oy] * W;
        const acc_t* r1 = Q + ay.i1[oy] * W;
        const acc_t h0 = ay.w0[oy], h1 = ay.w1[oy];
        for (int64_t ox = 0; ox < w; ++ox) {
          const int64_t x0 = ax.i0[ox], x1 = ax.i1[ox];
          const acc_t top = r0[x0] * ax.w0[ox] + r0[x1] * ax.w1[ox];
          const acc_t bot = r1[x0] * ax.w0[ox] + r1[x1] * ax.w1[ox];
          q_f[oy * w + ox] = static_cast<scalar_t>(top * h0 + bot * h1);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> busy_quiet_fwd_cpu(const at::Tensor& clip, const at::Tensor& sw,
                                                      const at::Tensor& tw, std::string quiet, double quiet_scale) {
  TORCH_CHECK(clip.dim() == 5, "vidops._busy_quiet_fwd: clip must be (N, C, 3S, H, W), got ", clip.sizes());
  const int64_t N = clip.size(0), C = clip.size(1), T = clip.size(2), H = clip.size(3), W = clip.size(4);
  TORCH_CHECK(T % 3 == 0 && T >= 3, "vidops._busy_quiet_fwd: clip must hold S >= 1 segments of 3 frames, got T=", T);
  TORCH_CHECK(sw.dim() == 3 && sw.size(0) == C && sw.size(1) == sw.size(2) && sw.size(1) % 2 == 1,
              "vidops._busy_quiet_fwd: spatial_weight must be (C, k, k) with C=", C, " and odd k, got ", sw.sizes());
  TORCH_CHECK(tw.dim() == 2 && tw.size(0) == C && tw.size(1) == 3,
              "vidops._busy_quiet_fwd: temporal_weight must be (C, 3) with C=", C, ", got ", tw.sizes());
  // quiet is checked by vidops/ops/busy_quiet.py (check_args); any other name reads as mean_minus_busy.
  const int64_t r = (sw.size(1) - 1) / 2;
  TORCH_CHECK(clip.numel() == 0 || (H > r && W > r), "vidops._busy_quiet_fwd: reflect padding of ", r,
              " needs H and W > ", r, ", got H=", H, ", W=", W);
  const int64_t h = quiet_size(H, quiet_scale), w = quiet_size(W, quiet_scale);
  TORCH_CHECK(quiet_scale < 0 || quiet_scale > 0, "vidops._busy_quiet_fwd: quiet_scale must be > 0 or < 0 (none)");
  const auto opts = clip.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor busy = at::empty({N, C, T / 3, H, W}, opts);
  at::Tensor q = at::empty({N, C, T / 3, h, w}, opts);
  if (busy.numel() == 0) return {busy, q};
  TORCH_CHECK(h > 0 && w > 0, "vidops._busy_quiet_fwd: quiet_scale=", quiet_scale, " maps ", H, " x ", W,
              " to an empty image");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, clip.scalar_type(), "vidops_busy_quiet_fwd", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    busy_quiet_kernel<scalar_t, acc_t>(clip, sw, tw, quiet == "first", quiet_scale, busy, q);
  });
  return {busy, q};
}

}  // namespace
}  // namespace cpu
}  // namespace bq
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_busy_quiet_fwd", &vidops::bq::cpu::busy_quiet_fwd_cpu);
}
