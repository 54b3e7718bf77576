// Schemas of the temporal relation kernels (operators.md §3.1). The public op vidops::temporal_relation is a
// Python custom op (vidops/ops/temporal_relation.py) that calls these on the cpu and cuda backends.
//   _temporal_relation_fwd: f (N,C',T,h,w) -> u (N,T(T-1)/2,h,w), pairs t1 < t2 ascending
//   _temporal_relation_bwd: grad_u (N,T(T-1)/2,h,w), f -> grad_f (N,C',T,h,w)
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def("_temporal_relation_fwd(Tensor f) -> Tensor");
  m.def("_temporal_relation_bwd(Tensor grad_u, Tensor f) -> Tensor");
}
