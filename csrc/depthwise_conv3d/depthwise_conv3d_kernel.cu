// CUDA launchers of the depthwise 3-D convolution (operators.md §2). Runtime-only: no torch headers; the C++
// glue (depthwise_conv3d_cuda.cpp) passes raw pointers, sizes and the current stream, and turns a
// returned message into a TORCH_CHECK. The kernels and their design: depthwise_conv3d_kernels.cuh.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda_check.h"
#include "depthwise_conv3d/depthwise_conv3d_kernels.cuh"

namespace vidops {
namespace dwc {
namespace {

using namespace gpu;

// ---- launchers --------------------------------------------------------------------------------

template <typename T, typename A, int TW, int RPT>
const char* launch_fwd(const void* x, const void* w, void* y, const Shape& d, bool flip, cudaStream_t stream) {
  constexpr int TH = FwdTile<TW, RPT>::TH;
  int64_t tiles_h, tiles_w;
  const int64_t blocks = fwd_blocks(d, TH, TW, tiles_h, tiles_w);
  if (blocks > 0x7fffffffLL) return "vidops depthwise_conv3d: too many CUDA blocks for one launch";
  const size_t smem = fwd_smem_bytes<A>(d, TH, TW);
  if (smem > 48 * 1024) return "vidops depthwise_conv3d: kernel too large for the CUDA forward tile (shared memory)";
  dwc_fwd_kernel<T, A, TW, RPT><<<static_cast<unsigned>(blocks), dim3(TW, FwdTile<TW, RPT>::TY), smem, stream>>>(
      static_cast<const T*>(x), static_cast<const A*>(w), static_cast<T*>(y), d, flip, tiles_h, tiles_w);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

template <typename T, typename A>
const char* fwd_typed(const void* x, const void* w, void* y, const Shape& d, bool flip, cudaStream_t stream) {
  if (d.W <= 16) return launch_fwd<T, A, 16, 1>(x, w, y, d, flip, stream);  // 16 x 16 tiles
  return launch_fwd<T, A, 32, 2>(x, w, y, d, flip, stream);                 // 32 x 16 tiles
}

template <typename T, typename A>
const char* wgrad_typed(const void* g, const void* x, void* partial, void* gw, const Shape& d, int64_t chunks,
                        cudaStream_t stream) {
  const int groups = wgrad_groups(d.kh * d.kw);
  const size_t smem = wgrad_smem_bytes<A>(d, groups);
  if (smem > 48 * 1024) return "vidops depthwise_conv3d: kernel too large for the CUDA weight-gradient tile (shared memory)";
  const int64_t blocks = d.C * chunks;
  if (blocks > 0x7fffffffLL) return "vidops depthwise_conv3d: too many CUDA blocks for one launch";
  dwc_wgrad_kernel<T, A><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(
      static_cast<const T*>(g), static_cast<const T*>(x), static_cast<A*>(partial), d, chunks, groups);
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const int64_t n = d.C * d.taps();
  dwc_wgrad_reduce_kernel<A><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
      static_cast<const A*>(partial), static_cast<A*>(gw), d.C, chunks, d.taps());
  VIDOPS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return nullptr;
}

}  // namespace
}  // namespace dwc
}  // namespace vidops

using vidops::dwc::Shape;

// x, y: (N, C, T, H, W) contiguous of dtype; w: (C, kt*kh*kw) contiguous float (double for kF64).
extern "C" const char* vidops_dwc_fwd_cuda(const void* x, const void* w, void* y, int dtype, int64_t N,
                                           int64_t C, int64_t T, int64_t H, int64_t W, int kt, int kh, int kw,
                                           bool flip, void* stream) {
  const Shape d{N, C, T, H, W, kt, kh, kw};
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  using namespace vidops::dwc;
  using namespace vidops::dwc::gpu;
  switch (dtype) {
    case kF32: return fwd_typed<float, float>(x, w, y, d, flip, s);
    case kF64: return fwd_typed<double, double>(x, w, y, d, flip, s);
    case kF16: return fwd_typed<__half, float>(x, w, y, d, flip, s);
    case kBF16: return fwd_typed<__nv_bfloat16, float>(x, w, y, d, flip, s);
    default: return "vidops depthwise_conv3d: unsupported dtype code";
  }
}

// g, x: (N, C, T, H, W) contiguous of dtype; partial: (C, chunks, taps) and gw: (C, taps) of the
// accumulation type (float, double for kF64).
extern "C" const char* vidops_dwc_wgrad_cuda(const void* g, const void* x, void* partial, void* gw, int dtype,
                                             int64_t N, int64_t C, int64_t T, int64_t H, int64_t W, int kt,
                                             int kh, int kw, int64_t chunks, void* stream) {
  const Shape d{N, C, T, H, W, kt, kh, kw};
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  using namespace vidops::dwc;
  using namespace vidops::dwc::gpu;
  switch (dtype) {
    case kF32: return wgrad_typed<float, float>(g, x, partial, gw, d, chunks, s);
    case kF64: return wgrad_typed<double, double>(g, x, partial, gw, d, chunks, s);
    case kF16: return wgrad_typed<__half, float>(g, x, partial, gw, d, chunks, s);
    case kBF16: return wgrad_typed<__nv_bfloat16, float>(g, x, partial, gw, d, chunks, s);
    default: return "vidops depthwise_conv3d: unsupported dtype code";
  }
}
