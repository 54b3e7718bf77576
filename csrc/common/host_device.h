// Marks per-element math shared by the CUDA kernels (nvcc) and the CPU kernels (g++), so the CPU
// tests exercise the same index and stencil arithmetic the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define VIDOPS_HD __host__ __device__ __forceinline__
#else
#define VIDOPS_HD inline
#endif
