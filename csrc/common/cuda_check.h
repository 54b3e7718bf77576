// Error reporting for the runtime-only .cu launchers: they return a message (nullptr on success)
// that the C++ glue turns into a TORCH_CHECK, so a failed launch names the op and the CUDA error.
#pragma once
#include <cuda_runtime.h>

#define VIDOPS_CUDA_RETURN_IF_ERROR(expr)                 \
  do {                                                    \
    cudaError_t err__ = (expr);                           \
    if (err__ != cudaSuccess) return cudaGetErrorString(err__); \
  } while (0)
