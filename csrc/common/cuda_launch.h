// The few CUDA runtime services the vidops .cu launchers use, behind one interface with two
// implementations:
//   - nvcc (the real build): kernel launch on a stream, dynamic shared memory, device limits;
//   - VIDOPS_CUDA_EMULATION (g++, tests only): the same kernels run on the CPU, each block on
//     blockDim.x std::threads with a barrier for __syncthreads (common/cuda_emulation.h), so the
//     kernels' index, halo and reduction logic is tested on GPU-less machines.
// Kernel code declares its dynamic shared memory with VIDOPS_DYNAMIC_SMEM and calls no CUDA
// runtime function directly.
#pragma once

#ifdef VIDOPS_CUDA_EMULATION
#include "common/cuda_emulation.h"
#else
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

// The block's dynamic shared memory as a `type*` named `name` (16-byte aligned).
#define VIDOPS_DYNAMIC_SMEM(type, name)                              \
  extern __shared__ __align__(16) unsigned char vidops_dynamic_smem[]; \
  type* name = reinterpret_cast<type*>(vidops_dynamic_smem)

namespace vidops {
namespace gpu {

// Shared memory a block may use without opting in (cudaFuncSetAttribute).
constexpr size_t kDefaultSmemBytes = 48 * 1024;

inline const char* error_string(cudaError_t err) { return err == cudaSuccess ? nullptr : cudaGetErrorString(err); }

// Launches kernel<<<grid, block, smem, stream>>>(args...) and returns the launch error, if any.
template <typename... KernelArgs, typename... Args>
inline const char* launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, void* stream,
                          Args&&... args) {
  kernel<<<grid, block, smem, static_cast<cudaStream_t>(stream)>>>(std::forward<Args>(args)...);
  return error_string(cudaGetLastError());
}

// Lets `kernel` use `bytes` of dynamic shared memory on the current device (opting in past 48 KiB);
// an error message when the device cannot give that much.
template <typename... KernelArgs>
inline const char* allow_dynamic_smem(void (*kernel)(KernelArgs...), size_t bytes) {
  if (bytes <= kDefaultSmemBytes) return nullptr;
  int device = 0, optin = 0;
  if (const char* e = error_string(cudaGetDevice(&device))) return e;
  if (const char* e = error_string(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)))
    return e;
  if (bytes > static_cast<size_t>(optin))
    return "vidops CUDA kernel: the kernel size needs more shared memory per block than this GPU has";
  return error_string(
      cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes)));
}

inline const char* memset_async(void* ptr, int value, size_t bytes, void* stream) {
  return error_string(cudaMemsetAsync(ptr, value, bytes, static_cast<cudaStream_t>(stream)));
}

}  // namespace gpu
}  // namespace vidops
#endif
