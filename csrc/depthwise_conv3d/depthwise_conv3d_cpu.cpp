// CPU kernels of the depthwise 3-D convolution (operators.md §2): OpenMP tasks through
// at::parallel_for, micro-kernels in depthwise_conv3d_cpu_kernels.inc compiled for the baseline
// ISA, AVX2+FMA and AVX-512 and picked once per process by common/cpu_isa.h (VIDOPS_CPU_ISA=base|avx2
// caps it, e.g. to test all three on one machine).
//   NCDHW x, vectorised along W; tasks (n, c) plane x output-frame chunk:
//     forward: the needed source rows of the plane are copied into padded, phase-split rows
//              (stride along W becomes unit-stride loads), then register blocks (rows x vectors)
//              sweep the outputs; 3x3 (stride 1 and 2), 1x1 and 7x7 kernels run instances with
//              their extents and strides fixed at compile time, the rest a generic one.
//     grad_x:  the same correlation of grad_y with the kernel reversed on every axis, grad_y read
//              dilated by the stride (the transposed convolution).
//     grad_w:  per channel, the N*To output frames are cut into shape-determined chunks
//              (dwc::wgrad_chunks), each summed by one task into its own partial buffer, then the
//              partials are added in chunk order: the same bits for any thread count.
//   channels_last_3d x, vectorised along C (the output and grad_x channels_last_3d too):
//     forward and grad_x (AVX2, AVX-512; kw 3, 5, 7 at stride 1, kw 3 at stride 2): the source
//              rows are copied into channel-blocked rows (depthwise_conv3d_cpu_blocked.inc: per
//              block of 16 or 8 channels, the W-padded columns as aligned vectors), runs of up to
//              14 outputs accumulate in registers; tasks (n, output row block, channel block
//              group), each sweeping the output frames through a window of padded source frames.
//              The forward at stride 2 along W reads the full channel blocks of x in place
//              instead (the output frames innermost where a block's source rows fit L1).
//     otherwise (kw 1 or even, the baseline ISA): the rows copied with W padding and C padded to
//              whole vectors, the kernel transposed to (taps, C), tasks (n, output frame, row block);
//     grad_w: chunks of (n, row block, t) units, rows of x and grad_y padded along W only (pixel
//              stride C, one copy per row).
//   kt x 1 x 1 kernels at unit stride along H and W with no H/W padding (X3D's stem), either
//   layout: forward and grad_x read the source frames in place, an output row being a weighted sum
//   of whole source rows (depthwise_conv3d_cpu_temporal.inc; conv_temporal).
// float16/bfloat16 inputs are computed in float32 (converted copies) and cast back. grad_bias is
// the sum of grad_y over (N, To, Ho, Wo).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "common/cpu_buffer_cache.h"
#include "common/cpu_isa.h"
#include "depthwise_conv3d/depthwise_conv3d_math.h"

namespace vidops {
namespace dwc {
namespace cpu_impl {

// Output o of an axis, tap j: virtual source index v = o*s + j - p, source index v/d when
// v % d == 0 and v/d < the source length (see the .inc's header).
struct Geom {
  int64_t N, C, T, H, W;  // source (x, or grad_y for grad_x)
  int64_t To, Ho, Wo;     // output
  int kt, kh, kw;
  int st, sh, sw;
  int dt, dh, dw;
  int64_t pt, ph, pw;
  int taps() const { return kt * kh * kw; }
  int64_t Hv() const { return (H - 1) * dh + 1; }
};

// Source rows of a task's scratch: frames [f0, ...) of `nrows` rows from r0, rows of rs elements,
// the frames one after the other from base, or where frames[f - f0] points; off[e]: where tap e
// of output column 0 reads in a phase-split NCDHW row.
template <typename S>
struct Rows {
  const S* base;
  int64_t f0, r0, nrows, rs;
  const int64_t* off;
  const S* const* frames = nullptr;
  inline const S* row(int64_t f, int64_t r) const {
    return frames ? frames[f - f0] + (r - r0) * rs : base + ((f - f0) * nrows + (r - r0)) * rs;
  }
  // the NCDHW kernels' rows: frames one after the other from base, r0 = 0
  inline const S* prow(int64_t f, int64_t r) const { return base + ((f - f0) * nrows + r) * rs; }
};

inline int64_t src_index(int64_t v, int dd, int64_t n) {
  if (v < 0) return -1;
  if (dd == 1) return v < n ? v : -1;
  if (v % dd) return -1;
  const int64_t i = v / dd;
  return i < n ? i : -1;
}

// Whether g is the grad_x of a forward with kw = 3, stride 2 and padding 1 along W (grad_y read
// dilated by 2): the blocked kernels then keep grad_y's rows compact (one zero column each side)
// and skip the inserted zeros (depthwise_conv3d_cpu_blocked.inc, clbt2_rows).
inline bool clb_transposed_s2(const Geom& g) { return g.kw == 3 && g.sw == 1 && g.dw == 2 && g.pw == 1; }

// Rows the in-place blocked kernels (depthwise_conv3d_cpu_blocked.inc, clbi_rows) take: kw = 3 with
// at most one padding column each side of a row, no dilation along W. clbi_runs: the blocked
// forward reads g's source in place at stride 2 along W (X3D's stride-2 layers).
inline bool clbi_row_fits(const Geom& g) {
  const int64_t right_pad = (g.Wo - 1) * g.sw + g.kw - 1 - g.pw - (g.W - 1);
  return g.kw == 3 && g.dw == 1 && g.pw <= 1 && right_pad <= 1 && g.kt * g.kh <= 64;
}
inline bool clbi_runs(const Geom& g) { return g.sw == 2 && clbi_row_fits(g); }

// Whether the blocked forward reads g's source in place at stride 1 along W, the output frames
// innermost (clbi_frames): the rows clbi_row_fits takes, at small frames, where a block's kt * kh
// source rows (lines of 64 B) take at most 8 KB of L1. At larger frames the copy's compact rows
// win. Measured (AVX-512, 2 threads, x in cache, alternating rounds against the copy; forward 41
// rounds, grad_x 21): C 216 14^2 forward 1.15x, grad_x 1.09x; C 432 7^2 0.97x / 1.05x; in place at
// C 108 28^2 (16 KB) and C 54 56^2: 0.95x.
inline bool clbi_unit_runs(const Geom& g) {
  return g.sw == 1 && clbi_row_fits(g) && g.kt * g.kh * g.W * 64 <= (8 << 10);
}

// Prefetches channels [ca, cb) of pixels [j0, j1) of a dense channels_last row (pixel stride C) into L1, in
// address order.
template <typename S>
inline void clb_prefetch_pixels(const S* s, int64_t C, int64_t ca, int64_t cb, int64_t j0, int64_t j1) {
  constexpr int64_t kLine = 64 / sizeof(S);
  if (ca == 0 && cb == C) {
    for (int64_t i = j0 * C; i < j1 * C; i += kLine) __builtin_prefetch(s + i);
    return;
  }
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t i = j * C + ca; i < j * C + cb; i += kLine) __builtin_prefetch(s + i);
}

// The channel blocks of a blocked channels_last row (depthwise_conv3d_cpu_blocked.inc): blocks of
// L channels, the last one of L/2 lanes when it has at most L/2 channels (L >= 8); a row is the
// blocks one after the other, each `cols` vectors; the kernel likewise with `taps` vectors a block.
struct ClBlocks {
  int64_t C, cols;
  int taps, L, nfull;
  bool half;
  static ClBlocks make(int64_t C, int64_t cols, int taps, int L) {
    ClBlocks b{C, cols, taps, L, static_cast<int>(C / L), false};
    const int64_t rem = C % L;
    if (rem > 0 && L >= 8 && rem <= L / 2)
      b.half = true;
    else if (rem > 0)
      ++b.nfull;
    return b;
  }
  int blocks() const { return nfull + (half ? 1 : 0); }
  int lanes(int b) const { return b < nfull ? L : L / 2; }
  int64_t c0(int b) const { return static_cast<int64_t>(b) * L; }
  int64_t row_offset(int b) const { return static_cast<int64_t>(b) * cols * L; }
  int64_t k_offset(int b) const { return static_cast<int64_t>(b) * taps * L; }
  int64_t row_elems() const { return nfull * cols * L + (half ? cols * (L / 2) : 0); }
  int64_t k_elems() const { return static_cast<int64_t>(nfull) * taps * L + (half ? taps * (L / 2) : 0); }
};

namespace generic {
#define VIDOPS_DWC_VEC_BYTES 16
#include "depthwise_conv3d/depthwise_conv3d_cpu_kernels.inc"
#include "depthwise_conv3d/depthwise_conv3d_cpu_temporal.inc"
#undef VIDOPS_DWC_VEC_BYTES
}  // namespace generic

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VIDOPS_DWC_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define VIDOPS_DWC_VEC_BYTES 32
#include "depthwise_conv3d/depthwise_conv3d_cpu_kernels.inc"
#include "depthwise_conv3d/depthwise_conv3d_cpu_blocked.inc"
#include "depthwise_conv3d/depthwise_conv3d_cpu_temporal.inc"
#undef VIDOPS_DWC_VEC_BYTES
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace avx512 {
#define VIDOPS_DWC_VEC_BYTES 64
#include "depthwise_conv3d/depthwise_conv3d_cpu_kernels.inc"
#include "depthwise_conv3d/depthwise_conv3d_cpu_blocked.inc"
#include "depthwise_conv3d/depthwise_conv3d_cpu_temporal.inc"
#undef VIDOPS_DWC_VEC_BYTES
}  // namespace avx512
#pragma GCC pop_options
#endif

template <typename S>
struct Table {
  const char* isa;
  int lanes;
  void (*fwd)(const Geom&, const Rows<S>&, const S*, S, int64_t, int64_t, S*, int64_t);
  void (*wgrad)(const Geom&, const Rows<S>&, const Rows<S>&, int64_t, int64_t, S*);
  int (*block_width)(int64_t W);
  void (*cl_fwd)(const Geom&, const Rows<S>&, const S*, const S*, int64_t, int64_t, int64_t, int64_t, S*);
  void (*cl_wgrad)(const Geom&, const Rows<S>&, const S*, int64_t, int64_t, int64_t, int64_t, int64_t, S*);
  // the blocked channels_last forward (null: none for this ISA)
  bool (*clb_fwd)(const Geom&, const ClBlocks&, int, int, const Rows<S>&, const S*, const S*, int64_t, int64_t,
                  int64_t, S*);
  void (*clb_pad)(const S*, const int64_t*, int64_t, int, int64_t, const ClBlocks&, int, int, S*);
  // the blocked forward's full channel blocks read in place where clbi_runs (null: none for this ISA)
  void (*clbi_fwd)(const Geom&, const ClBlocks&, int, int, const Rows<S>&, const S*, const S*, int64_t, int64_t,
                   int64_t, S*);
  // the same for every output frame of a sample, the frames innermost (clbi_frames)
  void (*clbi_all)(const Geom&, const ClBlocks&, int, int, const Rows<S>&, const S*, const S*, int64_t, int64_t, S*);
  // clbi_all at stride 1 along W, where clbi_unit_runs (null: none for this ISA)
  void (*clbi_all_s1)(const Geom&, const ClBlocks&, int, int, const Rows<S>&, const S*, const S*, int64_t, int64_t,
                      S*);
  // the temporal-only rows (depthwise_conv3d_cpu_temporal.inc)
  void (*tmp_row)(S*, const S* const*, const S* const*, int, const S*, int64_t);
  void (*tmp_row_cl)(S*, const S* const*, const S* const*, int, const S*, int64_t, int64_t);
  void (*tmp_wgrad)(S*, const S*, const S* const*, const int*, int, int64_t, int64_t);
};

#define VIDOPS_DWC_TABLE(NS, NAME, CLB_FWD, CLB_PAD, CLBI_FWD, CLBI_ALL, CLBI_ALL_S1)             \
  Table<S> {                                                                                        \
    NAME, NS::V<S>::L, &NS::fwd_frames<S>, &NS::wgrad_frames<S>, &NS::fwd_block_width<S>,           \
        &NS::cl_fwd_rows<S>, &NS::cl_wgrad_frame<S>, CLB_FWD, CLB_PAD, CLBI_FWD, CLBI_ALL, CLBI_ALL_S1, \
        &NS::temporal_row<S>, &NS::temporal_row_cl<S>, &NS::temporal_wgrad_row<S>                   \
  }

template <typename S>
Table<S> table_of(cpu_isa::Isa isa) {
#ifdef VIDOPS_DWC_X86
  if (isa == cpu_isa::Isa::kAvx512)
    return VIDOPS_DWC_TABLE(avx512, "avx512", &avx512::clb_fwd_rows<S>, &avx512::clb_pad_row<S>,
                            (&avx512::clbi_rows<S, 3, 2>), (&avx512::clbi_frames<S, 3, 2>),
                            (&avx512::clbi_frames<S, 3, 1>));
  // AVX2: no in-place stride-1 forward (measured with AVX-512 only)
  if (isa == cpu_isa::Isa::kAvx2)
    return VIDOPS_DWC_TABLE(avx2, "avx2", &avx2::clb_fwd_rows<S>, &avx2::clb_pad_row<S>, (&avx2::clbi_rows<S, 3, 2>),
                            (&avx2::clbi_frames<S, 3, 2>), nullptr);
#endif
  (void)isa;
  return VIDOPS_DWC_TABLE(generic, "base", nullptr, nullptr, nullptr, nullptr, nullptr);
}

// The kernels of the CPU's widest ISA (common/cpu_isa.h: detected once, VIDOPS_CPU_ISA caps it).
template <typename S>
Table<S> table() { return table_of<S>(cpu_isa::detect_isa()); }

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Channels_last kernels: 256-bit vectors at most. Measured on X3D-M's layers (AMD EPYC, AVX-512):
// the AVX2 kernels ran 1.0-1.5x faster than the AVX-512 ones (512-bit loads at C-vector
// strides split cache lines more, the FMA throughput is the same) and pad C less (C = 54: 56,
// not 64 floats).
template <typename S>
Table<S> cl_table() {
  Table<S> t = table<S>();
  if (std::string(t.isa) == "avx512") return table_of<S>(cpu_isa::Isa::kAvx2);
  return t;
}

// Tasks handed to one thread at a time: at least ~kMinParallelWork multiply-adds, so that small
// problems run inline instead of waking the thread pool (which costs more than they do).
constexpr int64_t kMinParallelWork = 1 << 17;
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_task));
}

// The source range [i0, i1) read by outputs [o0, o1) of an axis (empty: i0 == i1).
inline void source_range(int64_t o0, int64_t o1, int s, int k, int64_t p, int d, int64_t n, int64_t& i0,
                         int64_t& i1) {
  const int64_t v0 = o0 * s - p, v1 = (o1 - 1) * s - p + k;  // virtual [v0, v1)
  i0 = v0 <= 0 ? 0 : (v0 + d - 1) / d;
  i1 = v1 <= 0 ? 0 : std::min<int64_t>(n, (v1 - 1) / d + 1);
  i0 = std::min(i0, n);
  if (i1 < i0) i1 = i0;
}

// The elements [lo, hi) of phase q (of sw, rows of rsq) that hold a source column (0 <= i*sw + q - pw < W).
inline void phase_range(int64_t W, int64_t pw, int sw, int q, int64_t rsq, int64_t& lo, int64_t& hi) {
  const int64_t first = pw - q, last = W - 1 + pw - q;
  lo = first <= 0 ? 0 : (first + sw - 1) / sw;
  hi = std::min<int64_t>(last < 0 ? 0 : last / sw + 1, rsq);
  lo = std::min(lo, hi);
}

// One source row of W elements as `sw` phase rows of rsq elements at dst: element i of phase q
// is virtual column i*sw + q - pw.
template <typename S>
void build_row(const S* src, int64_t W, int dw, int64_t pw, int sw, int64_t rsq, S* dst) {
  if (sw == 1 && dw == 1 && pw >= 0 && pw + W <= rsq) {
    std::fill(dst, dst + pw, S(0));
    std::memcpy(dst + pw, src, sizeof(S) * W);
    std::fill(dst + pw + W, dst + rsq, S(0));
    return;
  }
  if (dw == 1 && sw == 2) {  // both phases in one pass: a loop the compiler vectorises
    int64_t lo[2], hi[2];
    for (int q = 0; q < 2; ++q) {
      phase_range(W, pw, 2, q, rsq, lo[q], hi[q]);
      S* d = dst + q * rsq;
      std::fill(d, d + lo[q], S(0));
      std::fill(d + hi[q], d + rsq, S(0));
    }
    const int64_t a = std::max(lo[0], lo[1]), b = std::max(a, std::min(hi[0], hi[1]));
    S* __restrict d0 = dst;
    S* __restrict d1 = dst + rsq;
    const S* __restrict s0 = src + a * 2 - pw;
    for (int64_t i = 0; i < b - a; ++i) {
      d0[a + i] = s0[2 * i];
      d1[a + i] = s0[2 * i + 1];
    }
    for (int q = 0; q < 2; ++q) {  // the columns only one phase has (at the row's ends)
      for (int64_t i = lo[q]; i < std::min(a, hi[q]); ++i) dst[q * rsq + i] = src[i * 2 + q - pw];
      for (int64_t i = std::max(b, lo[q]); i < hi[q]; ++i) dst[q * rsq + i] = src[i * 2 + q - pw];
    }
    return;
  }
  if (dw == 1) {  // phase q, element i: source column i*sw + q - pw, inside for i in [lo, hi)
    for (int q = 0; q < sw; ++q) {
      S* d = dst + q * rsq;
      int64_t lo, hi;
      phase_range(W, pw, sw, q, rsq, lo, hi);
      std::fill(d, d + lo, S(0));
      const S* sq = src + q - pw;
      for (int64_t i = lo; i < hi; ++i) d[i] = sq[i * sw];
      std::fill(d + hi, d + rsq, S(0));
    }
    return;
  }
  if (sw == 1) {  // dilated source (grad_x): zeros, then the source columns at j*dw + pw
    std::fill(dst, dst + rsq, S(0));
    for (int64_t j = 0; j < W; ++j) {
      const int64_t P = j * dw + pw;
      if (P >= 0 && P < rsq) dst[P] = src[j];
    }
    return;
  }
  for (int q = 0; q < sw; ++q)
    for (int64_t i = 0; i < rsq; ++i) {
      const int64_t j = src_index(i * sw + q - pw, dw, W);
      dst[q * rsq + i] = j >= 0 ? src[j] : S(0);
    }
}

// One channels_last source row (W pixels of C) as `cols` virtual columns of cp elements.
template <typename S>
void build_cl_row(const S* src, int64_t W, int64_t C, int dw, int64_t pw, int64_t cols, int64_t cp, S* dst) {
  if (cp == C && dw == 1) {
    const int64_t lo = std::min<int64_t>(std::max<int64_t>(pw, 0), cols);
    const int64_t hi = std::max<int64_t>(lo, std::min<int64_t>(cols, pw + W));
    std::fill(dst, dst + lo * C, S(0));
    if (hi > lo) std::memcpy(dst + lo * C, src + (lo - pw) * C, sizeof(S) * (hi - lo) * C);
    std::fill(dst + hi * C, dst + cols * C, S(0));
    return;
  }
  for (int64_t P = 0; P < cols; ++P) {
    S* d = dst + P * cp;
    const int64_t j = src_index(P - pw, dw, W);
    if (j >= 0) {
      std::memcpy(d, src + j * C, sizeof(S) * C);
      std::fill(d + C, d + cp, S(0));
    } else {
      std::fill(d, d + cp, S(0));
    }
  }
}

// y (N, C, To, Ho, Wo) = the correlation of g on contiguous buffers; k (C, taps), bias (C) or null.
template <typename S>
void conv_ncdhw(const S* x, const S* k, const S* bias, S* y, const Geom& g) {
  const Table<S> tb = table<S>();
  const int64_t planes = g.N * g.C;
  const int64_t threads = at::get_num_threads();
  // Enough tasks for the threads when there are few planes; the result does not depend on it.
  const int64_t tch = std::min<int64_t>(g.To, std::max<int64_t>(1, (4 * threads + planes - 1) / planes));
  const int64_t ys = round_up(g.Wo, tb.block_width(g.Wo));  // output scratch rows: whole blocks
  const int64_t rsq = ys + (g.kw - 1) / g.sw;                // phase rows: the blocks plus the taps
  const int64_t rs = g.sw * rsq;
  std::vector<int64_t> off(g.kw);
  for (int e = 0; e < g.kw; ++e) off[e] = (e % g.sw) * rsq + e / g.sw;
  const int taps = g.taps();
  const int64_t work = ((g.To + tch - 1) / tch) * g.Ho * g.Wo * taps;
  const int64_t src_plane = g.T * g.H * g.W, out_frame = g.Ho * g.Wo;
  at::parallel_for(0, planes * tch, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<S> scratch, out;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / tch, c = plane % g.C;
      int64_t t0, t1, f0, f1;
      chunk_range(task % tch, tch, g.To, t0, t1);
      if (t0 >= t1) continue;
      source_range(t0, t1, g.st, g.kt, g.pt, g.dt, g.T, f0, f1);
      scratch.resize(static_cast<size_t>(std::max<int64_t>(1, (f1 - f0) * g.H * rs)));
      const S* xs = x + plane * src_plane;
      for (int64_t i = 0; i < (f1 - f0) * g.H; ++i)
        build_row<S>(xs + (f0 * g.H + i) * g.W, g.W, g.dw, g.pw, g.sw, rsq, scratch.data() + i * rs);
      Rows<S> xp{scratch.data(), f0, 0, g.H, rs, off.data()};
      out.resize(static_cast<size_t>((t1 - t0) * g.Ho * ys));
      tb.fwd(g, xp, k + c * taps, bias ? bias[c] : S(0), t0, t1, out.data(), ys);
      S* yp = y + plane * g.To * out_frame + t0 * out_frame;
      for (int64_t i = 0; i < (t1 - t0) * g.Ho; ++i)
        std::memcpy(yp + i * g.Wo, out.data() + i * ys, sizeof(S) * g.Wo);
    }
  });
}

// gk (C, taps) = sum over n, t, h, w of grad_y * strided x; deterministic chunked reduction.
template <typename S>
void wgrad_ncdhw(const S* gy, const S* x, S* gk, const Geom& g) {
  const Table<S> tb = table<S>();
  const int taps = g.taps();
  const int64_t units = g.N * g.To;
  const int64_t chunks = wgrad_chunks(g.C, units, 64);
  const int64_t tasks = g.C * chunks;
  const int64_t gs = round_up(g.Wo, tb.lanes);  // grad_y rows: whole vectors, zeros past Wo
  const int64_t rsq = gs + (g.kw - 1) / g.sw;
  const int64_t rs = g.sw * rsq;
  std::vector<int64_t> off(g.kw);
  for (int e = 0; e < g.kw; ++e) off[e] = (e % g.sw) * rsq + e / g.sw;
  std::vector<S> partial(static_cast<size_t>(tasks * taps), S(0));
  const int64_t work = ((units + chunks - 1) / chunks) * g.Ho * g.Wo * taps;
  at::parallel_for(0, tasks, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<S> xs, gsb;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c = task / chunks;
      int64_t u0, u1;
      chunk_range(task % chunks, chunks, units, u0, u1);
      S* pk = partial.data() + task * taps;
      for (int64_t u = u0; u < u1;) {
        const int64_t n = u / g.To, t0 = u % g.To;
        const int64_t t1 = std::min<int64_t>(g.To, t0 + (u1 - u));
        const int64_t plane = n * g.C + c;
        int64_t f0, f1;
        source_range(t0, t1, g.st, g.kt, g.pt, 1, g.T, f0, f1);
        xs.resize(static_cast<size_t>(std::max<int64_t>(1, (f1 - f0) * g.H * rs)));
        const S* xpl = x + plane * g.T * g.H * g.W;
        for (int64_t i = 0; i < (f1 - f0) * g.H; ++i)
          build_row<S>(xpl + (f0 * g.H + i) * g.W, g.W, 1, g.pw, g.sw, rsq, xs.data() + i * rs);
        gsb.resize(static_cast<size_t>((t1 - t0) * g.Ho * gs));
        const S* gpl = gy + plane * g.To * g.Ho * g.Wo;
        for (int64_t i = 0; i < (t1 - t0) * g.Ho; ++i)
          build_row<S>(gpl + (t0 * g.Ho + i) * g.Wo, g.Wo, 1, 0, 1, gs, gsb.data() + i * gs);
        Rows<S> xp{xs.data(), f0, 0, g.H, rs, off.data()};
        Rows<S> gp{gsb.data(), t0, 0, g.Ho, gs, nullptr};
        tb.wgrad(g, xp, gp, t0, t1, pk);
        u += t1 - t0;
      }
    }
  });
  for (int64_t c = 0; c < g.C; ++c) {
    S* out = gk + c * taps;
    for (int i = 0; i < taps; ++i) out[i] = S(0);
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const S* p = partial.data() + (c * chunks + ch) * taps;
      for (int i = 0; i < taps; ++i) out[i] += p[i];
    }
  }
}

// The (taps, cp) transposed kernel (zeros past C) of a (C, taps) one.
template <typename S>
std::vector<S> transpose_kernel(const S* k, int64_t C, int taps, int64_t cp) {
  std::vector<S> kT(static_cast<size_t>(taps * cp), S(0));
  for (int64_t c = 0; c < C; ++c)
    for (int i = 0; i < taps; ++i) kT[i * cp + c] = k[c * taps + i];
  return kT;
}

// Source row (n, t, h) of an (N, T, H, W, C) tensor whose element (n, t, h, w, c) is at
// src[n*sN + t*sT + h*sH + w*sW + c*sC] (s: that row's start), as `cols` virtual columns of cp
// channels: W zero padding pw, dilation dw, C padded with zeros.
template <typename S>
void pad_cl_row(const S* s, const int64_t* sd, int64_t W, int64_t C, int dw, int64_t pw, int64_t cols, int64_t cp,
                S* d) {
  if (sd[4] == 1 && sd[3] == C) return build_cl_row<S>(s, W, C, dw, pw, cols, cp, d);
  std::fill(d, d + cols * cp, S(0));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t w = 0; w < W; ++w) {
      const int64_t P = w * dw + pw;
      if (P >= 0 && P < cols) d[P * cp + c] = s[c * sd[4] + w * sd[3]];
    }
}

// The padded channels_last rows of the source frames one output frame reads, kept for the next
// output frames (which read most of the same frames): `slots` frames of `rows` rows of rs elements,
// from a 64-byte aligned base.
template <typename S>
struct FrameWindow {
  std::vector<S>& buf = storage();  // kept by the thread between calls: no page faults per call
  S* base = nullptr;
  std::vector<int64_t> frame;  // the source frame in each slot, -1: none
  int64_t rows = 0, rs = 0;

  void reset(int slots, int64_t nrows, int64_t row_elems) {
    rows = nrows;
    rs = row_elems;
    constexpr int64_t kAlign = 64 / sizeof(S);
    buf.resize(static_cast<size_t>(std::max<int64_t>(1, slots * nrows * row_elems) + kAlign));
    const auto addr = reinterpret_cast<uintptr_t>(buf.data());
    base = buf.data() + ((64 - addr % 64) % 64) / sizeof(S);
    frame.assign(static_cast<size_t>(slots), -1);
  }

  static std::vector<S>& storage() {
    static thread_local std::vector<S> held;
    return held;
  }

  // ptrs[f - f0] for the frames [f0, f1), padding the ones not held (into slots of frames outside)
  // with pad_row(f, r, dst): row r of the window of source frame f.
  template <typename PadRow>
  void fetch(int64_t f0, int64_t f1, const PadRow& pad_row, const S** ptrs) {
    const int slots = static_cast<int>(frame.size());
    for (int64_t f = f0; f < f1; ++f) {
      int slot = -1;
      for (int i = 0; i < slots && slot < 0; ++i)
        if (frame[i] == f) slot = i;
      if (slot < 0) {
        for (int i = 0; i < slots && slot < 0; ++i)
          if (frame[i] < f0 || frame[i] >= f1) slot = i;
        TORCH_CHECK(slot >= 0, "vidops::depthwise_conv3d (cpu): frame window too small");
        frame[slot] = f;
        S* d = base + slot * rows * rs;
        for (int64_t r = 0; r < rows; ++r) pad_row(f, r, d + r * rs);
      }
      ptrs[f - f0] = base + slot * rows * rs;
    }
  }
};

// Output rows per block of the channels_last kernels: the block's source rows of kt frames in
// about kWindowBytes, so that the frame window stays in L2.
constexpr int64_t kWindowBytes = 384 << 10;
inline int64_t cl_block_rows(const Geom& g, int64_t rs, int64_t elem) {
  const int64_t src_rows = std::max<int64_t>(1, kWindowBytes / (elem * rs * g.kt));
  const int64_t hb = std::min<int64_t>(g.Ho, std::max<int64_t>(1, (src_rows * g.dh - g.kh) / g.sh + 1));
  const int64_t blocks = (g.Ho + hb - 1) / hb;
  return (g.Ho + blocks - 1) / blocks;  // blocks of equal height: no short last block
}

// Output rows [h0, h1) of row block blk (hb rows a block) and the source rows [r0, r1) they read.
struct RowBlock {
  int64_t h0, h1, r0, r1;
};
inline RowBlock row_block(const Geom& g, int64_t blk, int64_t hb) {
  RowBlock b{blk * hb, std::min<int64_t>(g.Ho, (blk + 1) * hb), 0, 0};
  source_range(b.h0, b.h1, g.sh, g.kh, g.ph, g.dh, g.H, b.r0, b.r1);
  return b;
}

// bias (C) zero-padded to n >= C elements, or empty for no bias.
template <typename S>
std::vector<S> padded_bias(const S* bias, int64_t C, int64_t n) {
  std::vector<S> bp;
  if (bias) {
    bp.assign(static_cast<size_t>(n), S(0));
    std::copy(bias, bias + C, bp.begin());
  }
  return bp;
}

// Whether the blocked channels_last forward has a micro-kernel for g (kw, sw, tap rows). kw = 1
// stays on the plain kernels: with no W taps to share there is nothing for the blocked copy to pay
// for, and the plain rows are one memcpy each (X3D's 5x1x1 stem, before conv_temporal took it:
// 1.26x oneDNN against 0.98x blocked).
inline bool blocked_kernel_for(const Geom& g) {
  const bool unit = g.sw == 1 && (g.kw == 3 || g.kw == 5 || g.kw == 7);
  return g.kt * g.kh <= 64 && (unit || (g.sw == 2 && g.kw == 3));
}

// conv_cl through channel-blocked source rows (depthwise_conv3d_cpu_blocked.inc). Tasks: (n,
// output row block, channel block group); a task runs every output frame in order through a window
// of padded source frames, so each source row's part is padded once (plus the row halo).
template <typename S>
void conv_cl_blocked(const Table<S>& tb, const S* x, const int64_t* sd, const S* k, const S* bias, S* y,
                     const Geom& g) {
  const int taps = g.taps();
  // the source rows' virtual columns: padded and dilated, or compact for clb_transposed_s2
  const bool t2 = clb_transposed_s2(g);
  const int64_t cols = t2 ? g.W + 2 : (g.Wo - 1) * g.sw + g.kw;
  const int cdw = t2 ? 1 : g.dw;
  const int64_t cpw = t2 ? 1 : g.pw;
  const ClBlocks bl = ClBlocks::make(g.C, cols, taps, tb.lanes);
  std::vector<S> kB(static_cast<size_t>(bl.k_elems()), S(0));
  for (int b = 0; b < bl.blocks(); ++b)
    for (int l = 0; l < bl.lanes(b) && bl.c0(b) + l < g.C; ++l)
      for (int i = 0; i < taps; ++i) kB[bl.k_offset(b) + i * bl.lanes(b) + l] = k[(bl.c0(b) + l) * taps + i];
  const std::vector<S> bp = padded_bias(bias, g.C, bl.blocks() * bl.L);
  const int64_t rs = round_up(bl.row_elems(), bl.L);  // whole vectors: every row starts aligned
  // Tasks split the output rows first; only where that gives too few tasks (small frames) are the
  // channel blocks split into groups too (each group streams the whole input, which pays only when
  // it stays in cache). A group's part of a row is contiguous, so its window holds more rows.
  const int64_t threads = at::get_num_threads();
  const int64_t hb_full = cl_block_rows(g, rs, sizeof(S));
  const int64_t units_full = g.N * ((g.Ho + hb_full - 1) / hb_full);
  const int64_t groups =
      std::min<int64_t>(bl.blocks(), std::max<int64_t>(1, (4 * threads + units_full - 1) / units_full));
  const int64_t group_blocks = (bl.blocks() + groups - 1) / groups;
  const int64_t hb = cl_block_rows(g, group_blocks * bl.cols * bl.L, sizeof(S));
  const int64_t blocks = (g.Ho + hb - 1) / hb;
  const int64_t units = g.N * blocks;
  const int64_t work = g.To * hb * g.Wo * group_blocks * bl.L * taps;
  // At stride 2 along W the copy moves 4x the output's size: there the full channel blocks of a
  // dense source are read in place (clbi_rows); only the last, partial block is copied (its
  // vectors would read past C, and past the tensor's end at its last pixel). Measured on X3D-M's
  // stride-2 layers (2 threads, 48 MB written between calls): 1.07-1.31x faster than the copy,
  // 0.99-1.11x with x in cache.
  // At stride 1 the copy's compact rows win when x is in cache (C 108, 28^2: 0.35 vs 0.40 ms),
  // except at small frames (clbi_unit_runs).
  const bool dense = !t2 && sd[4] == 1 && sd[3] == g.C;
  const bool in_place_s1 = dense && tb.clbi_all_s1 != nullptr && clbi_unit_runs(g);
  const bool in_place = in_place_s1 || (dense && tb.clbi_fwd != nullptr && clbi_runs(g));
  const int64_t in_place_blocks = in_place ? g.C / bl.L : 0;
  // In place, a task runs each output row of a block through all the output frames (clbi_frames)
  // where the block's kt * kh source rows stay in L1 (their lines of 64 B: within 24 KB), and the
  // frames outermost otherwise. Measured (2 threads, x in cache, 41 alternating rounds): C 216
  // 28^2 -> 14^2 1.18x, C 432 14^2 -> 7^2 1.15x the frames outermost; C 108 56^2 -> 28^2 0.98x
  // (rows past L1; the frames-outermost order also prefetches the newest frame's rows).
  const bool frames_inner = in_place && g.kt * g.kh * g.W * 64 <= (24 << 10);  // always where in_place_s1
  at::parallel_for(0, units * groups, grain_for(work), [&](int64_t begin, int64_t end) {
    FrameWindow<S> win;
    std::vector<const S*> ptrs(static_cast<size_t>(g.kt)), frames(static_cast<size_t>(g.kt));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t u = task / groups, n = u / blocks;
      const auto [h0, h1, r0, r1] = row_block(g, u % blocks, hb);
      int64_t b0, b1;
      chunk_range(task % groups, groups, bl.blocks(), b0, b1);
      const int64_t bc = std::min(b1, std::max(b0, in_place_blocks));  // [b0, bc) in place, [bc, b1) copied
      win.reset(g.kt, r1 - r0, rs);
      const S* sample = x + n * sd[0];
      const bool all = bc > b0 && frames_inner;
      if (all) {
        std::vector<const S*> fr(static_cast<size_t>(g.T));
        for (int64_t f = 0; f < g.T; ++f) fr[f] = sample + f * sd[1];
        Rows<S> xd{nullptr, 0, 0, g.H, sd[2], nullptr, fr.data()};
        (in_place_s1 ? tb.clbi_all_s1 : tb.clbi_all)(g, bl, static_cast<int>(b0), static_cast<int>(bc), xd, kB.data(),
                                                      bias ? bp.data() : nullptr, h0, h1,
                                                      y + n * g.To * g.Ho * g.Wo * g.C);
      }
      for (int64_t t = 0; t < g.To; ++t) {
        int64_t f0, f1;
        source_range(t, t + 1, g.st, g.kt, g.pt, g.dt, g.T, f0, f1);
        S* yt = y + (n * g.To + t) * g.Ho * g.Wo * g.C;
        if (bc > b0 && !all) {
          for (int64_t f = f0; f < f1; ++f) frames[f - f0] = sample + f * sd[1];
          // the task's channels of the newest frame's rows, in address order (as clb_pad_row does
          // before its copy): measured 5-15% faster than the whole rows (groups split the channels)
          if (f1 > f0)
            for (int64_t r = r0; r < r1; ++r)
              clb_prefetch_pixels(sample + (f1 - 1) * sd[1] + r * sd[2], g.C, bl.c0(static_cast<int>(b0)),
                                  bl.c0(static_cast<int>(bc)), 0, g.W);
          Rows<S> xd{nullptr, f0, 0, g.H, sd[2], nullptr, frames.data()};
          tb.clbi_fwd(g, bl, static_cast<int>(b0), static_cast<int>(bc), xd, kB.data(), bias ? bp.data() : nullptr,
                      t, h0, h1, yt);
        }
        if (b1 > bc) {
          win.fetch(f0, f1, [&](int64_t f, int64_t r, S* d) {
            tb.clb_pad(sample + f * sd[1] + (r0 + r) * sd[2], sd, g.W, cdw, cpw, bl, static_cast<int>(bc),
                       static_cast<int>(b1), d);
          }, ptrs.data());
          Rows<S> xp{nullptr, f0, r0, r1 - r0, rs, nullptr, ptrs.data()};
          const bool ran = tb.clb_fwd(g, bl, static_cast<int>(bc), static_cast<int>(b1), xp, kB.data(),
                                      bias ? bp.data() : nullptr, t, h0, h1, yt);
          TORCH_CHECK(ran, "vidops::depthwise_conv3d (cpu): no blocked kernel for kw=", g.kw, " sw=", g.sw);
        }
      }
    }
  });
}

// y (N, To, Ho, Wo, C) = the correlation of the source (strides sd, see pad_cl_row); k (C, taps),
// bias (C) or null. Tasks: (n, output row block, output frame chunk); within a task the output
// frames run in order through a window of padded source frames.
template <typename S>
void conv_cl(const S* x, const int64_t* sd, const S* k, const S* bias, S* y, const Geom& g) {
  const Table<S> tbb = table<S>();
  if (tbb.clb_fwd != nullptr && blocked_kernel_for(g)) return conv_cl_blocked<S>(tbb, x, sd, k, bias, y, g);
  const Table<S> tb = cl_table<S>();
  const int64_t cp = round_up(g.C, tb.lanes);
  const std::vector<S> kT = transpose_kernel(k, g.C, g.taps(), cp);
  const std::vector<S> bp = padded_bias(bias, g.C, cp);
  const int64_t cols = (g.Wo - 1) * g.sw + g.kw;
  const int64_t rs = cols * cp;
  const int64_t hb = cl_block_rows(g, rs, sizeof(S));
  const int64_t blocks = (g.Ho + hb - 1) / hb;
  const int64_t units = g.N * blocks;
  const int64_t threads = at::get_num_threads();
  const int64_t tch = std::min<int64_t>(g.To, std::max<int64_t>(1, (4 * threads + units - 1) / units));
  const int64_t work = ((g.To + tch - 1) / tch) * hb * g.Wo * cp * g.taps();
  at::parallel_for(0, units * tch, grain_for(work), [&](int64_t begin, int64_t end) {
    FrameWindow<S> win;
    std::vector<const S*> ptrs(static_cast<size_t>(g.kt));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t u = task / tch, n = u / blocks;
      const auto [h0, h1, r0, r1] = row_block(g, u % blocks, hb);
      int64_t t0, t1;
      chunk_range(task % tch, tch, g.To, t0, t1);
      win.reset(g.kt, r1 - r0, rs);
      for (int64_t t = t0; t < t1; ++t) {
        int64_t f0, f1;
        source_range(t, t + 1, g.st, g.kt, g.pt, g.dt, g.T, f0, f1);
        const S* sample = x + n * sd[0];
        win.fetch(f0, f1, [&](int64_t f, int64_t r, S* d) {
          pad_cl_row<S>(sample + f * sd[1] + (r0 + r) * sd[2], sd, g.W, g.C, g.dw, g.pw, cols, cp, d);
        }, ptrs.data());
        Rows<S> xp{nullptr, f0, r0, r1 - r0, rs, nullptr, ptrs.data()};
        tb.cl_fwd(g, xp, kT.data(), bias ? bp.data() : nullptr, t, h0, h1, cp,
                  y + (n * g.To + t) * g.Ho * g.Wo * g.C);
      }
    }
  });
}

// Whether g convolves along T only (kernel kt x 1 x 1, unit stride, no padding or dilation along H
// and W): every output frame is a per-pixel weighted sum of source frames (conv_temporal).
inline bool temporal_only(const Geom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.ph == 0 && g.pw == 0;
}

// Elements of a temporal_row call: about 16 KB a source row, so that the kt rows an output row
// reads stay in L2 while the task sweeps the output frames (each source row is read kt times).
constexpr int64_t kTemporalRow = 4096;
// Elements a tap of the channels_last_3d weight tables (about 1 KB: all kt of them stay in L1).
constexpr int64_t kTemporalTable = 256;

// How the temporal kernels cut the frames of a temporal_only g (x and y dense in one layout):
// tasks (n, frame chunk) in channels_last_3d, (n, c, frame chunk) in NCDHW, chunks of Q elements,
// a whole number of weight patterns of Lp elements: lcm(C, lanes) in channels_last_3d (whole
// vectors; C where that passes 2 * kTemporalRow: forward only), one vector in NCDHW (one channel).
struct TemporalSplit {
  int64_t F, planes, Lp, Q, chunks;
  bool whole_vectors;
  static TemporalSplit make(bool cl, const Geom& g, int lanes) {
    TemporalSplit s{};
    s.F = cl ? g.H * g.W * g.C : g.H * g.W;
    s.planes = cl ? g.N : g.N * g.C;
    s.Lp = cl ? std::lcm<int64_t>(g.C, lanes) : lanes;
    s.whole_vectors = s.Lp <= 2 * kTemporalRow;
    if (!s.whole_vectors) s.Lp = g.C;
    s.Q = s.Lp * std::max<int64_t>(1, kTemporalRow / s.Lp);
    s.chunks = (s.F + s.Q - 1) / s.Q;
    return s;
  }
};

// The taps of output frame t that meet a source frame (the others meet the zero padding): for j <
// the returned count, tap[j] and xs[j], the row at xp in that tap's source frame (F elements a
// frame).
template <typename S>
inline int temporal_taps(const Geom& g, int64_t t, const S* xp, int64_t F, const S** xs, int* tap) {
  int m = 0;
  for (int i = 0; i < g.kt; ++i) {
    const int64_t f = src_index(t * g.st + i - g.pt, g.dt, g.T);
    if (f < 0) continue;
    xs[m] = xp + f * F;
    tap[m++] = i;
  }
  return m;
}

// y = the correlation of a temporal_only g, x and y dense in the layout `cl` says (channels_last_3d
// or NCDHW); k (C, kt), bias (C) or null. Source rows are read in place; a task sweeps the output
// frames in order, so consecutive ones share their source rows.
template <typename S>
void conv_temporal(bool cl, const S* x, const S* k, const S* bias, S* y, const Geom& g) {
  const Table<S> tb = table<S>();
  const TemporalSplit sp = TemporalSplit::make(cl, g, tb.lanes);
  const int64_t Q = sp.Q, F = sp.F;
  // channels_last_3d: a row starts at a pixel, so table element j is channel j % C; tables of
  // whole patterns, a multiple of 4 vectors where that stays under kTemporalTable elements a tap
  const int64_t unit = std::lcm<int64_t>(sp.Lp, 4 * tb.lanes);
  const int64_t whole = unit <= kTemporalTable ? unit * std::max<int64_t>(1, kTemporalTable / unit) : sp.Lp;
  const int64_t Lt = cl ? std::min(Q, whole) : 0;
  std::vector<S> wtab, btab;
  if (cl) {
    wtab.resize(static_cast<size_t>(g.kt * Lt));
    for (int i = 0; i < g.kt; ++i)
      for (int64_t j = 0; j < Lt; ++j) wtab[i * Lt + j] = k[(j % g.C) * g.kt + i];
    if (bias) btab.resize(static_cast<size_t>(Lt));
    for (int64_t j = 0; j < Lt && bias; ++j) btab[j] = bias[j % g.C];
  }
  at::parallel_for(0, sp.planes * sp.chunks, grain_for(g.To * Q * g.kt), [&](int64_t begin, int64_t end) {
    std::vector<const S*> xs(static_cast<size_t>(g.kt)), ws(static_cast<size_t>(g.kt));
    std::vector<int> tap(static_cast<size_t>(g.kt));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / sp.chunks, q0 = (task % sp.chunks) * Q, n = std::min(Q, F - q0);
      const S* xp = x + plane * g.T * F + q0;
      S* yp = y + plane * g.To * F + q0;
      const int64_t c = cl ? 0 : plane % g.C;
      for (int64_t t = 0; t < g.To; ++t) {
        const int m = temporal_taps<S>(g, t, xp, F, xs.data(), tap.data());
        for (int j = 0; j < m; ++j) ws[j] = cl ? wtab.data() + tap[j] * Lt : k + c * g.kt + tap[j];
        if (cl)
          tb.tmp_row_cl(yp + t * F, xs.data(), ws.data(), m, bias ? btab.data() : nullptr, Lt, n);
        else
          tb.tmp_row(yp + t * F, xs.data(), ws.data(), m, bias ? bias + c : nullptr, n);
      }
    }
  });
}

// Whether wgrad_temporal takes g (its weight patterns are whole vectors).
template <typename S>
bool wgrad_temporal_fits(bool cl, const Geom& g) {
  return temporal_only(g) && TemporalSplit::make(cl, g, table<S>().lanes).whole_vectors;
}

// gk (C, kt) = sum over n, t and the pixels of grad_y * x at the tap's source frame, for a
// wgrad_temporal_fits g (gy, x dense in the layout `cl` says). Each task sums its chunk into Lp
// positions a tap; the partials are added in task order: the same bits for any thread count.
template <typename S>
void wgrad_temporal(bool cl, const S* gy, const S* x, S* gk, const Geom& g) {
  const Table<S> tb = table<S>();
  const TemporalSplit sp = TemporalSplit::make(cl, g, tb.lanes);
  const int64_t Q = sp.Q, F = sp.F, Lp = sp.Lp, tasks = sp.planes * sp.chunks;
  std::vector<S> partial(static_cast<size_t>(tasks * g.kt * Lp), S(0));
  at::parallel_for(0, tasks, grain_for(g.To * Q * g.kt), [&](int64_t begin, int64_t end) {
    std::vector<const S*> xs(static_cast<size_t>(g.kt));
    std::vector<int> tap(static_cast<size_t>(g.kt));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / sp.chunks, q0 = (task % sp.chunks) * Q, n = std::min(Q, F - q0);
      const S* xp = x + plane * g.T * F + q0;
      const S* gp = gy + plane * g.To * F + q0;
      for (int64_t t = 0; t < g.To; ++t) {
        const int m = temporal_taps<S>(g, t, xp, F, xs.data(), tap.data());
        tb.tmp_wgrad(partial.data() + task * g.kt * Lp, gp + t * F, xs.data(), tap.data(), m, Lp, n);
      }
    }
  });
  for (int64_t c = 0; c < g.C; ++c)
    for (int i = 0; i < g.kt; ++i) {
      S s = 0;
      if (cl) {
        for (int64_t task = 0; task < tasks; ++task)
          for (int64_t j = c; j < Lp; j += g.C) s += partial[(task * g.kt + i) * Lp + j];
      } else {
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t ch = 0; ch < sp.chunks; ++ch) {
            const S* p = partial.data() + (((n * g.C + c) * sp.chunks + ch) * g.kt + i) * Lp;
            for (int64_t l = 0; l < Lp; ++l) s += p[l];
          }
      }
      gk[c * g.kt + i] = s;
    }
}

// gk (C, taps) of grad_y and x (strides gd, xd, see pad_cl_row); deterministic chunked reduction
// over the units (n, output row block, output frame), in that order, so that a chunk's
// consecutive units share their source frames.
template <typename S>
void wgrad_cl(const S* gy, const int64_t* gd, const S* x, const int64_t* xd, S* gk, const Geom& g) {
  const Table<S> tb = cl_table<S>();
  const int64_t cp = round_up(g.C, tb.lanes);
  const int taps = g.taps();
  const int64_t cols = (g.Wo - 1) * g.sw + g.kw;
  // Rows keep x's and grad_y's pixel stride C (one copy per row, not one per pixel), plus cp - C
  // zeroed elements of slack for the last pixel's last channel vector (see cl_wgrad_row).
  const int64_t slack = cp - g.C;
  const int64_t rs = cols * g.C + slack, grs = g.Wo * g.C + slack;
  const int64_t hb = cl_block_rows(g, rs, sizeof(S));
  const int64_t blocks = (g.Ho + hb - 1) / hb;
  const int64_t units = g.N * blocks * g.To;
  const int64_t chunks = wgrad_chunks(1, units, 16);
  std::vector<S> partial(static_cast<size_t>(chunks * taps * cp), S(0));
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    FrameWindow<S> win;
    std::vector<const S*> ptrs(static_cast<size_t>(g.kt));
    std::vector<S> grows;
    for (int64_t task = begin; task < end; ++task) {
      int64_t u0, u1;
      chunk_range(task, chunks, units, u0, u1);
      S* pk = partial.data() + task * taps * cp;
      int64_t cur = -1;  // the (n, block) the window holds
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t t = u % g.To, nb = u / g.To, n = nb / blocks;
        const auto [h0, h1, r0, r1] = row_block(g, nb % blocks, hb);
        int64_t f0, f1;
        if (nb != cur) {
          win.reset(g.kt, r1 - r0, rs);
          cur = nb;
        }
        source_range(t, t + 1, g.st, g.kt, g.pt, 1, g.T, f0, f1);
        const S* sample = x + n * xd[0];
        // a row of `cols` columns at pixel stride C, then the zeroed slack
        auto row_with_slack = [&](const S* src, const int64_t* sd, int64_t W, int64_t pw, int64_t cols_, S* d) {
          pad_cl_row<S>(src, sd, W, g.C, 1, pw, cols_, g.C, d);
          std::fill(d + cols_ * g.C, d + cols_ * g.C + slack, S(0));
        };
        win.fetch(f0, f1, [&](int64_t f, int64_t r, S* d) {
          row_with_slack(sample + f * xd[1] + (r0 + r) * xd[2], xd, g.W, g.pw, cols, d);
        }, ptrs.data());
        grows.resize(static_cast<size_t>((h1 - h0) * grs));
        for (int64_t h = h0; h < h1; ++h)
          row_with_slack(gy + n * gd[0] + t * gd[1] + h * gd[2], gd, g.Wo, 0, g.Wo, grows.data() + (h - h0) * grs);
        Rows<S> xp{nullptr, f0, r0, r1 - r0, rs, nullptr, ptrs.data()};
        tb.cl_wgrad(g, xp, grows.data(), grs, t, h0, h1, cp, pk);
      }
    }
  });
  for (int64_t c = 0; c < g.C; ++c)
    for (int i = 0; i < taps; ++i) {
      S s = 0;
      for (int64_t ch = 0; ch < chunks; ++ch) s += partial[(ch * taps + i) * cp + c];
      gk[c * taps + i] = s;
    }
}

}  // namespace cpu_impl

namespace {

using cpu_impl::Geom;

constexpr const char* kFwd = "_depthwise_conv3d_fwd";
constexpr const char* kBwd = "_depthwise_conv3d_bwd";

// The forward's geometry: x is the source, stride s, padding p, no dilation.
Geom check_and_geom(const char* fn, const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                    at::IntArrayRef stride, at::IntArrayRef padding) {
  TORCH_CHECK(x.dim() == 5, "vidops::", fn, ": x must be 5-D (N, C, T, H, W), got shape ", x.sizes());
  TORCH_CHECK(w.dim() == 4, "vidops::", fn, ": weight must be (C, kt, kh, kw), got shape ", w.sizes());
  TORCH_CHECK(w.size(0) == x.size(1), "vidops::", fn, ": weight has ", w.size(0), " channels but x has ",
              x.size(1));
  TORCH_CHECK(stride.size() == 3 && padding.size() == 3, "vidops::", fn,
              ": stride and padding must have 3 entries, got ", stride, " and ", padding);
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "vidops::", fn, ": CPU kernel called with ",
              x.device(), " and ", w.device(), " tensors");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && at::isFloatingType(w.scalar_type()), "vidops::", fn,
              ": x and weight must be floating, got ", x.scalar_type(), " and ", w.scalar_type());
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1) && bias->device().is_cpu(), "vidops::", fn,
                ": bias must be a (C,) CPU tensor with C=", x.size(1), ", got shape ", bias->sizes());
  }
  Geom g{};
  g.N = x.size(0);
  g.C = x.size(1);
  g.T = x.size(2);
  g.H = x.size(3);
  g.W = x.size(4);
  g.kt = static_cast<int>(w.size(1));
  g.kh = static_cast<int>(w.size(2));
  g.kw = static_cast<int>(w.size(3));
  g.st = static_cast<int>(stride[0]);
  g.sh = static_cast<int>(stride[1]);
  g.sw = static_cast<int>(stride[2]);
  g.dt = g.dh = g.dw = 1;
  g.pt = padding[0];
  g.ph = padding[1];
  g.pw = padding[2];
  TORCH_CHECK(g.kt >= 1 && g.kh >= 1 && g.kw >= 1, "vidops::", fn, ": kernel sizes must be >= 1, got ", w.sizes());
  TORCH_CHECK(g.st >= 1 && g.sh >= 1 && g.sw >= 1, "vidops::", fn, ": stride must be >= 1, got ", stride);
  TORCH_CHECK(g.pt >= 0 && g.ph >= 0 && g.pw >= 0, "vidops::", fn, ": padding must be >= 0, got ", padding);
  // an empty axis gives an empty output axis; a kernel that does not fit a non-empty one is an error
  TORCH_CHECK((g.T == 0 || g.T + 2 * g.pt >= g.kt) && (g.H == 0 || g.H + 2 * g.ph >= g.kh) &&
                  (g.W == 0 || g.W + 2 * g.pw >= g.kw),
              "vidops::", fn, ": padding ", padding, " leaves no output for x of shape ", x.sizes(), " and kernel ",
              w.sizes());
  g.To = g.T == 0 ? 0 : (g.T + 2 * g.pt - g.kt) / g.st + 1;
  g.Ho = g.H == 0 ? 0 : (g.H + 2 * g.ph - g.kh) / g.sh + 1;
  g.Wo = g.W == 0 ? 0 : (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}

// grad_x's geometry: grad_y (the forward's output) read dilated by the stride, stride 1,
// offset k - 1 - p, the output x's size (with the kernel reversed on every axis).
Geom grad_x_geom(const Geom& f) {
  Geom g = f;
  g.T = f.To;
  g.H = f.Ho;
  g.W = f.Wo;
  g.To = f.T;
  g.Ho = f.H;
  g.Wo = f.W;
  g.dt = f.st;
  g.dh = f.sh;
  g.dw = f.sw;
  g.st = g.sh = g.sw = 1;
  g.pt = f.kt - 1 - f.pt;
  g.ph = f.kh - 1 - f.ph;
  g.pw = f.kw - 1 - f.pw;
  return g;
}

bool channels_last(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast3d) && !x.is_contiguous();
}

at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

// Whether an NCDHW problem runs the channels_last kernels (reading x transposed into their padded
// buffer, writing a channels_last result that is copied into the NCDHW output): where output rows
// are short, vectors along W are mostly padding, vectors along C are full.
// Measured on X3D-M's layers (2 cores, AVX-512): it pays at 7-pixel rows only, where the NCDHW
// kernels' 16-lane vectors are more than half padding.
// The temporal-only kernels read NCDHW in place: never via channels_last (nor grad_y transposed for them).
bool ncdhw_via_cl(const Geom& g) { return g.C >= 8 && g.Wo <= 8 && !cpu_impl::temporal_only(g); }

// (sN, sT, sH, sW, sC) element strides of a 5-D (N, C, T, H, W) tensor.
std::array<int64_t, 5> cl_strides(const at::Tensor& t) {
  return {t.stride(0), t.stride(2), t.stride(3), t.stride(4), t.stride(1)};
}

// out = the correlation of src (both in `cl`'s layout; out allocated by the caller); src_cl: src
// already in channels_last_3d, or undefined (made here where an NCDHW problem needs it).
template <typename S>
void run_conv(bool cl, const at::Tensor& src, const S* k, const S* bias, at::Tensor& out, const Geom& g,
              const at::Tensor& src_cl = at::Tensor()) {
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  if (cpu_impl::temporal_only(g) && src.is_contiguous(fmt) && out.is_contiguous(fmt)) {
    cpu_impl::conv_temporal<S>(cl, src.const_data_ptr<S>(), k, bias, out.mutable_data_ptr<S>(), g);
  } else if (cl) {
    const auto sd = cl_strides(src);
    cpu_impl::conv_cl<S>(src.const_data_ptr<S>(), sd.data(), k, bias, out.mutable_data_ptr<S>(), g);
  } else if (ncdhw_via_cl(g)) {
    const auto srccl = src_cl.defined() ? src_cl : src.contiguous(at::MemoryFormat::ChannelsLast3d);
    const auto sd = cl_strides(srccl);
    auto tmp = at::empty(out.sizes(), out.options().memory_format(at::MemoryFormat::ChannelsLast3d));
    cpu_impl::conv_cl<S>(srccl.const_data_ptr<S>(), sd.data(), k, bias, tmp.mutable_data_ptr<S>(), g);
    out.copy_(tmp);
  } else {
    cpu_impl::conv_ncdhw<S>(src.const_data_ptr<S>(), k, bias, out.mutable_data_ptr<S>(), g);
  }
}

at::Tensor fwd_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   at::IntArrayRef stride, at::IntArrayRef padding) {
  const Geom g = check_and_geom(kFwd, x, weight, bias, stride, padding);
  const auto ct = compute_type(x.scalar_type());
  const bool cl = channels_last(x);
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  auto xc = x.to(ct).contiguous(fmt);
  auto wc = weight.to(ct).contiguous();
  at::Tensor bc = bias.has_value() ? bias->to(ct).contiguous() : at::Tensor();
  auto y = cpu_buffers::empty({g.N, g.C, g.To, g.Ho, g.Wo}, xc.options(), fmt);
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(ct, kFwd, [&] {
      run_conv<scalar_t>(cl, xc, wc.const_data_ptr<scalar_t>(), bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr,
                         y, g);
    });
  }
  return ct == x.scalar_type() ? y : y.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_cpu(const at::Tensor& grad_y, const at::Tensor& x,
                                                       const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                                       bool need_x, bool need_weight, bool need_bias) {
  const Geom g = check_and_geom(kBwd, x, weight, bias, stride, padding);
  TORCH_CHECK(grad_y.dim() == 5 && grad_y.size(0) == g.N && grad_y.size(1) == g.C && grad_y.size(2) == g.To &&
                  grad_y.size(3) == g.Ho && grad_y.size(4) == g.Wo,
              "vidops::", kBwd, ": grad_y has shape ", grad_y.sizes(), " but the output has shape [", g.N, ", ",
              g.C, ", ", g.To, ", ", g.Ho, ", ", g.Wo, "]");
  TORCH_CHECK(grad_y.scalar_type() == x.scalar_type(), "vidops::", kBwd, ": grad_y has dtype ",
              grad_y.scalar_type(), " but x has ", x.scalar_type());
  const auto ct = compute_type(x.scalar_type());
  const bool cl = channels_last(x);
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  auto gc = grad_y.to(ct).contiguous(fmt);
  auto wc = weight.to(ct).contiguous();
  // Every element of a computed gradient is written by the kernels; the others are zeros.
  const bool any = x.numel() > 0 && gc.numel() > 0;
  const auto gx_opts = gc.options().memory_format(fmt);
  const auto gw_opts = wc.options().memory_format(at::MemoryFormat::Contiguous);
  // grad_x when nobody needs it: one zero seen through zero strides (x's shape, no memory: the
  // autograd path drops it, the custom op's backward copies it into the zeros it returns)
  auto gx = !need_x ? at::zeros({}, x.options()).expand(x.sizes())
                    : any ? cpu_buffers::empty(x.sizes(), gc.options(), fmt) : at::zeros(x.sizes(), gx_opts);
  auto gw = (any && need_weight) ? at::empty(weight.sizes(), gw_opts) : at::zeros(weight.sizes(), gw_opts);
  const Geom gxg = grad_x_geom(g);
  // An NCDHW grad_y that grad_x and the weight gradient both read transposed is transposed once.
  at::Tensor gcl;
  if (any && (cl || (need_weight && ncdhw_via_cl(g)) || (need_x && ncdhw_via_cl(gxg))))
    gcl = gc.contiguous(at::MemoryFormat::ChannelsLast3d);
  if (any) {
    AT_DISPATCH_FLOATING_TYPES(ct, kBwd, [&] {
      if (need_x) {
        const int taps = g.taps();
        std::vector<scalar_t> flipped(static_cast<size_t>(g.C * taps));
        const scalar_t* k = wc.const_data_ptr<scalar_t>();
        for (int64_t c = 0; c < g.C; ++c)
          for (int i = 0; i < taps; ++i) flipped[c * taps + flipped_flat_tap(i, taps)] = k[c * taps + i];
        run_conv<scalar_t>(cl, gc, flipped.data(), nullptr, gx, gxg, gcl);
      }
      if (need_weight) {
        auto xc = x.to(ct).contiguous(fmt);
        const at::Tensor& gsrc = cl ? gcl : gc;
        if (cpu_impl::wgrad_temporal_fits<scalar_t>(cl, g) && gsrc.is_contiguous(fmt) && xc.is_contiguous(fmt)) {
          cpu_impl::wgrad_temporal<scalar_t>(cl, gsrc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(),
                                             gw.mutable_data_ptr<scalar_t>(), g);
        } else if (cl || ncdhw_via_cl(g)) {
          const auto xcl = xc.contiguous(at::MemoryFormat::ChannelsLast3d);
          const auto gd = cl_strides(gcl), xd = cl_strides(xcl);
          cpu_impl::wgrad_cl<scalar_t>(gcl.const_data_ptr<scalar_t>(), gd.data(), xcl.const_data_ptr<scalar_t>(),
                                       xd.data(), gw.mutable_data_ptr<scalar_t>(), g);
        }
        else
          cpu_impl::wgrad_ncdhw<scalar_t>(gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(),
                                          gw.mutable_data_ptr<scalar_t>(), g);
      }
    });
  }
  at::Tensor gb;
  if (!bias.has_value())
    gb = x.new_empty({0});
  else if (need_bias && gc.numel() > 0)
    gb = gc.sum({0, 2, 3, 4}).to(bias->scalar_type());
  else
    gb = at::zeros({g.C}, bias->options());
  return {gx.to(x.scalar_type()), gw.to(weight.scalar_type()), gb};
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
