// dtype codes passed from the C++ glue to the runtime-only CUDA launchers (which see no torch
// headers): the launchers take `int dtype` and raw pointers.
#pragma once

namespace vidops {

enum DTypeCode : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

}  // namespace vidops

#if defined(VIDOPS_WITH_CUDA) && !defined(__CUDACC__)
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

namespace vidops {

inline int dtype_code(c10::ScalarType t, const char* op) {
  switch (t) {
    case c10::ScalarType::Float: return kFloat32;
    case c10::ScalarType::Double: return kFloat64;
    case c10::ScalarType::Half: return kFloat16;
    case c10::ScalarType::BFloat16: return kBFloat16;
    default: TORCH_CHECK(false, "vidops.", op, " (cuda): unsupported dtype ", t);
  }
  return -1;
}

}  // namespace vidops
#endif
