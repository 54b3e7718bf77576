// Runtime-only CUDA launcher of the temporal shift, called by temporal_shift_cuda.cpp.
// sizes = {N*T, C, H, W}; x_strides the input's 4 strides (elements, any layout); `out` is a new
// tensor of the same sizes, channels_last when out_channels_last != 0, contiguous otherwise.
// element_bytes is 2, 4 or 8 (the shift copies bit patterns). backward != 0 runs the mirror shift.
// Returns nullptr on success or a static error message.
#pragma once
#include <cstdint>

extern "C" {

const char* vidops_temporal_shift_cuda(const void* x, void* out, int element_bytes, const int64_t* sizes,
                                       const int64_t* x_strides, int out_channels_last, int64_t num_segments,
                                       int64_t fold, int backward, void* stream);
}
