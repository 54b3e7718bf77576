// Fresh CPU output tensors of 32 MB and more, from a small cache of the kernels' freed outputs.
//
// glibc maps every allocation over its mmap threshold (32 MB at most) anew and unmaps it on free,
// so each such output is first touched one 4 KB page fault at a time: on this project's VM the
// forward+backward of X3D-M's stride-2 layer with a 43 MB grad_x (N = 1, C = 54, 16 x 112^2) took
// 22 ms, 11 ms with the cache. A freed output of this size goes back to the cache instead (the 4 most recent,
// 512 MB in all; older ones are freed), and the next output of 80-100% of its size reuses its
// already-mapped pages. The cache holds only memory the kernels allocated and the tensors have
// released. VIDOPS_CPU_BUFFER_CACHE=0 turns it off.
#pragma once

#include <ATen/ATen.h>

namespace vidops {
namespace cpu_buffers {

// at::empty(sizes, options.memory_format(format)) for a CPU tensor; from the cache when it has
// 32 MB or more.
at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format);

}  // namespace cpu_buffers
}  // namespace vidops
