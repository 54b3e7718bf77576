// Launcher API of the fused CUDA Busy/Quiet split (operators.md §1.3): busy = the motion band-pass stem
// (temporal stride 3, "valid" in time), quiet = frame 3s ("first") or mean of the triplet minus busy
// ("mean_minus_busy"), optionally resized bilinearly; one read of the clip, both outputs written.
// Same conventions as the motion band-pass launchers (common/band_pass_problem.h) (raw pointers, element strides, static error strings).
#pragma once
#include <cstdint>

#include "common/band_pass_problem.h"

extern "C" {

struct VidopsBusyQuietProblem {
  VidopsMbpProblem mbp;  // the stem on the clip: temporal_stride 3, temporal_padding kValid, T = 3 S, T_out = S
  int32_t quiet_mode;    // vidops::bq::QuietMode
  int32_t reserved;
  double quiet_scale;    // > 0: bilinear resize of quiet by this factor; <= 0: none
  int64_t quiet_H, quiet_W;  // vidops::bq::resized_size(H or W, quiet_scale)
};

// busy: contiguous (N, C, S, H, W), quiet: contiguous (N, C, S, quiet_H, quiet_W), both in the clip's
// dtype. Launches nothing when they are empty.
const char* vidops_busy_quiet_cuda(const VidopsBusyQuietProblem* problem, const void* clip, const void* spatial_weight,
                                   const void* temporal_weight, void* busy, void* quiet, void* stream);

}  // extern "C"
