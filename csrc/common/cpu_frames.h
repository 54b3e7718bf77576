// CPU frame building blocks of the motion band-pass family (motion_band_pass forward and backward,
// busy_quiet): the temporal 3-tap combination into a spatially padded frame buffer, the padding
// and its adjoint, per-thread workspaces and the job loop. The vector paths are compiled for
// baseline x86-64, AVX2+FMA and AVX-512 and picked at run time (common/cpu_stencil.h).
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "common/band_pass_math.h"
#include "common/cpu_isa.h"
#include "common/cpu_stencil.h"

// Wide vector types in always-inline helpers are only ever used inside target-specific callers.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace vidops {
namespace mbp {
namespace cpu {

// ---- frames and padding ----------------------------------------------------------------------

// A contiguous acc_t view of row p (W elements, element stride sW): the row itself when no
// conversion is needed, else a converted copy in scratch.
template <typename scalar_t, typename acc_t>
inline const acc_t* row_of(const scalar_t* p, int64_t sW, int64_t W, acc_t* scratch) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (sW == 1) return p;
  }
  for (int64_t j = 0; j < W; ++j) scratch[j] = static_cast<acc_t>(p[j * sW]);
  return scratch;
}

// The distinct input frames read by output frame t, with their summed temporal weights (taps that
// read the same frame under "replicate" are merged) and, per frame, which taps j read it.
template <typename acc_t>
struct Taps {
  int n = 0;
  int64_t frame[3] = {0, 0, 0};
  acc_t weight[3] = {0, 0, 0};
  int mask[3] = {0, 0, 0};  // bit j set when tap j reads frame[i]

  Taps(int64_t t, const acc_t* tw, int stride, int mode, int64_t T) {
    for (int j = 0; j < 3; ++j) {
      const int64_t f = temporal_source(t, j, stride, mode, T);
      if (f < 0) continue;
      int i = 0;
      while (i < n && frame[i] != f) ++i;
      if (i == n) {
        frame[n] = f, weight[n] = acc_t(0), mask[n] = 0;
        ++n;
      }
      weight[i] += tw[j], mask[i] |= 1 << j;
    }
  }
};

// Padded frame geometry: H x W interior at offset (r, r) of an (H+2r) x (W+2r) buffer.
// col_src[q] and row_src[p]: the padded column / row that border column q (q < r, then the r
// right ones) and border row p (likewise) copy, computed once: at 14 x 14 frames the per-element
// index math cost as much as the temporal sum.
struct Pad {
  int64_t H, W, r, Hp, Wp;
  int mode;
  std::vector<int64_t> col_src, row_src;
  Pad(int64_t H_, int64_t W_, int64_t r_, int mode_)
      : H(H_), W(W_), r(r_), Hp(H_ + 2 * r_), Wp(W_ + 2 * r_), mode(mode_) {
    if (mode == kSpatialZeros) return;
    for (int64_t q = 0; q < Wp; ++q)
      if (q < r || q >= r + W) col_src.push_back(padded_source(q, r, W, mode) + r);
    for (int64_t p = 0; p < Hp; ++p)
      if (p < r || p >= r + H) row_src.push_back(padded_source(p, r, H, mode) + r);
  }
  int64_t size() const { return Hp * Wp; }
  template <typename T>
  T* interior(T* buf) const { return buf + r * Wp + r; }
};

// Fills the border of a padded frame whose interior is written: reflect mirrors the interior
// (columns of the interior rows, then whole rows); zeros leaves the border as it is (callers
// zero it once per buffer).
template <typename acc_t>
inline void pad_border(acc_t* buf, const Pad& P) {
  if (P.r == 0 || P.mode == kSpatialZeros) return;
  const int64_t r = P.r, right = P.r + P.W;
  const int64_t* cs = P.col_src.data();
  for (int64_t i = r; i < r + P.H; ++i) {
    acc_t* row = buf + i * P.Wp;
    for (int64_t q = 0; q < r; ++q) row[q] = row[cs[q]];
    for (int64_t q = 0; q < r; ++q) row[right + q] = row[cs[r + q]];
  }
  for (int64_t q = 0; q < r; ++q) {
    std::memcpy(buf + q * P.Wp, buf + P.row_src[q] * P.Wp, sizeof(acc_t) * P.Wp);
    std::memcpy(buf + (r + P.H + q) * P.Wp, buf + P.row_src[r + q] * P.Wp, sizeof(acc_t) * P.Wp);
  }
}

// Adjoint of pad_border for reflect: adds every border value onto the interior value it was
// copied from (rows first, then columns). Zeros: the border is simply dropped.
template <typename acc_t>
inline void fold_border(acc_t* buf, const Pad& P) {
  if (P.r == 0 || P.mode == kSpatialZeros) return;
  const int64_t r = P.r, right = P.r + P.W;
  for (int64_t q = 0; q < 2 * r; ++q) {
    const int64_t p = q < r ? q : P.H + q;  // border rows top to bottom, as row_src lists them
    acc_t* dst = buf + P.row_src[q] * P.Wp;
    const acc_t* src = buf + p * P.Wp;
    for (int64_t c = 0; c < P.Wp; ++c) dst[c] += src[c];
  }
  const int64_t* cs = P.col_src.data();
  for (int64_t i = r; i < r + P.H; ++i) {
    acc_t* row = buf + i * P.Wp;
    for (int64_t q = 0; q < r; ++q) row[cs[q]] += row[q];
    for (int64_t q = 0; q < r; ++q) row[cs[r + q]] += row[right + q];
  }
}

// Runs worker(next) once on each of up to `threads` OpenMP threads; a worker takes job indices
// with next(job) until it returns false. Jobs are handed out one at a time, so a thread that a
// busy machine deschedules does not hold back the others (a static split would); every job's
// result must not depend on the thread that runs it. An exception in a worker stops the others
// and is rethrown here.
template <typename Worker>
void parallel_jobs(int64_t n, int threads, const Worker& worker) {
  if (n <= 0) return;
  if (threads > n) threads = static_cast<int>(n);
  if (threads < 1) threads = 1;
  std::atomic<int64_t> counter{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  const auto next = [&](int64_t& job) {
    job = counter.fetch_add(1, std::memory_order_relaxed);
    return job < n && !failed.load(std::memory_order_relaxed);
  };
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    try {
      worker(next);
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Per-thread workspace: a few padded frames and row scratch, allocated once per parallel chunk.
// Every buffer is followed by kSlack zeroed elements, so a full-vector load that starts inside a
// buffer never leaves the allocation (corr_row masks what such loads read past a row).
template <typename acc_t>
struct Workspace {
  static constexpr int64_t kSlack = 64 / sizeof(acc_t);
  std::vector<acc_t> data;
  acc_t* next;
  // sizes: the element counts of the buffers that take() will hand out
  explicit Workspace(std::initializer_list<int64_t> sizes) : data(total(sizes)), next(data.data()) {}
  acc_t* take(int64_t n) {
    acc_t* p = next;
    next += n + kSlack;
    return p;
  }
  static size_t total(std::initializer_list<int64_t> sizes) {
    int64_t t = 0;
    for (int64_t n : sizes) t += n + kSlack;
    return static_cast<size_t>(t);
  }
};

// Y = sum over the distinct frames of weight * x[frame] into the padded buffer (then its border).
// x_nc points at x[n, c], with strides sT, sH, sW. When gY is given (row stride gys), also adds
// dot(gY, x[frame]) into dots[i] for each distinct frame i (the temporal weight gradient). When
// mean is given (H x W, row stride W), also writes the mean of the three taps' frames there.
template <typename scalar_t, typename acc_t>
inline void fill_temporal(const scalar_t* x_nc, int64_t sT, int64_t sH, int64_t sW, const Taps<acc_t>& taps,
                          const Pad& P, acc_t* buf, acc_t* scratch /* 3*W */,
                          const acc_t* gY = nullptr, int64_t gys = 0, double* dots = nullptr,
                          acc_t* mean = nullptr) {
  const int64_t W = P.W;
  for (int64_t i = 0; i < P.H; ++i) {
    acc_t* dst = buf + (i + P.r) * P.Wp + P.r;
    const acc_t* rows[3] = {nullptr, nullptr, nullptr};
    for (int f = 0; f < taps.n; ++f)
      rows[f] = row_of(x_nc + taps.frame[f] * sT + i * sH, sW, W, scratch + f * W);
    const acc_t w0 = taps.weight[0];
    if (taps.n == 0) {
      for (int64_t j = 0; j < W; ++j) dst[j] = acc_t(0);
    } else if (taps.n == 1) {
      const acc_t* r0 = rows[0];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) dst[j] = w0 * r0[j];
    } else if (taps.n == 2) {
      const acc_t *r0 = rows[0], *r1 = rows[1];
      const acc_t w1 = taps.weight[1];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) dst[j] = w0 * r0[j] + w1 * r1[j];
    } else {
      const acc_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
      const acc_t w1 = taps.weight[1], w2 = taps.weight[2];
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) dst[j] = w0 * r0[j] + w1 * r1[j] + w2 * r2[j];
    }
    if (mean != nullptr) {
      acc_t cnt[3] = {0, 0, 0};  // taps per distinct frame (1 each unless "replicate" merged them)
      for (int f = 0; f < taps.n; ++f) cnt[f] = acc_t(__builtin_popcount(taps.mask[f]));
      acc_t* m = mean + i * W;
      for (int64_t j = 0; j < W; ++j) {
        acc_t s = 0;
        for (int f = 0; f < taps.n; ++f) s += cnt[f] * rows[f][j];
        m[j] = s / acc_t(3);
      }
    }
    if (gY != nullptr) {
      const acc_t* g = gY + i * gys;
      for (int f = 0; f < taps.n; ++f) {
        const acc_t* rf = rows[f];
        acc_t s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < W; ++j) s += g[j] * rf[j];
        dots[f] += static_cast<double>(s);
      }
    }
  }
  pad_border(buf, P);
}

// ---- fill and emit for float frames in the CPU's vectors -------------------------------------
// fill_temporal's sum (and the backward's dots) in vectors of V compiled for the CPU's ISA: the
// generic loops above are baseline SSE with scalar tails, and at 14 x 14 frames the fill took a
// third of the forward. A row is covered by full vectors and one last vector overlapping the
// previous one (needs W >= lanes; the dots mask the overlap). Strided rows are gathered first
// (row_of), so every input layout sums the same way.
template <int NT, bool DOTS, typename V>
VIDOPS_INLINE void fill_rows_vec(const float* const* src, const float* w, int64_t sH, int64_t sW, const Pad& P,
                                 float* buf, float* scratch, const float* gY, int64_t gys, double* dots) {
  constexpr int L = sizeof(V) / sizeof(float);
  using I = decltype(V{} < V{});
  I lane;
  for (int l = 0; l < L; ++l) lane[l] = l;
  V wv[NT > 0 ? NT : 1];
  for (int f = 0; f < NT; ++f)
    for (int l = 0; l < L; ++l) wv[f][l] = w[f];
  for (int64_t i = 0; i < P.H; ++i) {
    float* dst = buf + (i + P.r) * P.Wp + P.r;
    const float* rows[NT > 0 ? NT : 1];
    for (int f = 0; f < NT; ++f) rows[f] = row_of(src[f] + i * sH, sW, P.W, scratch + f * P.W);
    V dacc[NT > 0 ? NT : 1];
    for (int f = 0; f < NT; ++f) dacc[f] = V{};
    const auto put = [&](int64_t j, int skip) {
      V acc = V{};
      for (int f = 0; f < NT; ++f) {
        const V xv = vload<V>(rows[f] + j);
        acc += wv[f] * xv;
        if constexpr (DOTS) {
          V gv = vload<V>(gY + i * gys + j);
          if (skip > 0) gv = lane >= skip ? gv : V{};  // lanes the previous vector counted
          dacc[f] += gv * xv;
        }
      }
      std::memcpy(dst + j, &acc, sizeof(V));
    };
    int64_t j = 0;
    for (; j + L <= P.W; j += L) put(j, 0);
    if (j < P.W) put(P.W - L, static_cast<int>(j - (P.W - L)));
    if constexpr (DOTS) {
      for (int f = 0; f < NT; ++f) {
        float t = 0;
        for (int l = 0; l < L; ++l) t += dacc[f][l];
        dots[f] += static_cast<double>(t);
      }
    }
  }
}

template <bool DOTS, typename V>
VIDOPS_INLINE void fill_temporal_vec(const float* x_nc, int64_t sT, int64_t sH, int64_t sW, const Taps<float>& taps,
                                     const Pad& P, float* buf, float* scratch, const float* gY, int64_t gys,
                                     double* dots) {
  const float* src[3] = {nullptr, nullptr, nullptr};
  for (int f = 0; f < taps.n; ++f) src[f] = x_nc + taps.frame[f] * sT;
  switch (taps.n) {
    case 0: fill_rows_vec<0, DOTS, V>(src, taps.weight, sH, sW, P, buf, scratch, gY, gys, dots); break;
    case 1: fill_rows_vec<1, DOTS, V>(src, taps.weight, sH, sW, P, buf, scratch, gY, gys, dots); break;
    case 2: fill_rows_vec<2, DOTS, V>(src, taps.weight, sH, sW, P, buf, scratch, gY, gys, dots); break;
    default: fill_rows_vec<3, DOTS, V>(src, taps.weight, sH, sW, P, buf, scratch, gY, gys, dots); break;
  }
  pad_border(buf, P);
}

// dst (H x W, rows contiguous) = sum_m w[m] src[m] (rows of stride ss): the backward's g_x frames.
template <int M, typename V>
VIDOPS_INLINE void emit_rows_vec(float* dst, int64_t H, int64_t W, const float* const* src, const float* w,
                                 int64_t ss) {
  constexpr int L = sizeof(V) / sizeof(float);
  V wv[M > 0 ? M : 1];
  for (int m = 0; m < M; ++m)
    for (int l = 0; l < L; ++l) wv[m][l] = w[m];
  for (int64_t i = 0; i < H; ++i) {
    const auto put = [&](int64_t j) {
      V acc = V{};
      for (int m = 0; m < M; ++m) acc += wv[m] * vload<V>(src[m] + i * ss + j);
      std::memcpy(dst + i * W + j, &acc, sizeof(V));
    };
    int64_t j = 0;
    for (; j + L <= W; j += L) put(j);
    if (j < W) put(W - L);
  }
}

template <typename V>
VIDOPS_INLINE void emit_vec(float* dst, int64_t H, int64_t W, int m, const float* const* src, const float* w,
                            int64_t ss) {
  switch (m) {
    case 0: return emit_rows_vec<0, V>(dst, H, W, src, w, ss);
    case 1: return emit_rows_vec<1, V>(dst, H, W, src, w, ss);
    case 2: return emit_rows_vec<2, V>(dst, H, W, src, w, ss);
    default: return emit_rows_vec<3, V>(dst, H, W, src, w, ss);
  }
}

#define VIDOPS_MBP_FILL_ARGS                                                                               \
  const float *x_nc, int64_t sT, int64_t sH, int64_t sW, const Taps<float>&taps, const Pad &P, float *buf, \
      float *scratch, const float *gY, int64_t gys, double *dots
#define VIDOPS_MBP_FILL_PASS x_nc, sT, sH, sW, taps, P, buf, scratch, gY, gys, dots
#define VIDOPS_MBP_EMIT_ARGS float *dst, int64_t H, int64_t W, int m, const float *const *src, const float *w, int64_t ss
#define VIDOPS_MBP_FILL_VARIANT(NAME, ATTR, VB)                                                                    \
  ATTR inline void NAME(VIDOPS_MBP_FILL_ARGS) {                                                                   \
    if (dots != nullptr)                                                                                        \
      fill_temporal_vec<true, VecOf<float, VB>::type>(VIDOPS_MBP_FILL_PASS);                                     \
    else                                                                                                        \
      fill_temporal_vec<false, VecOf<float, VB>::type>(VIDOPS_MBP_FILL_PASS);                                    \
  }
VIDOPS_MBP_FILL_VARIANT(fill_temporal_base, , 16)
inline void emit_base(VIDOPS_MBP_EMIT_ARGS) { emit_vec<VecOf<float, 16>::type>(dst, H, W, m, src, w, ss); }
#ifdef VIDOPS_MBP_X86
VIDOPS_MBP_FILL_VARIANT(fill_temporal_avx2, __attribute__((target("avx2,fma"))), 32)
VIDOPS_MBP_FILL_VARIANT(fill_temporal_avx512, __attribute__((target("avx512f,avx512vl,avx2,fma"))), 64)
__attribute__((target("avx2,fma"))) inline void emit_avx2(VIDOPS_MBP_EMIT_ARGS) {
  emit_vec<VecOf<float, 32>::type>(dst, H, W, m, src, w, ss);
}
__attribute__((target("avx512f,avx512vl,avx2,fma"))) inline void emit_avx512(VIDOPS_MBP_EMIT_ARGS) {
  emit_vec<VecOf<float, 64>::type>(dst, H, W, m, src, w, ss);
}
#endif

// fill_temporal (without its mean) on the vector path for float frames at least 4 wide, the
// generic loops otherwise.
template <typename scalar_t, typename acc_t>
inline void fill_temporal_fast(const scalar_t* x_nc, int64_t sT, int64_t sH, int64_t sW, const Taps<acc_t>& taps,
                               const Pad& P, acc_t* buf, acc_t* scratch, const acc_t* gY = nullptr, int64_t gys = 0,
                               double* dots = nullptr) {
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (P.W >= 4) {
      switch (narrowed_isa(P.W, sizeof(float))) {
#ifdef VIDOPS_MBP_X86
        case Isa::kAvx512: return fill_temporal_avx512(x_nc, sT, sH, sW, taps, P, buf, scratch, gY, gys, dots);
        case Isa::kAvx2: return fill_temporal_avx2(x_nc, sT, sH, sW, taps, P, buf, scratch, gY, gys, dots);
#endif
        default: return fill_temporal_base(x_nc, sT, sH, sW, taps, P, buf, scratch, gY, gys, dots);
      }
    }
  }
  fill_temporal(x_nc, sT, sH, sW, taps, P, buf, scratch, gY, gys, dots);
}

// dst = sum_{m' < m} w[m'] src[m'] on H x W frames in vectors (float, W >= 4); false when the
// caller's scalar loops must do it.
template <typename out_t, typename acc_t>
inline bool emit_fast(out_t* dst, int64_t H, int64_t W, int m, const acc_t* const* src, const acc_t* w, int64_t ss) {
  if constexpr (std::is_same_v<out_t, float> && std::is_same_v<acc_t, float>) {
    if (W >= 4) {
      switch (narrowed_isa(W, sizeof(float))) {
#ifdef VIDOPS_MBP_X86
        case Isa::kAvx512: emit_avx512(dst, H, W, m, src, w, ss); return true;
        case Isa::kAvx2: emit_avx2(dst, H, W, m, src, w, ss); return true;
#endif
        default: emit_base(dst, H, W, m, src, w, ss); return true;
      }
    }
  }
  return false;
}

}  // namespace cpu
}  // namespace mbp
}  // namespace vidops
