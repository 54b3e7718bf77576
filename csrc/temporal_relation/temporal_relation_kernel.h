// Runtime-only CUDA launchers of temporal_relation (operators.md §3.1), called by temporal_relation_cuda.cpp.
// sizes = {N, C', T, h, w}; f_strides has 5 entries, gu_strides 4 (grad_u is (N, T(T-1)/2, h, w)).
// Outputs are contiguous in f's dtype: u (N, T(T-1)/2, h, w), grad_f (N, C', T, h, w).
// Returns nullptr on success or a static error message.
#pragma once
#include <cstdint>

extern "C" {

const char* vidops_temporal_relation_fwd_cuda(const void* f, void* u, int dtype, const int64_t* sizes,
                                              const int64_t* f_strides, void* stream);

const char* vidops_temporal_relation_bwd_cuda(const void* grad_u, const int64_t* gu_strides, const void* f,
                                              void* grad_f, int dtype, const int64_t* sizes,
                                              const int64_t* f_strides, void* stream);
}
