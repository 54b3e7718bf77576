// CPU kernels of the depthwise 3-D convolution (operators.md §2): OpenMP over (plane, frame-chunk) tasks
// through at::parallel_for, vectorised along W (depthwise_conv3d_cpu_kernels.inc, compiled for the
// baseline ISA, AVX2+FMA and AVX-512 and picked once per process by common/cpu_isa.h;
// VIDOPS_CPU_ISA=base|avx2 caps it, e.g. to test all three on one machine).
//   forward: per task, the needed input frames of one (n, c) plane are copied into a W-padded
//            scratch, then 8-accumulator register blocks (rows x vectors) sweep the outputs.
//   grad_x:  the forward on grad_out with the kernel reversed on every axis.
//   grad_w:  per channel, the N*T output frames are cut into shape-determined chunks
//            (dwc::wgrad_chunks), each summed by one task into its own partial buffer, then the
//            partials are added in chunk order: the same bits for any thread count.
// float16/bfloat16 inputs are computed in float32 (converted copies) and cast back.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/cpu_isa.h"
#include "depthwise_conv3d/depthwise_conv3d_math.h"

namespace vidops {
namespace dwc {
namespace cpu_impl {

template <typename S>
struct Padded {
  const S* base;  // frame f0, row 0
  int64_t f0;
  int64_t H;
  int64_t rs;     // row stride
  inline const S* row(int64_t f, int64_t r) const { return base + ((f - f0) * H + r) * rs; }
};

namespace generic {
#define VIDOPS_DWC_VEC_BYTES 16
#include "depthwise_conv3d/depthwise_conv3d_cpu_kernels.inc"
#undef VIDOPS_DWC_VEC_BYTES
}  // namespace generic

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VIDOPS_DWC_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define VIDOPS_DWC_VEC_BYTES 32
#include "depthwise_conv3d/depthwise_conv3d_cpu_kernels.inc"
#undef VIDOPS_DWC_VEC_BYTES
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace avx512 {
#define VIDOPS_DWC_VEC_BYTES 64
#include "depthwise_conv3d/depthwise_conv3d_cpu_kernels.inc"
#undef VIDOPS_DWC_VEC_BYTES
}  // namespace avx512
#pragma GCC pop_options
#endif

template <typename S>
struct Table {
  const char* isa;
  int lanes;
  void (*fwd)(const Shape&, const Padded<S>&, const S*, int64_t, int64_t, S*, int64_t);
  void (*wgrad)(const Shape&, const Padded<S>&, const Padded<S>&, int64_t, int64_t, S*);
  int (*block_width)(int64_t W);
};

template <typename S>
Table<S> make_table(const char* isa, int lanes, decltype(Table<S>::fwd) fwd, decltype(Table<S>::wgrad) wgrad,
                    decltype(Table<S>::block_width) block_width) {
  Table<S> t;
  t.isa = isa;
  t.lanes = lanes;
  t.fwd = fwd;
  t.wgrad = wgrad;
  t.block_width = block_width;
  return t;
}

// The kernels of the CPU's widest ISA (common/cpu_isa.h: detected once, VIDOPS_CPU_ISA caps it).
template <typename S>
Table<S> table() {
#ifdef VIDOPS_DWC_X86
  switch (cpu_isa::detect_isa()) {
    case cpu_isa::Isa::kAvx512: {
      decltype(Table<S>::fwd) f = &avx512::fwd_frames<S>;
      decltype(Table<S>::wgrad) g = &avx512::wgrad_frames<S>;
      decltype(Table<S>::block_width) bw = &avx512::fwd_block_width<S>;
      return make_table<S>("avx512", avx512::V<S>::L, f, g, bw);
    }
    case cpu_isa::Isa::kAvx2: {
      decltype(Table<S>::fwd) f = &avx2::fwd_frames<S>;
      decltype(Table<S>::wgrad) g = &avx2::wgrad_frames<S>;
      decltype(Table<S>::block_width) bw = &avx2::fwd_block_width<S>;
      return make_table<S>("avx2", avx2::V<S>::L, f, g, bw);
    }
    default: break;
  }
#endif
  decltype(Table<S>::fwd) f = &generic::fwd_frames<S>;
  decltype(Table<S>::wgrad) g = &generic::wgrad_frames<S>;
  decltype(Table<S>::block_width) bw = &generic::fwd_block_width<S>;
  return make_table<S>("base", generic::V<S>::L, f, g, bw);
}

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Tasks handed to one thread at a time: at least ~kMinParallelWork multiply-adds, so that small
// problems run inline instead of waking the thread pool (which costs more than they do).
constexpr int64_t kMinParallelWork = 1 << 17;
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_task));
}

// Copy frames [f0, f1) of a contiguous (T, H, W) plane into rows of rs elements starting at
// column `left`, zeros before and after.
template <typename S>
void pad_frames(const S* plane, const Shape& d, int64_t f0, int64_t f1, int64_t rs, int64_t left,
                std::vector<S>& buf) {
  const int64_t rows = std::max<int64_t>(f1 - f0, 0) * d.H;
  buf.resize(static_cast<size_t>(rows * rs));
  const int64_t right = rs - left - d.W;
  for (int64_t i = 0; i < rows; ++i) {
    S* row = buf.data() + i * rs;
    std::fill(row, row + left, S(0));
    std::memcpy(row + left, plane + (f0 * d.H + i) * d.W, sizeof(S) * d.W);
    std::fill(row + left + d.W, row + left + d.W + right, S(0));
  }
}

// y = depthwise_conv3d(x, k) on contiguous buffers; k (C, taps).
template <typename S>
void forward(const S* x, const S* k, S* y, const Shape& d) {
  const Table<S> tb = table<S>();
  const int64_t planes = d.N * d.C;
  const int64_t threads = at::get_num_threads();
  // Enough tasks for the threads when there are few planes; the result does not depend on it.
  const int64_t tch = std::min<int64_t>(d.T, std::max<int64_t>(1, (4 * threads + planes - 1) / planes));
  const int64_t ys = round_up(d.W, tb.block_width(d.W));  // output scratch rows: whole blocks
  const int64_t rs = ys + d.kw - 1;                         // input rows: the blocks plus the taps
  const int taps = d.taps();
  const int64_t work = ((d.T + tch - 1) / tch) * d.frame() * taps;
  at::parallel_for(0, planes * tch, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<S> scratch, out;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / tch, c = plane % d.C;
      int64_t t0, t1;
      chunk_range(task % tch, tch, d.T, t0, t1);
      if (t0 >= t1) continue;
      const int64_t f0 = std::max<int64_t>(0, t0 - d.pt());
      const int64_t f1 = std::min<int64_t>(d.T, t1 - 1 - d.pt() + d.kt);
      pad_frames<S>(x + plane * d.plane(), d, f0, f1, rs, d.pw(), scratch);
      Padded<S> xp{scratch.data(), f0, d.H, rs};
      out.resize(static_cast<size_t>((t1 - t0) * d.H * ys));
      tb.fwd(d, xp, k + c * taps, t0, t1, out.data(), ys);
      S* yp = y + plane * d.plane() + t0 * d.frame();
      for (int64_t i = 0; i < (t1 - t0) * d.H; ++i)
        std::memcpy(yp + i * d.W, out.data() + i * ys, sizeof(S) * d.W);
    }
  });
}

// gk (C, taps) = sum over n, t, h, w of g * shifted x; deterministic chunked reduction.
template <typename S>
void weight_grad(const S* g, const S* x, S* gk, const Shape& d) {
  const Table<S> tb = table<S>();
  const int taps = d.taps();
  const int64_t units = d.N * d.T;
  const int64_t chunks = wgrad_chunks(d.C, units, 64);
  const int64_t tasks = d.C * chunks;
  const int64_t gs = round_up(d.W, tb.lanes);  // grad_out rows: whole vectors, zeros past W
  const int64_t rs = gs + d.kw - 1;             // input rows: the vectors plus the taps
  std::vector<S> partial(static_cast<size_t>(tasks * taps), S(0));
  const int64_t work = ((units + chunks - 1) / chunks) * d.frame() * taps;
  at::parallel_for(0, tasks, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<S> xs, gsb;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c = task / chunks;
      int64_t u0, u1;
      chunk_range(task % chunks, chunks, units, u0, u1);
      S* pk = partial.data() + task * taps;
      for (int64_t u = u0; u < u1;) {
        const int64_t n = u / d.T, t0 = u % d.T;
        const int64_t t1 = std::min<int64_t>(d.T, t0 + (u1 - u));
        const int64_t plane = n * d.C + c;
        const int64_t f0 = std::max<int64_t>(0, t0 - d.pt());
        const int64_t f1 = std::min<int64_t>(d.T, t1 - 1 - d.pt() + d.kt);
        pad_frames<S>(x + plane * d.plane(), d, f0, f1, rs, d.pw(), xs);
        pad_frames<S>(g + plane * d.plane(), d, t0, t1, gs, 0, gsb);
        Padded<S> xp{xs.data(), f0, d.H, rs};
        Padded<S> gp{gsb.data(), t0, d.H, gs};
        tb.wgrad(d, xp, gp, t0, t1, pk);
        u += t1 - t0;
      }
    }
  });
  for (int64_t c = 0; c < d.C; ++c) {
    S* out = gk + c * taps;
    for (int i = 0; i < taps; ++i) out[i] = S(0);
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const S* p = partial.data() + (c * chunks + ch) * taps;
      for (int i = 0; i < taps; ++i) out[i] += p[i];
    }
  }
}

}  // namespace cpu_impl

namespace {

Shape check_and_shape(const char* fn, const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.dim() == 5, "vidops::", fn, ": x must be 5-D (N, C, T, H, W), got shape ", x.sizes());
  TORCH_CHECK(w.dim() == 4 || (w.dim() == 5 && w.size(1) == 1), "vidops::", fn,
              ": weight must be (C, kt, kh, kw) or (C, 1, kt, kh, kw), got shape ", w.sizes());
  const auto ws = w.dim() == 5 ? w.sizes().slice(2) : w.sizes().slice(1);
  Shape d{x.size(0), x.size(1), x.size(2), x.size(3), x.size(4), static_cast<int>(ws[0]),
          static_cast<int>(ws[1]), static_cast<int>(ws[2])};
  TORCH_CHECK(w.size(0) == d.C, "vidops::", fn, ": weight has ", w.size(0), " channels but x has ", d.C);
  TORCH_CHECK(d.kt % 2 == 1 && d.kh % 2 == 1 && d.kw % 2 == 1, "vidops::", fn,
              ": kernel sizes must be odd, got ", d.kt, "x", d.kh, "x", d.kw);
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "vidops::", fn, ": CPU kernel called with ",
              x.device(), " and ", w.device(), " tensors");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && at::isFloatingType(w.scalar_type()), "vidops::", fn,
              ": x and weight must be floating, got ", x.scalar_type(), " and ", w.scalar_type());
  return d;
}

at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

at::Tensor as_compute(const at::Tensor& t, at::ScalarType ct) {
  return t.to(ct).contiguous();
}

void check_stride1_same(const char* fn, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding) {
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK(stride[i] == 1 && padding[i] == (weight.size(i + 1) - 1) / 2, "vidops::", fn,
                " (cpu): stride and padding not implemented yet");
  }
  TORCH_CHECK(!bias.has_value(), "vidops::", fn, " (cpu): bias not implemented yet");
}

at::Tensor fwd_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   at::IntArrayRef stride, at::IntArrayRef padding) {
  check_stride1_same("_depthwise_conv3d_fwd", weight, bias, stride, padding);
  const Shape d = check_and_shape("_depthwise_conv3d_fwd", x, weight);
  const auto ct = compute_type(x.scalar_type());
  auto xc = as_compute(x, ct);
  auto wc = as_compute(weight, ct);
  auto y = at::empty(x.sizes(), xc.options().memory_format(at::MemoryFormat::Contiguous));
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(ct, "_depthwise_conv3d_fwd", [&] {
      cpu_impl::forward<scalar_t>(xc.const_data_ptr<scalar_t>(), wc.const_data_ptr<scalar_t>(),
                                  y.mutable_data_ptr<scalar_t>(), d);
    });
  }
  return ct == x.scalar_type() ? y : y.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                       const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                                       bool compute_grad_x, bool compute_grad_weight, bool) {
  check_stride1_same("_depthwise_conv3d_bwd", weight, bias, stride, padding);
  const Shape d = check_and_shape("_depthwise_conv3d_bwd", x, weight);
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "vidops::_depthwise_conv3d_bwd: grad_out has shape ",
              grad_out.sizes(), " but x has shape ", x.sizes());
  const auto ct = compute_type(x.scalar_type());
  auto gc = as_compute(grad_out, ct);
  auto wc = as_compute(weight, ct);
  // Every element of a computed gradient is written by the kernels; the others are zeros.
  const bool any = x.numel() > 0;
  const auto gx_opts = gc.options().memory_format(at::MemoryFormat::Contiguous);
  const auto gw_opts = wc.options().memory_format(at::MemoryFormat::Contiguous);
  auto gx = (any && compute_grad_x) ? at::empty(x.sizes(), gx_opts) : at::zeros(x.sizes(), gx_opts);
  auto gw = (any && compute_grad_weight) ? at::empty(weight.sizes(), gw_opts) : at::zeros(weight.sizes(), gw_opts);
  if (any) {
    AT_DISPATCH_FLOATING_TYPES(ct, "_depthwise_conv3d_bwd", [&] {
      if (compute_grad_x) {
        const int taps = d.taps();
        std::vector<scalar_t> flipped(static_cast<size_t>(d.C * taps));
        const scalar_t* k = wc.const_data_ptr<scalar_t>();
        for (int64_t c = 0; c < d.C; ++c)
          for (int i = 0; i < taps; ++i) flipped[c * taps + flipped_flat_tap(i, taps)] = k[c * taps + i];
        cpu_impl::forward<scalar_t>(gc.const_data_ptr<scalar_t>(), flipped.data(),
                                    gx.mutable_data_ptr<scalar_t>(), d);
      }
      if (compute_grad_weight) {
        auto xc = as_compute(x, ct);
        cpu_impl::weight_grad<scalar_t>(gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(),
                                        gw.mutable_data_ptr<scalar_t>(), d);
      }
    });
  }
  return {gx.to(x.scalar_type()), gw.to(weight.scalar_type()), x.new_empty({0})};
}

}  // namespace

// The ISA the CPU kernels use here (for `python -m vidops.info` and the tests).
std::string cpu_isa() { return cpu_impl::table<float>().isa; }

}  // namespace dwc
}  // namespace vidops

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_depthwise_conv3d_cpu_isa() -> str", [] { return vidops::dwc::cpu_isa(); });
}

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_depthwise_conv3d_fwd", &vidops::dwc::fwd_cpu);
  m.impl("_depthwise_conv3d_bwd", &vidops::dwc::bwd_cpu);
}
