// CPU SIMD building blocks of the pixel-wise kernels (pixelwise_temporal_projection, temporal_relation,
// temporal_squeeze): GCC vector types whose lanes are neighbouring pixels (common/subspace_math.h
// runs on them unchanged), partial loads/stores, aligned vector buffers, and
// the run-time ISA choice. Kernels are written once as always-inline templates on the vector type
// and compiled three times by VIDOPS_CPU_SIMD_VARIANTS: baseline (16-byte vectors, any CPU),
// AVX2+FMA (32 bytes) and AVX-512 (64 bytes); VIDOPS_CPU_ISA=base|avx2|avx512 caps the choice.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

// Wide vector types only ever cross always-inline boundaries inside target-specific callers.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "common/cpu_isa.h"
#include "common/subspace_math.h"

namespace vidops {
namespace cpu_simd {
using ::vidops::cpu_isa::VecOf;
}  // namespace cpu_simd

namespace subspace {

#define VIDOPS_SUBSPACE_LANES(S, VB)                     \
  template <>                                        \
  struct Lanes<typename ::vidops::cpu_simd::VecOf<S, VB>::type> {   \
    using scalar = S;                                \
  };
VIDOPS_SUBSPACE_LANES(float, 16)
VIDOPS_SUBSPACE_LANES(float, 32)
VIDOPS_SUBSPACE_LANES(float, 64)
VIDOPS_SUBSPACE_LANES(double, 16)
VIDOPS_SUBSPACE_LANES(double, 32)
VIDOPS_SUBSPACE_LANES(double, 64)
#undef VIDOPS_SUBSPACE_LANES
}  // namespace subspace

namespace cpu_simd {

#define VIDOPS_AI inline __attribute__((always_inline))

using ::vidops::cpu_isa::detect_isa;
using ::vidops::cpu_isa::Isa;

// A 64-byte aligned array of vectors (std::vector of GCC vector types does not keep their
// alignment through std::allocator here).
template <typename V>
struct VecBuf {
  V* p;
  explicit VecBuf(int64_t n) {
    const size_t bytes = (static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(V) + 63) / 64 * 64;
    p = static_cast<V*>(std::aligned_alloc(64, bytes));
    TORCH_CHECK(p != nullptr, "vidops: out of memory for a ", bytes, "-byte kernel buffer");
  }
  ~VecBuf() { std::free(p); }
  VecBuf(const VecBuf&) = delete;
  VecBuf& operator=(const VecBuf&) = delete;
  V* data() { return p; }
  V& operator[](int64_t i) { return p[i]; }
};

// n valid lanes from p (the rest 0), converted to S.
template <typename V, typename S, typename T>
VIDOPS_AI V vload(const T* p, int n) {
  constexpr int L = sizeof(V) / sizeof(S);
  V v;
  if constexpr (std::is_same_v<T, S>) {
    if (n == L) {
      std::memcpy(&v, p, sizeof(V));
      return v;
    }
  }
  v = V{};
  for (int l = 0; l < n; ++l) v[l] = static_cast<S>(p[l]);
  return v;
}

template <typename V, typename S, typename T>
VIDOPS_AI void vstore(T* p, const V& v, int n) {
  constexpr int L = sizeof(V) / sizeof(S);
  if constexpr (std::is_same_v<T, S>) {
    if (n == L) {
      std::memcpy(p, &v, sizeof(V));
      return;
    }
  }
  for (int l = 0; l < n; ++l) p[l] = static_cast<T>(v[l]);
}

template <typename V, typename S>
VIDOPS_AI double hsum(const V& v) {
  constexpr int L = sizeof(V) / sizeof(S);
  double acc = 0.0;
  for (int l = 0; l < L; ++l) acc += static_cast<double>(v[l]);
  return acc;
}

// at::parallel_for grain: tasks of at least ~64K element-operations, so small calls stay on the
// calling thread (waking the OpenMP team costs more than they do).
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, work_per_task));
}

// The compute type of a dtype: double for double, float for float and the half types.
template <typename scalar_t>
using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
inline at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// f(std::integral_constant<int, D>()) for the subspace dimension D in 1..4.
template <typename F>
void dispatch_D(int64_t D, const char* op, F&& f) {
  switch (D) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    default: TORCH_CHECK(false, "vidops.", op, ": D must be in 1..4, got ", D);
  }
}

// NAME<D, S, scalar_t>(const P& pb, int64_t begin, int64_t end) runs
// IMPL<D, V, S, scalar_t>(pb, begin, end) with V the widest vector of S this CPU supports.
#define VIDOPS_CPU_SIMD_VARIANTS(NAME, IMPL)                                                          \
  template <int D, typename S, typename scalar_t, typename P>                                          \
  void NAME##_base(const P& pb, int64_t b, int64_t e) {                                                \
    IMPL<D, typename ::vidops::cpu_simd::VecOf<S, 16>::type, S, scalar_t>(pb, b, e);                   \
  }                                                                                                     \
  VIDOPS_CPU_SIMD_X86_VARIANTS(NAME, IMPL)                                                                  \
  template <int D, typename S, typename scalar_t, typename P>                                          \
  void NAME(const P& pb, int64_t b, int64_t e) {                                                       \
    switch (::vidops::cpu_simd::detect_isa()) {                                                        \
      VIDOPS_CPU_SIMD_X86_CASES(NAME)                                                                       \
      default: return NAME##_base<D, S, scalar_t>(pb, b, e);                                            \
    }                                                                                                   \
  }

#if defined(__x86_64__) && defined(__GNUC__)
#define VIDOPS_CPU_SIMD_X86_VARIANTS(NAME, IMPL)                                                           \
  template <int D, typename S, typename scalar_t, typename P>                                          \
  __attribute__((target("avx2,fma"))) void NAME##_avx2(const P& pb, int64_t b, int64_t e) {            \
    IMPL<D, typename ::vidops::cpu_simd::VecOf<S, 32>::type, S, scalar_t>(pb, b, e);                   \
  }                                                                                                     \
  template <int D, typename S, typename scalar_t, typename P>                                          \
  __attribute__((target("avx512f,avx512vl,avx2,fma"))) void NAME##_avx512(const P& pb, int64_t b,      \
                                                                          int64_t e) {                  \
    IMPL<D, typename ::vidops::cpu_simd::VecOf<S, 64>::type, S, scalar_t>(pb, b, e);                   \
  }
#define VIDOPS_CPU_SIMD_X86_CASES(NAME)                                     \
  case ::vidops::cpu_simd::Isa::kAvx512: return NAME##_avx512<D, S, scalar_t>(pb, b, e); \
  case ::vidops::cpu_simd::Isa::kAvx2: return NAME##_avx2<D, S, scalar_t>(pb, b, e);
#else
#define VIDOPS_CPU_SIMD_X86_VARIANTS(NAME, IMPL)
#define VIDOPS_CPU_SIMD_X86_CASES(NAME)
#endif

}  // namespace cpu_simd
}  // namespace vidops
