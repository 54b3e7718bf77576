// Host emulation of the CUDA features vidops kernels use, for tests on machines without a GPU.
// Compile a .cu file as C++ (g++ -x c++ -std=c++17 -fno-strict-aliasing -DVIDOPS_CUDA_EMULATION
// -I<cuda>/include -Icsrc) and its launchers run every block of the grid in turn on the calling
// thread. The block's threads are cooperative fibers (ucontext): in each round every live thread
// runs until its next __syncthreads (or its end), in a freshly shuffled order, so a missing barrier
// (a thread reading a shared cell another thread writes in the same interval) gives wrong or NaN
// results for some order instead of passing by luck. Shared memory is filled with 0xff bytes (NaN)
// before each block, so reading a cell the block never wrote shows up as NaN. A __syncthreads that
// not every thread reaches (divergent barrier, or a thread that ended while others wait) aborts.
// VIDOPS_EMU_SEED sets the shuffling seed (default 12345).
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

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
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

// What the running emulated thread sees as threadIdx, blockIdx, ... and its shared memory.
struct ThreadState {
  uint3 thread_idx{0, 0, 0};
  uint3 block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1};
  dim3 grid_dim{1, 1, 1};
  unsigned char* smem = nullptr;
};

// The scheduler of one launch: fibers of the block's threads, switched at __syncthreads.
struct Scheduler {
  ucontext_t main_ctx;
  std::vector<ucontext_t> ctx;
  std::vector<char*> stacks;
  std::vector<int> done;
  int current = -1;
  void (*body)(void*) = nullptr;  // runs the kernel for the current thread
  void* body_arg = nullptr;
};

inline thread_local ThreadState tls;
inline thread_local Scheduler* scheduler = nullptr;

inline void fiber_entry() {
  Scheduler* s = scheduler;
  s->body(s->body_arg);
  s->done[s->current] = 1;  // returning resumes main_ctx (uc_link)
}

inline void sync_threads() {
  Scheduler* s = scheduler;
  swapcontext(&s->ctx[s->current], &s->main_ctx);
}

}  // namespace emu
}  // namespace vidops

#define threadIdx (::vidops::emu::tls.thread_idx)
#define blockIdx (::vidops::emu::tls.block_idx)
#define blockDim (::vidops::emu::tls.block_dim)
#define gridDim (::vidops::emu::tls.grid_dim)

inline void __syncthreads() { ::vidops::emu::sync_threads(); }

#define VIDOPS_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::vidops::emu::tls.smem)

namespace vidops {
namespace gpu {

constexpr size_t kDefaultSmemBytes = 48 * 1024;
constexpr size_t kEmulatedOptinSmemBytes = 227 * 1024;

// Runs the grid: blocks in turn (x fastest), each on block.x * block.y * block.z fiber threads.
template <typename... KernelArgs, typename... Args>
inline const char* launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, void* /*stream*/,
                          Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0)
    return "vidops CUDA emulation: empty launch configuration";
  if (smem > kEmulatedOptinSmemBytes) return "vidops CUDA emulation: too much dynamic shared memory";
  using Closure = std::pair<void (*)(KernelArgs...), std::tuple<std::decay_t<KernelArgs>...>>;
  Closure closure(kernel, std::tuple<std::decay_t<KernelArgs>...>(std::forward<Args>(args)...));
  const int threads = static_cast<int>(block.x * block.y * block.z);
  constexpr size_t kStackBytes = 256 * 1024;
  std::vector<unsigned char> storage(smem + 64);
  unsigned char* base = storage.data();
  base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
  const char* seed_env = std::getenv("VIDOPS_EMU_SEED");
  std::mt19937 rng(seed_env ? static_cast<unsigned>(std::strtoul(seed_env, nullptr, 10)) : 12345u);

  emu::Scheduler sched;
  sched.ctx.resize(threads);
  sched.done.assign(threads, 0);
  for (int t = 0; t < threads; ++t) sched.stacks.push_back(static_cast<char*>(std::malloc(kStackBytes)));
  sched.body = [](void* arg) {
    auto* c = static_cast<Closure*>(arg);
    std::apply(c->first, c->second);
  };
  sched.body_arg = &closure;
  emu::Scheduler* outer = emu::scheduler;
  emu::scheduler = &sched;
  std::vector<emu::ThreadState> state(threads);
  std::vector<int> order(threads);
  const char* error = nullptr;
  for (unsigned bz = 0; bz < grid.z && !error; ++bz)
    for (unsigned by = 0; by < grid.y && !error; ++by)
      for (unsigned bx = 0; bx < grid.x && !error; ++bx) {
        std::memset(base, 0xff, smem);  // poison: cells read before written are NaN
        for (int t = 0; t < threads; ++t) {
          state[t].thread_idx = uint3{static_cast<unsigned>(t % block.x), static_cast<unsigned>((t / block.x) % block.y),
                                      static_cast<unsigned>(t / (block.x * block.y))};
          state[t].block_idx = uint3{bx, by, bz};
          state[t].block_dim = block;
          state[t].grid_dim = grid;
          state[t].smem = base;
          sched.done[t] = 0;
          getcontext(&sched.ctx[t]);
          sched.ctx[t].uc_stack.ss_sp = sched.stacks[t];
          sched.ctx[t].uc_stack.ss_size = kStackBytes;
          sched.ctx[t].uc_link = &sched.main_ctx;
          makecontext(&sched.ctx[t], emu::fiber_entry, 0);
          order[t] = t;
        }
        for (;;) {  // one round: every live thread runs to its next barrier or its end
          std::shuffle(order.begin(), order.end(), rng);
          for (int t : order) {
            if (sched.done[t]) continue;
            sched.current = t;
            emu::tls = state[t];
            swapcontext(&sched.main_ctx, &sched.ctx[t]);
          }
          int finished = 0;
          for (int t = 0; t < threads; ++t) finished += sched.done[t];
          if (finished == threads) break;
          if (finished > 0) {
            error = "vidops CUDA emulation: __syncthreads not reached by every thread of the block";
            break;
          }
        }
      }
  emu::scheduler = outer;
  for (char* st : sched.stacks) std::free(st);
  return error;
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
