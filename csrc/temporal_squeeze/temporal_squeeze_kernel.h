// Runtime-only CUDA launchers of temporal_squeeze (operators.md §4), called by temporal_squeeze_cuda.cpp.
// sizes = {N, C, K, H, W, D}; x_strides and gy_strides have 5 entries. The basis is passed
// contiguous (N, K, D) in the accumulation dtype (float32, float64 for float64 x); grad_l (N,) too.
// Outputs: y (N, C, D, H, W) contiguous in x's dtype, l_proj (N,) and grad_basis (N, K, D) in the
// accumulation dtype, grad_x (N, C, K, H, W) contiguous in x's dtype. The workspace holds
// vidops_tsp_workspace(...) accumulation-dtype elements (per-block partial sums).
// Returns nullptr on success or a static error message.
#pragma once
#include <cstdint>

extern "C" {

int64_t vidops_tsp_workspace(const int64_t* sizes, int backward);

const char* vidops_tsp_fwd_cuda(const void* x, const void* basis, void* y, void* l_proj, void* workspace, int dtype,
                                const int64_t* sizes, const int64_t* x_strides, double eps, void* stream);

// grad_y (N, C, D, H, W) in x's dtype and grad_l (N,) may be null (zero).
const char* vidops_tsp_bwd_cuda(const void* grad_y, const int64_t* gy_strides, const void* grad_l, int64_t gl_stride,
                                const void* x, const void* basis, void* grad_x, void* grad_basis, void* workspace,
                                int dtype, const int64_t* sizes, const int64_t* x_strides, double eps, void* stream);
}
