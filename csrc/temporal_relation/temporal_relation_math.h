// Pair indexing of the temporal relation descriptor (operators.md §3.1), shared by the CPU and CUDA kernels:
// the P = T(T-1)/2 pairs t1 < t2 in ascending (t1, t2) order (torch.triu_indices(T, T, 1)).
#pragma once
#include <cstdint>

#include "common/host_device.h"

namespace vidops {
namespace trel {

VIDOPS_HD int64_t num_pairs(int64_t T) { return T * (T - 1) / 2; }

// Index of pair (a, b), a != b, in either order.
VIDOPS_HD int64_t pair_index(int64_t a, int64_t b, int64_t T) {
  const int64_t t1 = a < b ? a : b, t2 = a < b ? b : a;
  return t1 * (2 * T - t1 - 1) / 2 + (t2 - t1 - 1);
}

}  // namespace trel
}  // namespace vidops
