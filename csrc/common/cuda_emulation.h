// Host emulation of the CUDA features vidops kernels use, for tests on machines without a GPU.
// Compile a .cu file as C++ (g++ -x c++ -std=c++17 -pthread -fno-strict-aliasing
// -DVIDOPS_CUDA_EMULATION -I<cuda>/include -Icsrc) and its launchers run every block of the grid
// in turn, on blockDim threads (std::thread) that share the block's shared memory and meet at
// __syncthreads (a barrier). Shared memory is filled with 0xff bytes (NaN) before each block, so a
// read of a cell the block did not write shows up as NaN in the results; a barrier that not every
// thread reaches (divergent __syncthreads) aborts after a timeout instead of hanging.
//
// Not emulated (the kernels must not use them): warp shuffles and votes, atomics, cooperative
// groups, static __shared__ arrays (use VIDOPS_DYNAMIC_SMEM), streams (everything is synchronous).
#pragma once
#ifndef VIDOPS_CUDA_EMULATION
#error "common/cuda_emulation.h is for VIDOPS_CUDA_EMULATION builds only"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

// Device-side qualifiers become plain C++ (host_defines.h already maps __device__, __global__ and
// __host__ to nothing outside nvcc).
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace vidops {
namespace emu {

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long gen = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return generation_ != gen; })) {
      std::fprintf(stderr, "vidops CUDA emulation: __syncthreads not reached by every thread of the block\n");
      std::abort();
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_;
  int arrived_ = 0;
  long generation_ = 0;
};

struct ThreadState {
  uint3 thread_idx{0, 0, 0};
  uint3 block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1};
  dim3 grid_dim{1, 1, 1};
  unsigned char* smem = nullptr;
  Barrier* barrier = nullptr;
};

inline thread_local ThreadState tls;

}  // namespace emu
}  // namespace vidops

#define threadIdx (::vidops::emu::tls.thread_idx)
#define blockIdx (::vidops::emu::tls.block_idx)
#define blockDim (::vidops::emu::tls.block_dim)
#define gridDim (::vidops::emu::tls.grid_dim)

inline void __syncthreads() { ::vidops::emu::tls.barrier->wait(); }

#define VIDOPS_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::vidops::emu::tls.smem)

namespace vidops {
namespace gpu {

constexpr size_t kDefaultSmemBytes = 48 * 1024;
constexpr size_t kEmulatedOptinSmemBytes = 227 * 1024;

// Runs the grid: blocks in turn (x fastest), each on block.x * block.y * block.z threads.
template <typename... KernelArgs, typename... Args>
inline const char* launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, void* /*stream*/,
                          Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0)
    return "vidops CUDA emulation: empty launch configuration";
  if (smem > kEmulatedOptinSmemBytes) return "vidops CUDA emulation: too much dynamic shared memory";
  const std::tuple<std::decay_t<KernelArgs>...> kargs(std::forward<Args>(args)...);
  const int threads = static_cast<int>(block.x * block.y * block.z);
  std::vector<unsigned char> storage(smem + 64);
  unsigned char* base = storage.data();
  base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
  emu::Barrier barrier(threads);
  auto worker = [&](int tid) {
    emu::tls.thread_idx = uint3{static_cast<unsigned>(tid % block.x), static_cast<unsigned>((tid / block.x) % block.y),
                                static_cast<unsigned>(tid / (block.x * block.y))};
    emu::tls.block_dim = block;
    emu::tls.grid_dim = grid;
    emu::tls.smem = base;
    emu::tls.barrier = &barrier;
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          if (tid == 0) std::memset(base, 0xff, smem);  // poison: unwritten cells read as NaN
          barrier.wait();
          emu::tls.block_idx = uint3{bx, by, bz};
          std::apply(kernel, kargs);
          barrier.wait();  // the block is done before the next one reuses shared memory
        }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();
  return nullptr;
}

template <typename... KernelArgs>
inline const char* allow_dynamic_smem(void (*)(KernelArgs...), size_t bytes) {
  return bytes > kEmulatedOptinSmemBytes ? "vidops CUDA emulation: too much dynamic shared memory" : nullptr;
}

inline const char* memset_async(void* ptr, int value, size_t bytes, void* /*stream*/) {
  std::memset(ptr, value, bytes);
  return nullptr;
}

}  // namespace gpu
}  // namespace vidops
