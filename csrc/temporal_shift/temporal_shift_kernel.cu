// CUDA kernel of the temporal shift, runtime only (no torch headers).
//
//   out[n*T + t, c, h, w] = x[n*T + t + d(c), c, h, w]  if 0 <= t + d(c) < T, else 0,
//   d(c) = +1 on [0, fold), -1 on [fold, 2 fold), 0 after (negated for the backward, the mirror shift).
//
// One thread per output element in the output's memory order (contiguous or channels_last), so the
// stores are coalesced and so are the loads whenever x has the output's layout; any input strides
// are read as they are. Grid-stride loop; 32-bit index arithmetic when every offset fits. The shift
// copies bit patterns (2-, 4- or 8-byte elements): exact for every floating dtype.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda_check.h"
#include "temporal_shift/temporal_shift_kernel.h"
#include "temporal_shift/temporal_shift_math.h"

namespace vidops {
namespace shift_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535LL * 16;

template <typename index_t>
struct Args {
  index_t total, T, C, H, W, fold;
  index_t s0, s1, s2, s3;
};

template <typename E, typename index_t, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads)
    shift_kernel(const E* __restrict__ x, E* __restrict__ out, const Args<index_t> a, const bool backward) {
  const index_t step = static_cast<index_t>(gridDim.x) * kThreads;
  for (index_t i = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x; i < a.total; i += step) {
    index_t c, h, w, nt;
    if (kChannelsLast) {
      c = i % a.C;
      const index_t p = i / a.C;
      w = p % a.W;
      const index_t q = p / a.W;
      h = q % a.H;
      nt = q / a.H;
    } else {
      w = i % a.W;
      const index_t p = i / a.W;
      h = p % a.H;
      const index_t q = p / a.H;
      c = q % a.C;
      nt = q / a.C;
    }
    const index_t d = static_cast<index_t>(vidops::tshift::frame_offset(c, a.fold, backward));
    const index_t ts = nt % a.T + d;
    out[i] = (ts < 0 || ts >= a.T) ? E(0) : x[(nt + d) * a.s0 + c * a.s1 + h * a.s2 + w * a.s3];
  }
}

template <typename E, typename index_t>
const char* launch(const void* x, void* out, const Args<index_t>& a, bool channels_last, bool backward,
                   cudaStream_t stream) {
  int64_t blocks = (static_cast<int64_t>(a.total) + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  const dim3 grid(static_cast<unsigned>(blocks));
  const E* xp = static_cast<const E*>(x);
  E* op = static_cast<E*>(out);
  if (channels_last) {
    shift_kernel<E, index_t, true><<<grid, kThreads, 0, stream>>>(xp, op, a, backward);
  } else {
    shift_kernel<E, index_t, false><<<grid, kThreads, 0, stream>>>(xp, op, a, backward);
  }
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename index_t>
Args<index_t> make_args(const int64_t* sizes, const int64_t* st, int64_t T, int64_t fold) {
  Args<index_t> a;
  a.total = static_cast<index_t>(sizes[0] * sizes[1] * sizes[2] * sizes[3]);
  a.T = static_cast<index_t>(T);
  a.C = static_cast<index_t>(sizes[1]);
  a.H = static_cast<index_t>(sizes[2]);
  a.W = static_cast<index_t>(sizes[3]);
  a.fold = static_cast<index_t>(fold);
  a.s0 = static_cast<index_t>(st[0]);
  a.s1 = static_cast<index_t>(st[1]);
  a.s2 = static_cast<index_t>(st[2]);
  a.s3 = static_cast<index_t>(st[3]);
  return a;
}

template <typename E>
const char* run(const void* x, void* out, const int64_t* sizes, const int64_t* st, bool channels_last, int64_t T,
                int64_t fold, bool backward, cudaStream_t stream) {
  const int64_t total = sizes[0] * sizes[1] * sizes[2] * sizes[3];
  int64_t max_offset = 0;  // the largest input offset read; a grid-stride index may pass total by one step
  for (int k = 0; k < 4; ++k) max_offset += (sizes[k] - 1) * st[k];
  const int64_t limit = INT32_MAX / 2;
  if (total <= limit && max_offset <= limit)
    return launch<E, int32_t>(x, out, make_args<int32_t>(sizes, st, T, fold), channels_last, backward, stream);
  return launch<E, int64_t>(x, out, make_args<int64_t>(sizes, st, T, fold), channels_last, backward, stream);
}

}  // namespace
}  // namespace shift_cuda
}  // namespace vidops

extern "C" const char* vidops_temporal_shift_cuda(const void* x, void* out, int element_bytes, const int64_t* sizes,
                                                  const int64_t* x_strides, int out_channels_last,
                                                  int64_t num_segments, int64_t fold, int backward, void* stream) {
  using namespace vidops::shift_cuda;
  if (sizes[0] * sizes[1] * sizes[2] * sizes[3] == 0) return nullptr;
  if (num_segments < 1) return "temporal_shift (cuda): num_segments must be >= 1";
  auto s = static_cast<cudaStream_t>(stream);
  const bool cl = out_channels_last != 0, bw = backward != 0;
  switch (element_bytes) {
    case 2: return run<uint16_t>(x, out, sizes, x_strides, cl, num_segments, fold, bw, s);
    case 4: return run<uint32_t>(x, out, sizes, x_strides, cl, num_segments, fold, bw, s);
    case 8: return run<uint64_t>(x, out, sizes, x_strides, cl, num_segments, fold, bw, s);
    default: return "temporal_shift (cuda): unsupported element size";
  }
}
