// Launcher ABI shared by the CUDA kernels of the motion band-pass family (motion_band_pass_cuda.h,
// busy_quiet_cuda.h): the dtype codes and the problem struct the g++ glue
// (common/band_pass_glue_cuda.cpp) fills and the nvcc-compiled launchers read. C layout: the CUDA
// emulation tests (tests/cuda_emulation.py) mirror it with ctypes.
#pragma once
#include <cstdint>

extern "C" {

enum VidopsCudaDtype : int32_t {
  kVidopsFloat32 = 0,
  kVidopsFloat64 = 1,
  kVidopsFloat16 = 2,
  kVidopsBFloat16 = 3,
};

// One motion band-pass call: shapes, modes (vidops::mbp::SpatialPad / TemporalPad) and strides.
struct VidopsMbpProblem {
  int32_t dtype;             // VidopsCudaDtype of x (and grad_out, out, grad_x)
  int32_t k;                 // spatial kernel size, odd
  int32_t temporal_stride;   // >= 1
  int32_t spatial_padding;   // kReflect or kSpatialZeros
  int32_t temporal_padding;  // kValid, kReplicate or kTemporalZeros
  int32_t reserved;
  int64_t N, C, T, H, W;
  int64_t T_out;             // output_frames(T, temporal_stride, temporal_padding) >= 1
  int64_t x_strides[5];      // element strides of x (N, C, T, H, W); any layout
  int64_t grad_strides[5];   // backward only: element strides of grad_out (N, C, T_out, H, W)
};

}  // extern "C"
