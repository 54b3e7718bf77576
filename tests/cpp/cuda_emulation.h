// Just enough of CUDA to run simple __global__ kernels on CPU threads, for unit tests of kernel
// logic without a GPU: one std::thread per CUDA thread, a barrier for __syncthreads(), one shared
// memory buffer (`smem_raw` in the kernels' namespace, defined by the test), blocks one after the
// other. Kernels are included after this header with VIDOPS_CUDA_EMULATION defined.
#pragma once
#define VIDOPS_CUDA_EMULATION 1

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

struct __half { float v; };
struct __nv_bfloat16 { float v; };
inline float __half2float(__half h) { return h.v; }
inline float __bfloat162float(__nv_bfloat16 h) { return h.v; }
inline __half __float2half_rn(float f) { return {f}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {f}; }

namespace cuda_emulation {

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const long gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  long gen_ = 0;
};

inline Barrier* barrier = nullptr;

// Runs body() as every thread of every block of a 1-D grid of `blocks` blocks of `block` threads;
// before each block, `before_block` (e.g. poisoning shared memory) runs on the calling thread.
template <typename F, typename G>
void launch(unsigned blocks, dim3 block, F body, G before_block) {
  gridDim = dim3(blocks);
  blockDim = block;
  for (unsigned b = 0; b < blocks; ++b) {
    before_block();
    Barrier bar(static_cast<int>(block.x * block.y * block.z));
    barrier = &bar;
    std::vector<std::thread> threads;
    for (unsigned z = 0; z < block.z; ++z)
      for (unsigned y = 0; y < block.y; ++y)
        for (unsigned x = 0; x < block.x; ++x)
          threads.emplace_back([=] {
            threadIdx = dim3(x, y, z);
            blockIdx = dim3(b);
            body();
          });
    for (auto& t : threads) t.join();
  }
}

}  // namespace cuda_emulation

inline void __syncthreads() { cuda_emulation::barrier->wait(); }
