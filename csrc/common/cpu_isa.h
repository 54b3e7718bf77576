// The run-time choice of the CPU kernels' instruction set: the widest of baseline x86-64,
// AVX2+FMA and AVX-512 (F + VL) this CPU has, capped by VIDOPS_CPU_ISA=base|avx2|avx512 (tests,
// benchmarks). Read once per process. Kernels compile one variant per ISA with
// __attribute__((target(...))) and switch on detect_isa(), so the build stays portable; VecOf
// names their vector types.
#pragma once
#include <cstdlib>
#include <cstring>

namespace vidops {
namespace cpu_isa {

enum class Isa { kBase, kAvx2, kAvx512 };

// The GCC vector of VB bytes of T that the kernels compile once per ISA (16, 32, 64 bytes).
template <typename T, int VB>
struct VecOf {
  typedef T type __attribute__((vector_size(VB)));
};

inline Isa detect_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const Isa isa = [] {
    __builtin_cpu_init();
    Isa best = Isa::kBase;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
    if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
      best = Isa::kAvx512;
    const char* cap = std::getenv("VIDOPS_CPU_ISA");
    if (cap != nullptr && std::strcmp(cap, "base") == 0) return Isa::kBase;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) return Isa::kAvx2;
    return best;
  }();
  return isa;
#else
  return Isa::kBase;
#endif
}

}  // namespace cpu_isa
}  // namespace vidops
