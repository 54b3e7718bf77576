// Runtime-only CUDA launchers of pixel-wise temporal projection (operators.md §3.2), called by
// pixelwise_temporal_projection_cuda.cpp. Raw pointers, int64 sizes and element strides, a
// vidops::DTypeCode for x (the basis is passed in the accumulation dtype: float32, or float64 for
// float64 x), the cudaStream_t as void*. Each returns nullptr on success or a static error message.
//
// sizes = {N, C, T, H, W, h, w, D}; x_strides has 5 entries, gp_strides 4. The basis must be
// contiguous (N, T*D, h, w) with T*D*h*w < 2^31 (it is the small low-resolution tensor), H*W < 2^31.
// Outputs are contiguous: pbar (N, C, H, W) in x's dtype, enopr (N,) in the accumulation dtype,
// grad_x (N, C, T, H, W) in x's dtype, grad_basis_acc (N, T*D, h, w) in the accumulation dtype and
// zero-filled by the caller (the backward adds into it with atomics).
#pragma once
#include <cstdint>

extern "C" {

// D is 1..4. T <= 8 runs the register kernels; larger T the shared-memory ones, which need
// T * (2D + 1) * 32 * sizeof(acc) bytes of (opt-in) shared memory per block for the backward.
constexpr int64_t vidops_pwtp_cuda_max_d = 4;

// Elements (of the accumulation dtype) of the forward's workspace: one partial ENoPR per block.
int64_t vidops_pwtp_fwd_workspace(int64_t N, int64_t H, int64_t W);

const char* vidops_pwtp_fwd_cuda(const void* x, const void* basis, void* pbar, void* enopr, void* workspace,
                                 int dtype, const int64_t* sizes, const int64_t* x_strides, double eps,
                                 void* stream);

// grad_pbar (N, C, H, W) in x's dtype and grad_enopr (N,) in the accumulation dtype may be null (zero).
const char* vidops_pwtp_bwd_cuda(const void* grad_pbar, const int64_t* gp_strides, const void* grad_enopr,
                                 int64_t ge_stride, const void* x, const void* basis, void* grad_x,
                                 void* grad_basis_acc, int dtype, const int64_t* sizes, const int64_t* x_strides,
                                 double eps, void* stream);
}
