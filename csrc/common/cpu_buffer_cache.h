// Fresh CPU outputs of the kernels, with the large ones kept off fresh mappings.
//
// glibc maps every allocation over its mmap threshold (32 MB at most) anew and unmaps it on free,
// so each such output is first touched one 4 KB page fault at a time: on this project's VM the
// forward+backward of X3D-M's stride-2 layer with a 43 MB grad_x (N = 1, C = 54, 16 x 112^2) took
// 22 ms, 11 ms when the grad_x reused a freed one. So a freed output of 32 MB and more goes back
// to a cache (the 4 most recent, 512 MB in all; older ones are freed), and the next output of
// 80-100% of its size reuses its already-mapped pages. Fresh buffers of 16 MB and more are
// advised onto 2 MB pages where the kernel's THP policy lets that hint not stall. The cache holds
// only memory the kernels allocated and the tensors have released. VIDOPS_CPU_BUFFER_CACHE=0
// turns the cache off.
#pragma once

#include <ATen/ATen.h>

namespace vidops {
namespace cpu_buffers {

// at::empty(sizes, options.memory_format(format)) for a CPU tensor, its storage from the policy
// above.
at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format);

}  // namespace cpu_buffers
}  // namespace vidops
