// Device helpers for the runtime-only CUDA kernels (include from .cu files only): loads and stores
// that convert between the I/O dtype and the accumulation dtype, and a deterministic block sum.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace vidops {
namespace cuda {

// Accumulation type: double for double I/O, float otherwise.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <typename acc_t> __device__ __forceinline__ acc_t to_acc(float v) { return static_cast<acc_t>(v); }
__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ double as_float(double v) { return v; }
__device__ __forceinline__ float as_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Read-only load converted to acc_t.
template <typename acc_t, typename T>
__device__ __forceinline__ acc_t load(const T* p) {
  return static_cast<acc_t>(as_float(__ldg(p)));
}

template <typename T> struct StoreAs;
template <> struct StoreAs<float> { template <typename A> __device__ static float conv(A v) { return static_cast<float>(v); } };
template <> struct StoreAs<double> { template <typename A> __device__ static double conv(A v) { return static_cast<double>(v); } };
template <> struct StoreAs<__half> { template <typename A> __device__ static __half conv(A v) { return __float2half_rn(static_cast<float>(v)); } };
template <> struct StoreAs<__nv_bfloat16> { template <typename A> __device__ static __nv_bfloat16 conv(A v) { return __float2bfloat16_rn(static_cast<float>(v)); } };

template <typename T, typename A>
__device__ __forceinline__ void store(T* p, A v) { *p = StoreAs<T>::conv(v); }


// Sum of v over the block, valid in thread 0; fixed order (deterministic). `scratch` holds
// blockDim.x / 32 values. Every thread of the block must call it.
template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v, acc_t* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  acc_t s = 0;
  if (threadIdx.x == 0)
    for (int i = 0; i < warps; ++i) s += scratch[i];
  return s;
}

namespace {  // one copy per .cu (a kernel template in a header shared by several translation units)

// Row sums of a (rows, cols) row-major matrix, one block per row, fixed order: out[r] = sum / divisor.
template <typename acc_t>
__global__ void row_sum_kernel(const acc_t* __restrict__ in, acc_t* __restrict__ out, long long rows,
                               long long cols, acc_t divisor) {
  __shared__ acc_t scratch[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    acc_t s = 0;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += in[r * cols + c];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[r] = s / divisor;
  }
}

}  // namespace

}  // namespace cuda
}  // namespace vidops
