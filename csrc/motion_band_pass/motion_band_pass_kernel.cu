// Forward CUDA kernel of the motion band-pass filter (operators.md §1.1):
//     out[n,c,t] = sum_{a,b} K_c[a,b] * pad_s(Y)[n,c,t][i+a, j+b],
//     Y[n,c,t]   = sum_{j=0..2} tw[c,j] * x[n,c, s*t + j - p_t]      (temporal filter first)
// One block per 32 x 32 tile of one output frame (common/tile_cuda.h): it resolves the
// padding of the halo rows and columns once, reads the tile plus a halo of r = (k-1)/2 from the
// three source frames, combines the taps in fp32 (fp64 for float64) while staging Y in shared
// memory with the spatial padding applied, then runs the
// k x k stencil from shared memory, 4 x 4 outputs per thread. x is read through its strides (any
// layout); the output is contiguous in x's dtype.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/tile_cuda.h"
#include "motion_band_pass/motion_band_pass_cuda.h"
#include "motion_band_pass/motion_band_pass_math.h"

namespace vidops {
namespace mbp {
namespace cuda {
namespace {

template <typename scalar_t>
struct FwdParams : StemParams<scalar_t> {
  scalar_t* out;  // (N, C, T_out, H, W) contiguous
  bool vec_out;   // W % 4 == 0 and out aligned: 4 outputs per store
};

template <typename scalar_t, int K>
__global__ void __launch_bounds__(kThreads) mbp_forward_kernel(const FwdParams<scalar_t> p) {
  using acc_t = typename Acc<scalar_t>::type;
  const int k = K > 0 ? K : p.k;
  const Halo h = make_halo(k, 0);
  VIDOPS_DYNAMIC_SMEM(unsigned char, smem);
  int64_t* s_roff = reinterpret_cast<int64_t*>(smem);                       // h.rows source row offsets
  int64_t* s_coff = s_roff + h.rows;                                        // h.stride source column offsets
  acc_t* s_y = reinterpret_cast<acc_t*>(smem + halo_table_bytes(h));      // h.rows x h.stride: Y with halo
  acc_t* s_w = s_y + h.rows * h.stride;                                     // k x weight_row_stride(k)
  const int tx = threadIdx.x % kThreadsX, ty = threadIdx.x / kThreadsX;

  for (int64_t blk = blockIdx.x; blk < p.blocks; blk += gridDim.x) {
    const TileIndex ti = decode_tile(blk, p.tiles_x, p.tiles_y, p.T_out, p.N);
    acc_t acc[kRowsPerThread][kColsPerThread] = {};
    stem_tile<K>(p, ti, h, k, s_roff, s_coff, s_y, s_w, acc);

    const int64_t col = ti.q0 + tx * kColsPerThread;
    if (col < p.W) {
      scalar_t* out_plane = p.out + ((ti.n * p.C + ti.c) * p.T_out + ti.t) * p.H * p.W;
#pragma unroll
      for (int o = 0; o < kRowsPerThread; ++o) {
        const int64_t row = ti.p0 + ty * kRowsPerThread + o;
        if (row < p.H) store_row(out_plane + row * p.W + col, acc[o], p.W - col, p.vec_out);
      }
    }
  }
}

template <typename scalar_t>
const char* forward(const VidopsMbpProblem& pr, const void* x, const void* sw, const void* tw, void* out,
                    void* stream) {
  using acc_t = typename Acc<scalar_t>::type;
  FwdParams<scalar_t> p;
  fill_stem<scalar_t>(p, pr, x, sw, tw);
  p.out = static_cast<scalar_t*>(out);
  p.vec_out = pr.W % kColsPerThread == 0 &&
              reinterpret_cast<uintptr_t>(out) % (sizeof(scalar_t) * kColsPerThread) == 0;
  const Halo h = make_halo(pr.k, 0);
  const size_t smem = halo_table_bytes(h) +
                      static_cast<size_t>(h.rows * h.stride + pr.k * weight_row_stride(pr.k)) * sizeof(acc_t);
  return dispatch_k(pr.k, [&](auto K) {
    return launch_tiles(mbp_forward_kernel<scalar_t, decltype(K)::value>, p, smem, stream);
  });
}

}  // namespace
}  // namespace cuda
}  // namespace mbp
}  // namespace vidops

extern "C" const char* vidops_mbp_forward_cuda(const VidopsMbpProblem* problem, const void* x,
                                               const void* spatial_weight, const void* temporal_weight, void* out,
                                               void* stream) {
  using namespace vidops::mbp;
  using namespace vidops::mbp::cuda;
  if (const char* e = validate_problem(problem)) return e;
  const VidopsMbpProblem& pr = *problem;
  if (pr.N * pr.C * pr.T_out * pr.H * pr.W == 0) return nullptr;
  return dispatch_dtype(pr.dtype, "vidops._motion_band_pass_fwd (CUDA): unsupported dtype", [&](auto tag) {
    return forward<typename decltype(tag)::type>(pr, x, spatial_weight, temporal_weight, out, stream);
  });
}
