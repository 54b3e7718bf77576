// Launcher API of the CUDA motion band-pass kernels (operators.md §1.1). The kernels are compiled by nvcc
// against the CUDA runtime only (no torch headers, static cudart); the g++-compiled glue
// (motion_band_pass_cuda.cpp) allocates the outputs and calls these with raw pointers, element
// strides and the current stream. Every launcher returns nullptr on success or a static error
// message (a CUDA error string or a named limit).
//
// dtypes: x, grad_out, out and grad_x share VidopsCudaDtype; the weights are float64 for float64 x
// and float32 otherwise (fp32 accumulation for float32/float16/bfloat16, float64 for float64).
// The glue converts the (tiny) weight tensors to that type.
#pragma once
#include <cstdint>

#include "common/band_pass_problem.h"

extern "C" {

// out: contiguous (N, C, T_out, H, W) in x's dtype. Launches nothing when out is empty.
const char* vidops_mbp_forward_cuda(const VidopsMbpProblem* problem, const void* x, const void* spatial_weight,
                                    const void* temporal_weight, void* out, void* stream);

// Bytes of device workspace vidops_mbp_backward_cuda needs (per-block weight-gradient partials,
// plus an fp32/fp64 copy of the spatial adjoint when temporal strides overlap).
int64_t vidops_mbp_backward_workspace_bytes(const VidopsMbpProblem* problem);

// grad_x: contiguous (N, C, T, H, W) in x's dtype; grad_spatial_weight (C, k, k) and
// grad_temporal_weight (C, 3) contiguous in the weights' compute type (float32, float64 for
// float64 x). Deterministic: fixed reduction order, no atomics.
const char* vidops_mbp_backward_cuda(const VidopsMbpProblem* problem, const void* grad_out, const void* x,
                                     const void* spatial_weight, const void* temporal_weight, void* grad_x,
                                     void* grad_spatial_weight, void* grad_temporal_weight, void* workspace,
                                     int64_t workspace_bytes, void* stream);

}  // extern "C"
