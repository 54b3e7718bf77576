// CPU emulation of the small part of the CUDA runtime and device language that the vidops kernels
// use, for testing their index arithmetic on GPU-less machines (tests/cuda_emu/README.md).
// Every CUDA thread of a block is a std::thread; blocks run one after the other; __syncthreads is a
// std::barrier over the block; shuffles go through a block-wide buffer (all lanes of the block
// must call them together, as vidops' block_sum does); atomics are std::atomic_ref.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __restrict__ __restrict

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
typedef void* cudaStream_t;
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace emu {
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<unsigned char> dynamic_smem;
inline std::vector<double> shuffle_buffer;
inline int64_t threads_launched = 0;

inline int linear_tid() { return thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z); }

template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t, Args... args) {
  const unsigned nt = block.x * block.y * block.z;
  grid_dim = grid;
  block_dim = block;
  shuffle_buffer.assign(nt, 0.0);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        dynamic_smem.assign(smem + 16, 0xff);  // NaN bytes: reads of unwritten shared memory show
        std::barrier<> bar(nt);
        block_barrier = &bar;
        std::vector<std::thread> threads;
        threads.reserve(nt);
        for (unsigned t = 0; t < nt; ++t)
          threads.emplace_back([&, t] {
            thread_idx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            block_idx = dim3(bx, by, bz);
            kernel(args...);
          });
        for (auto& th : threads) th.join();
        threads_launched += nt;
      }
}
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

template <typename T>
T __shfl_down_sync(unsigned, T v, int offset) {
  const int tid = emu::linear_tid();
  const int n = static_cast<int>(emu::shuffle_buffer.size());
  emu::shuffle_buffer[tid] = static_cast<double>(v);
  __syncthreads();
  const int lane = tid & 31;
  const T r = (lane + offset < 32 && tid + offset < n) ? static_cast<T>(emu::shuffle_buffer[tid + offset]) : v;
  __syncthreads();
  return r;
}

template <typename T> T __ldg(const T* p) { return *p; }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }

inline const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = 227 * 1024; return cudaSuccess; }
template <class T> cudaError_t cudaFuncSetAttribute(T, cudaFuncAttribute, int) { return cudaSuccess; }
