// CPU k x k stencil kernels of the motion band-pass family (motion_band_pass forward and backward,
// busy_quiet): the k x k stencil over a padded frame and the k x k tap correlation of the weight
// gradient. The hot loops use GCC vector extensions, compiled for baseline x86-64,
// AVX2+FMA and AVX-512 and picked at run time (VIDOPS_CPU_ISA caps the choice), so the build stays
// portable. Frames, padding and the temporal fill that feed them: common/cpu_frames.h.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/cpu_isa.h"

// Wide vector types in always-inline helpers are only ever used inside target-specific callers.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace vidops {
namespace mbp {
namespace cpu {

#define VIDOPS_INLINE inline __attribute__((always_inline))

using ::vidops::cpu_isa::VecOf;

template <typename V, typename T>
VIDOPS_INLINE V vload(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename acc_t, typename out_t>
VIDOPS_INLINE void vstore(out_t* p, const V& v) {
  if constexpr (std::is_same_v<acc_t, out_t>) {
    std::memcpy(p, &v, sizeof(V));
  } else {
    constexpr int L = sizeof(V) / sizeof(acc_t);
    for (int l = 0; l < L; ++l) p[l] = static_cast<out_t>(v[l]);
  }
}

// ---- the k x k stencil -----------------------------------------------------------------------
// out[i*os + j] = sum_{a,b < k} K[a*k + b] * in[(i+a)*is + j + b]  for i < rows, j < cols.
// A block of R output rows x NV vectors stays in registers over all k*k taps; each input row
// segment loaded once feeds every output row of the block that uses it. Vector n covers columns
// [n*step, n*step + L): step = L normally; step < L overlaps the vectors (a row of L < cols < 2L
// columns as two vectors at 0 and cols - L, which write the shared columns twice, equally).
// KS > 0 is k known at compile time: the tap loops unroll completely and the row test a in [0, k)
// vanishes (at 14 x 14 frames the runtime-k loop spent more instructions on indexing than on FMAs).
template <int R, int NV, int KS, typename V, typename acc_t, typename out_t>
VIDOPS_INLINE void stencil_block(const acc_t* in, int64_t is, const acc_t* K, int k_runtime, out_t* out,
                                 int64_t os, int64_t step = sizeof(V) / sizeof(acc_t)) {
  const int k = KS > 0 ? KS : k_runtime;
  V acc[R][NV];
  for (int q = 0; q < R; ++q)
    for (int n = 0; n < NV; ++n) acc[q][n] = V{};
#pragma GCC unroll 16
  for (int u = 0; u < k + R - 1; ++u) {
    const acc_t* row = in + u * is;
#pragma GCC unroll 16
    for (int b = 0; b < k; ++b) {
      V v[NV];
      for (int n = 0; n < NV; ++n) v[n] = vload<V>(row + b + n * step);
      for (int q = 0; q < R; ++q) {
        const int a = u - q;
        if (a >= 0 && a < k) {
          const acc_t w = K[a * k + b];
          for (int n = 0; n < NV; ++n) acc[q][n] += w * v[n];
        }
      }
    }
  }
  for (int q = 0; q < R; ++q)
    for (int n = 0; n < NV; ++n) vstore<V, acc_t>(out + q * os + n * step, acc[q][n]);
}

template <int R, int NV, int KS, typename V, typename acc_t, typename out_t>
VIDOPS_INLINE void stencil_rows(const acc_t* in, int64_t is, const acc_t* K, int k, int64_t cols,
                                out_t* out, int64_t os) {
  constexpr int L = sizeof(V) / sizeof(acc_t);
  int64_t j = 0;
  for (; j + NV * L <= cols; j += NV * L) stencil_block<R, NV, KS, V>(in + j, is, K, k, out + j, os);
  const int64_t rem = cols - j;
  if (rem == 0) return;
  if (NV == 2 && rem > L) {  // L < rem < 2L (a whole 14-wide row at res4): two overlapping vectors
    stencil_block<R, 2, KS, V>(in + j, is, K, k, out + j, os, rem - L);
    return;
  }
  if (cols >= L) {  // one last vector, overlapping the previous one when rem < L (same values)
    stencil_block<R, 1, KS, V>(in + cols - L, is, K, k, out + cols - L, os);
    return;
  }
  for (int q = 0; q < R; ++q)  // frames narrower than one vector
    for (int64_t jj = j; jj < cols; ++jj) {
      acc_t s = 0;
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) s += K[a * k + b] * in[(q + a) * is + jj + b];
      out[q * os + jj] = static_cast<out_t>(s);
    }
}

template <int KS, typename V, typename acc_t, typename out_t>
VIDOPS_INLINE void stencil_frame(const acc_t* in, int64_t is, const acc_t* K, int k, int64_t rows,
                                 int64_t cols, out_t* out, int64_t os) {
  constexpr int R = 4;
  int64_t i = 0;
  for (; i + R <= rows; i += R) stencil_rows<R, 2, KS, V>(in + i * is, is, K, k, cols, out + i * os, os);
  // the last rows % 4 rows as one block: row blocks of 1 leave the FMA units waiting on latency
  switch (rows - i) {
    case 3: return stencil_rows<3, 2, KS, V>(in + i * is, is, K, k, cols, out + i * os, os);
    case 2: return stencil_rows<2, 2, KS, V>(in + i * is, is, K, k, cols, out + i * os, os);
    case 1: return stencil_rows<1, 2, KS, V>(in + i * is, is, K, k, cols, out + i * os, os);
    default: return;
  }
}

// float frames (the hot case) with the kernel sizes of the spec unrolled; the rest runtime-k.
template <typename V, typename acc_t, typename out_t>
VIDOPS_INLINE void stencil_impl(const acc_t* in, int64_t is, const acc_t* K, int k, int64_t rows,
                                int64_t cols, out_t* out, int64_t os) {
  if constexpr (std::is_same_v<acc_t, float> && std::is_same_v<out_t, float>) {
    switch (k) {
      case 3: return stencil_frame<3, V>(in, is, K, k, rows, cols, out, os);
      case 5: return stencil_frame<5, V>(in, is, K, k, rows, cols, out, os);
      case 7: return stencil_frame<7, V>(in, is, K, k, rows, cols, out, os);
      case 9: return stencil_frame<9, V>(in, is, K, k, rows, cols, out, os);
      case 11: return stencil_frame<11, V>(in, is, K, k, rows, cols, out, os);
      default: break;
    }
  }
  stencil_frame<0, V>(in, is, K, k, rows, cols, out, os);
}

// ---- weight-gradient tap correlation ---------------------------------------------------------
// gK[a*k + b] += sum_{i < rows, j < cols} g[i*gs + j] * in[(i+a)*is + j + b], partial sums in
// acc_t over bands of rows, then added to double.
template <int NB, int NV, typename V, typename acc_t>
VIDOPS_INLINE void corr_step(const acc_t* gr, const acc_t* ir, V (&acc)[NB][2]) {
  constexpr int L = sizeof(V) / sizeof(acc_t);
  for (int n = 0; n < NV; ++n) {
    const V gv = vload<V>(gr + n * L);
    for (int bb = 0; bb < NB; ++bb) acc[bb][n] += gv * vload<V>(ir + bb + n * L);
  }
}

// Columns [0, cols) of one row for NB taps: full vectors, then a zero-filled partial one.
template <int NB, typename V, typename acc_t>
VIDOPS_INLINE void corr_row(const acc_t* gr, const acc_t* ir, int64_t cols, V (&acc)[NB][2]) {
  constexpr int L = sizeof(V) / sizeof(acc_t);
  int64_t j = 0;
  for (; j + 2 * L <= cols; j += 2 * L) corr_step<NB, 2, V>(gr + j, ir + j, acc);
  if (j + L <= cols) corr_step<NB, 1, V>(gr + j, ir + j, acc), j += L;
  const int64_t rem = cols - j;
  if (rem == 0) return;
  // Last partial vector: full loads (the workspace has slack past every buffer, see Workspace)
  // with the products of the lanes past the row end masked out.
  using I = decltype(V{} < V{});
  I lane;
  for (int l = 0; l < L; ++l) lane[l] = l;
  const auto keep = lane < static_cast<decltype(lane[0] + 0)>(rem);
  const V gv = vload<V>(gr + j);
  for (int bb = 0; bb < NB; ++bb) acc[bb][1] += keep ? gv * vload<V>(ir + j + bb) : V{};
}

template <int NB, typename V, typename acc_t>
VIDOPS_INLINE void corr_taps_band(const acc_t* g, int64_t gs, const acc_t* in, int64_t is, int64_t rows,
                                  int64_t cols, double* gKb) {
  constexpr int L = sizeof(V) / sizeof(acc_t);
  constexpr int BAND = 16;  // rows summed in acc_t before the double accumulation
  for (int64_t i0 = 0; i0 < rows; i0 += BAND) {
    const int64_t i1 = i0 + BAND < rows ? i0 + BAND : rows;
    V acc[NB][2];
    for (int bb = 0; bb < NB; ++bb) acc[bb][0] = acc[bb][1] = V{};
    for (int64_t i = i0; i < i1; ++i) corr_row<NB, V>(g + i * gs, in + i * is, cols, acc);
    for (int bb = 0; bb < NB; ++bb) {
      const V s = acc[bb][0] + acc[bb][1];
      acc_t t = 0;
      for (int l = 0; l < L; ++l) t += s[l];
      gKb[bb] += static_cast<double>(t);
    }
  }
}

template <typename V, typename acc_t>
VIDOPS_INLINE void corr_taps_impl(const acc_t* g, int64_t gs, const acc_t* in, int64_t is, int k,
                                  int64_t rows, int64_t cols, double* gK) {
  constexpr int NB = 4;  // taps b handled together: one g load feeds NB FMAs
  for (int a = 0; a < k; ++a) {
    const acc_t* ia = in + a * is;
    int b = 0;
    for (; b + NB <= k; b += NB) corr_taps_band<NB, V>(g, gs, ia + b, is, rows, cols, gK + a * k + b);
    switch (k - b) {
      case 3: corr_taps_band<3, V>(g, gs, ia + b, is, rows, cols, gK + a * k + b); break;
      case 2: corr_taps_band<2, V>(g, gs, ia + b, is, rows, cols, gK + a * k + b); break;
      case 1: corr_taps_band<1, V>(g, gs, ia + b, is, rows, cols, gK + a * k + b); break;
      default: break;
    }
  }
}

// ---- run-time ISA choice -------------------------------------------------------------------
#if defined(__GNUC__) && defined(__x86_64__)
#define VIDOPS_MBP_X86 1
#endif

using ::vidops::cpu_isa::detect_isa;
using ::vidops::cpu_isa::Isa;

// The ISA whose vectors are not wider than a row of cols elements (narrow frames, e.g. 14 x 14
// at res4, would otherwise run mostly in the scalar or masked tails of the wide variants).
inline Isa narrowed_isa(int64_t cols, size_t elem) {
  Isa isa = detect_isa();
  if (isa == Isa::kAvx512 && cols * static_cast<int64_t>(elem) < 64) isa = Isa::kAvx2;
  if (isa == Isa::kAvx2 && cols * static_cast<int64_t>(elem) < 32) isa = Isa::kBase;
  return isa;
}

#define VIDOPS_MBP_STENCIL_ARGS \
  const acc_t *in, int64_t is, const acc_t *K, int k, int64_t rows, int64_t cols, out_t *out, int64_t os
#define VIDOPS_MBP_CORR_ARGS \
  const acc_t *g, int64_t gs, const acc_t *in, int64_t is, int k, int64_t rows, int64_t cols, double *gK

template <typename acc_t, typename out_t>
void stencil_base(VIDOPS_MBP_STENCIL_ARGS) {
  stencil_impl<typename VecOf<acc_t, 16>::type>(in, is, K, k, rows, cols, out, os);
}
template <typename acc_t>
void corr_taps_base(VIDOPS_MBP_CORR_ARGS) {
  corr_taps_impl<typename VecOf<acc_t, 16>::type>(g, gs, in, is, k, rows, cols, gK);
}
#ifdef VIDOPS_MBP_X86
template <typename acc_t, typename out_t>
__attribute__((target("avx2,fma"))) void stencil_avx2(VIDOPS_MBP_STENCIL_ARGS) {
  stencil_impl<typename VecOf<acc_t, 32>::type>(in, is, K, k, rows, cols, out, os);
}
template <typename acc_t>
__attribute__((target("avx2,fma"))) void corr_taps_avx2(VIDOPS_MBP_CORR_ARGS) {
  corr_taps_impl<typename VecOf<acc_t, 32>::type>(g, gs, in, is, k, rows, cols, gK);
}
template <typename acc_t, typename out_t>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void stencil_avx512(VIDOPS_MBP_STENCIL_ARGS) {
  stencil_impl<typename VecOf<acc_t, 64>::type>(in, is, K, k, rows, cols, out, os);
}
template <typename acc_t>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void corr_taps_avx512(VIDOPS_MBP_CORR_ARGS) {
  corr_taps_impl<typename VecOf<acc_t, 64>::type>(g, gs, in, is, k, rows, cols, gK);
}
#endif

// The k x k stencil (see stencil_block) on the best ISA of this CPU.
template <typename acc_t, typename out_t>
void stencil(VIDOPS_MBP_STENCIL_ARGS) {
#ifdef VIDOPS_MBP_X86
  switch (narrowed_isa(cols, sizeof(acc_t))) {
    case Isa::kAvx512: return stencil_avx512<acc_t, out_t>(in, is, K, k, rows, cols, out, os);
    case Isa::kAvx2: return stencil_avx2<acc_t, out_t>(in, is, K, k, rows, cols, out, os);
    default: break;
  }
#endif
  stencil_base<acc_t, out_t>(in, is, K, k, rows, cols, out, os);
}

// ---- the stencil of narrow frames, as one flat row ------------------------------------------
// A frame of narrow rows (see flat_scratch_size) is computed as one flat row: output (i, j) is the
// flat position p = i*is + j of the input's row pitch, and
//   flat[p] = sum_{a,b < k} K[a*k + b] * in[p + a*is + b]   for p < (rows-1)*is + cols,
// so the widest vectors run over the whole frame instead of one short row each (a 7 x 7 frame ran
// in 4-lane vectors with an eighth of them wasted; as one row of 85 positions it is 6 vectors of
// 16). Positions with p % is >= cols are computed and dropped. Up to 8 vectors share each tap's
// weight, so 8 independent accumulators hide the FMA latency (the row-block kernel above gets its
// independent sums from R rows, which a single flat row does not have).
template <int KS, int NV, typename V, typename acc_t>
VIDOPS_INLINE void flat_block(const acc_t* in, int64_t is, const acc_t* K, int k_runtime, acc_t* out,
                              int64_t last /* offset of the last vector */) {
  constexpr int L = sizeof(V) / sizeof(acc_t);
  const int k = KS > 0 ? KS : k_runtime;
  V acc[NV];
  for (int n = 0; n < NV; ++n) acc[n] = V{};
#pragma GCC unroll 16
  for (int a = 0; a < k; ++a) {
#pragma GCC unroll 16
    for (int b = 0; b < k; ++b) {
      const acc_t w = K[a * k + b];
      const acc_t* row = in + a * is + b;
      for (int n = 0; n < NV; ++n) acc[n] += w * vload<V>(row + (n + 1 < NV ? n * L : last));
    }
  }
  for (int n = 0; n < NV; ++n) vstore<V, acc_t>(out + (n + 1 < NV ? n * L : last), acc[n]);
}

// flat[p] for p < n (n >= L): blocks of 8 vectors, then one block of the m vectors the rest needs,
// its last one ending at n (overlapping its neighbour, which writes the same values).
template <int KS, typename V, typename acc_t>
VIDOPS_INLINE void flat_row(const acc_t* in, int64_t is, const acc_t* K, int k, int64_t n, acc_t* out) {
  constexpr int L = sizeof(V) / sizeof(acc_t);
  constexpr int NV = 8;
  int64_t j = 0;
  for (; j + NV * L <= n; j += NV * L) flat_block<KS, NV, V>(in + j, is, K, k, out + j, (NV - 1) * L);
  const int64_t rem = n - j;
  const int64_t last = rem - L;  // relative to j; >= 0 or, with j > 0, a step back into the last block
  switch ((rem + L - 1) / L) {
    case 0: return;
    case 1: return flat_block<KS, 1, V>(in + j, is, K, k, out + j, last);
    case 2: return flat_block<KS, 2, V>(in + j, is, K, k, out + j, last);
    case 3: return flat_block<KS, 3, V>(in + j, is, K, k, out + j, last);
    case 4: return flat_block<KS, 4, V>(in + j, is, K, k, out + j, last);
    case 5: return flat_block<KS, 5, V>(in + j, is, K, k, out + j, last);
    case 6: return flat_block<KS, 6, V>(in + j, is, K, k, out + j, last);
    case 7: return flat_block<KS, 7, V>(in + j, is, K, k, out + j, last);
    default: return flat_block<KS, 8, V>(in + j, is, K, k, out + j, last);
  }
}

template <typename V, typename acc_t>
VIDOPS_INLINE void flat_impl(const acc_t* in, int64_t is, const acc_t* K, int k, int64_t n, acc_t* out) {
  if constexpr (std::is_same_v<acc_t, float>) {
    switch (k) {
      case 3: return flat_row<3, V>(in, is, K, k, n, out);
      case 5: return flat_row<5, V>(in, is, K, k, n, out);
      case 7: return flat_row<7, V>(in, is, K, k, n, out);
      case 9: return flat_row<9, V>(in, is, K, k, n, out);
      default: break;
    }
  }
  flat_row<0, V>(in, is, K, k, n, out);
}

#define VIDOPS_MBP_FLAT_ARGS const acc_t *in, int64_t is, const acc_t *K, int k, int64_t n, acc_t *out
template <typename acc_t>
void flat_base(VIDOPS_MBP_FLAT_ARGS) { flat_impl<typename VecOf<acc_t, 16>::type>(in, is, K, k, n, out); }
#ifdef VIDOPS_MBP_X86
template <typename acc_t>
__attribute__((target("avx2,fma"))) void flat_avx2(VIDOPS_MBP_FLAT_ARGS) {
  flat_impl<typename VecOf<acc_t, 32>::type>(in, is, K, k, n, out);
}
template <typename acc_t>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void flat_avx512(VIDOPS_MBP_FLAT_ARGS) {
  flat_impl<typename VecOf<acc_t, 64>::type>(in, is, K, k, n, out);
}
#endif

// The stencil of one frame through the flat row (flat: scratch of (rows-1)*is + cols elements plus
// vector slack), then its valid columns copied out.
template <typename acc_t, typename out_t>
void stencil_flat(VIDOPS_MBP_STENCIL_ARGS, acc_t* flat) {
  const int64_t n = (rows - 1) * is + cols;
  switch (narrowed_isa(n, sizeof(acc_t))) {
#ifdef VIDOPS_MBP_X86
    case Isa::kAvx512: flat_avx512<acc_t>(in, is, K, k, n, flat); break;
    case Isa::kAvx2: flat_avx2<acc_t>(in, is, K, k, n, flat); break;
#endif
    default: flat_base<acc_t>(in, is, K, k, n, flat); break;
  }
  for (int64_t i = 0; i < rows; ++i) {
    const acc_t* src = flat + i * is;
    out_t* dst = out + i * os;
    for (int64_t j = 0; j < cols; ++j) dst[j] = static_cast<out_t>(src[j]);
  }
}

// The flat scratch stencil_any needs for rows x cols frames of row pitch is: rows * is elements
// where the flat row serves (rows narrower than an AVX2 vector, where the row kernel would run
// baseline 4-lane code, on a CPU with AVX2), else 0. Rows of 8 to 15 floats keep the row kernel in
// AVX2: the flat row's AVX-512 vectors were not faster at 14 x 14 (alternating runs, within the
// noise) and do more FMAs there (the pitch is 20 for 14).
inline int64_t flat_scratch_size(int64_t rows, int64_t cols, int64_t is, size_t elem) {
  const int64_t base_lanes = 16 / static_cast<int64_t>(elem);
  const bool narrow = rows > 1 && (rows - 1) * is + cols >= base_lanes && detect_isa() != Isa::kBase &&
                      narrowed_isa(cols, elem) == Isa::kBase;
  return narrow ? rows * is : 0;
}

// stencil_flat() where flat_scratch_size() is not 0 and the caller gave that scratch, else stencil().
template <typename acc_t, typename out_t>
void stencil_any(VIDOPS_MBP_STENCIL_ARGS, acc_t* flat) {
  if (flat != nullptr && flat_scratch_size(rows, cols, is, sizeof(acc_t)) > 0)
    return stencil_flat<acc_t, out_t>(in, is, K, k, rows, cols, out, os, flat);
  stencil<acc_t, out_t>(in, is, K, k, rows, cols, out, os);
}

// gK[a*k+b] += sum_ij g[i,j] * in[i+a, j+b] (see corr_taps_impl) on the best ISA of this CPU.
template <typename acc_t>
void corr_taps(VIDOPS_MBP_CORR_ARGS) {
#ifdef VIDOPS_MBP_X86
  switch (narrowed_isa(cols, sizeof(acc_t))) {
    case Isa::kAvx512: return corr_taps_avx512<acc_t>(g, gs, in, is, k, rows, cols, gK);
    case Isa::kAvx2: return corr_taps_avx2<acc_t>(g, gs, in, is, k, rows, cols, gK);
    default: break;
  }
#endif
  corr_taps_base<acc_t>(g, gs, in, is, k, rows, cols, gK);
}

}  // namespace cpu
}  // namespace mbp
}  // namespace vidops
