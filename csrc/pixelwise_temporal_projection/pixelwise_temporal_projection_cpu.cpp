// CPU kernels of the pixel-wise temporal projection, OpenMP over the rows (n, h) of the output,
// SIMD across neighbouring pixels of a row.
//
// Forward, one pass over x: per row the basis is interpolated vertically into a low-res row
// buffer (never to the full image); per block of L pixels (L = SIMD lanes) the horizontal
// interpolation gives A (T*D vectors), scaled by a power of two per pixel (max |A| in [0.5, 1):
// the result does not depend on the basis's scale), then the packed Gram matrix, lam and the LDL^T factor of
// G = A^T A + lam I (D <= 4 unrolled, pivots floored at lam) are formed once in registers and
// shared by all channels; per channel x is read once into a T-vector buffer with b = A^T x, then
// y = G^{-1} b by substitution and p = x - A y explicitly (pbar = mean_t p, ||p||^2 summed: no
// x^T x - x^T P x cancellation). The per-pixel math is the shared header's
// (common/subspace_math.h, pixelwise_temporal_projection_math.h), instantiated with S = a GCC vector whose lanes are
// pixels. ENoPR: one partial per row (float lanes, summed in double), rows summed in row order:
// deterministic and independent of the thread count.
//
// Backward per block and channel: y = G^{-1} b, p = x - A y, q = grad_pbar/T + 2 g_e p (g_e =
// grad_enopr/(H W C)), z = G^{-1} A^T q, grad_x = q - A z, grad_A -= q y^T + p z^T; after the
// channels grad_A += A (sum_c z y^T) + (2 e / D) tr(sum_c z y^T) A. The adjoint of the horizontal
// interpolation is applied per row; the vertical one in a second pass over the low-res rows that
// sums the full-res rows in ascending order (deterministic, no atomics).
//
// The kernels are compiled three times (baseline x86-64 / other CPUs with 16-byte vectors,
// AVX2+FMA with 32-byte vectors, AVX-512 with 64-byte vectors) and the widest the CPU supports is
// used; VIDOPS_CPU_ISA=base|avx2|avx512 caps it.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/cpu_simd.h"
#include "common/subspace_math.h"
#include "pixelwise_temporal_projection/pixelwise_temporal_projection_math.h"

namespace vidops {
namespace pwtp {
namespace cpu {
namespace {

using namespace ::vidops::cpu_simd;  // NOLINT(google-build-using-namespace)
using namespace ::vidops::subspace;  // NOLINT(google-build-using-namespace)

template <typename S>
struct Resize {  // bilinear table of one axis, padded to a multiple of the widest vector
  std::vector<int64_t> i0, i1;
  std::vector<S> l1;
  Resize(int64_t in, int64_t out) {
    const int64_t padded = (out + 15) / 16 * 16;
    i0.resize(padded);
    i1.resize(padded);
    l1.resize(padded);
    for (int64_t o = 0; o < padded; ++o)  // pad entries repeat the last one (finite lanes)
      bilinear_source<S>(std::min(o, out - 1), in, out, i0[o], i1[o], l1[o]);
  }
};

template <typename scalar_t, typename S>
struct Problem {
  const scalar_t* x;
  const S* basis;         // (N, T*D, h, w) in S
  int64_t N, C, T, H, W, h, w;
  S eps;
  const Resize<S>* ry;
  const Resize<S>* rx;
  // forward
  scalar_t* pbar = nullptr;
  double* row_sums = nullptr;
  // backward
  const S* grad_pbar = nullptr;      // (N, C, H, W) in S
  const double* grad_enopr = nullptr;
  scalar_t* grad_x = nullptr;
  S* grad_basis = nullptr;           // (N, T*D, h, w) in S
  S* rows_buf = nullptr;             // (N, H, T*D, w), when h != H
};

// Per row: the vertically interpolated basis row (T*D rows of w values, stride `stride`).
template <int D, typename S, typename scalar_t>
VIDOPS_AI const S* vertical_row(const Problem<scalar_t, S>& pb, int64_t n, int64_t hh, S* buf, int64_t& stride) {
  const int64_t TD = pb.T * D, h = pb.h, w = pb.w;
  const S* basis_n = pb.basis + n * TD * h * w;
  if (h == pb.H) {
    stride = h * w;
    return basis_n + hh * w;
  }
  const int64_t y0 = pb.ry->i0[hh], y1 = pb.ry->i1[hh];
  const S l1 = pb.ry->l1[hh], l0 = S(1) - l1;
  for (int64_t td = 0; td < TD; ++td) {
    const S* r0 = basis_n + td * h * w + y0 * w;
    const S* r1 = basis_n + td * h * w + y1 * w;
    S* o = buf + td * w;
    for (int64_t j = 0; j < w; ++j) o[j] = l0 * r0[j] + l1 * r1[j];
  }
  stride = w;
  return buf;
}

// The per-pixel solve data of a block of L pixels: the LDL^T factor of G = A'^T A' + lam I for
// the scaled basis A' = s A (pow2_scale per pixel), lam and s.
template <int D, typename V>
struct Block {
  Ldl<D, V> f;
  V lam;
  V scale;
};

template <int D, typename V, typename S, typename scalar_t>
VIDOPS_AI void block_basis(const Problem<scalar_t, S>& pb, const S* rb, int64_t rs, int64_t i0, int nl, V* A,
                           Block<D, V>& blk) {
  constexpr int L = sizeof(V) / sizeof(S);
  constexpr int P = D * (D + 1) / 2;
  const int64_t T = pb.T, TD = T * D;
  if (pb.w == pb.W) {
    for (int64_t td = 0; td < TD; ++td) A[td] = vload<V, S>(rb + td * rs + i0, nl);
  } else {
    const int64_t* x0 = pb.rx->i0.data() + i0;
    const int64_t* x1 = pb.rx->i1.data() + i0;
    const V lx = vload<V, S>(pb.rx->l1.data() + i0, L);
    for (int64_t td = 0; td < TD; ++td) {
      const S* r = rb + td * rs;
      V a0, a1;
      for (int l = 0; l < L; ++l) {
        a0[l] = r[x0[l]];
        a1[l] = r[x1[l]];
      }
      A[td] = a0 + lx * (a1 - a0);
    }
  }
  // A' = s A with max |A'| in [0.5, 1) per pixel (the lanes past the row are 0: s = 0 there)
  V m = V{};
  for (int64_t td = 0; td < TD; ++td) {
    const V a = A[td] < V{} ? -A[td] : A[td];
    m = a > m ? a : m;
  }
  for (int l = 0; l < L; ++l) blk.scale[l] = pow2_scale<S>(m[l]);
  for (int64_t td = 0; td < TD; ++td) A[td] *= blk.scale;
  V g[P];
  for (int k = 0; k < P; ++k) g[k] = V{};
  for (int64_t t = 0; t < T; ++t) {
    const V* a = A + t * D;
    VIDOPS_UNROLL
    for (int d1 = 0; d1 < D; ++d1) {
      VIDOPS_UNROLL
      for (int d2 = 0; d2 <= d1; ++d2) g[tri(d1, d2)] += a[d1] * a[d2];
    }
  }
  blk.lam = regulariser<D, V>(g, splat<V>(pb.eps));
  ldl_factor<D, V>(g, blk.lam, blk.f);
}

template <int D, typename V, typename S, typename scalar_t>
VIDOPS_AI void forward_rows_impl(const Problem<scalar_t, S>& pb, int64_t begin, int64_t end) {
  constexpr int L = sizeof(V) / sizeof(S);
  const int64_t C = pb.C, T = pb.T, H = pb.H, W = pb.W, HW = H * W, TD = T * D;
  std::vector<S> rowbuf(pb.h == H ? 0 : TD * pb.w);
  VecBuf<V> A(TD), xb(T);
  const V inv_T = splat<V>(1.0 / static_cast<double>(T));
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / H, hh = row % H;
    int64_t rs;
    const S* rb = vertical_row<D>(pb, n, hh, rowbuf.data(), rs);
    V racc = V{};
    for (int64_t i0 = 0; i0 < W; i0 += L) {
      const int nl = static_cast<int>(std::min<int64_t>(L, W - i0));
      Block<D, V> blk;
      block_basis<D, V, S>(pb, rb, rs, i0, nl, A.data(), blk);
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xc = pb.x + (n * C + c) * T * HW + hh * W + i0;
        V b[D];
        for (int d = 0; d < D; ++d) b[d] = V{};
        for (int64_t t = 0; t < T; ++t) {
          __builtin_prefetch(xc + t * HW + 4 * L, 0, 3);
          const V xv = vload<V, S>(xc + t * HW, nl);
          xb[t] = xv;
          const V* a = A.data() + t * D;
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) b[d] += a[d] * xv;
        }
        V y[D];
        ldl_solve<D, V>(blk.f, b, y);
        V sp = V{}, sq = V{};
        for (int64_t t = 0; t < T; ++t) {
          const V* a = A.data() + t * D;
          V p = xb[t];
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) p -= a[d] * y[d];
          sp += p;
          sq += p * p;
        }
        racc += sq;  // 0 in the lanes past the row (x = 0 there, so b = y = p = 0)
        vstore<V, S>(pb.pbar + (n * C + c) * HW + hh * W + i0, sp * inv_T, nl);
      }
    }
    pb.row_sums[row] = hsum<V, S>(racc);
  }
}

template <int D, typename V, typename S, typename scalar_t>
VIDOPS_AI void backward_rows_impl(const Problem<scalar_t, S>& pb, int64_t begin, int64_t end) {
  constexpr int L = sizeof(V) / sizeof(S);
  const int64_t C = pb.C, T = pb.T, H = pb.H, W = pb.W, HW = H * W, TD = T * D, h = pb.h, w = pb.w;
  std::vector<S> rowbuf(h == H ? 0 : TD * w), gh(w == W ? 0 : TD * w);
  VecBuf<V> A(TD), ga(TD), pt(T);
  const V inv_T = splat<V>(1.0 / static_cast<double>(T));
  const V two_eps_D = splat<V>(2.0 * static_cast<double>(pb.eps) / D);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / H, hh = row % H;
    int64_t rs;
    const S* rb = vertical_row<D>(pb, n, hh, rowbuf.data(), rs);
    const V ge2 = splat<V>(2.0 * pb.grad_enopr[n] / static_cast<double>(HW * C));
    // this row's slot of the horizontally reduced grad_A
    S* dst;
    int64_t dst_stride;
    if (h == H) {
      dst = pb.grad_basis + n * TD * h * w + hh * w;
      dst_stride = h * w;
    } else {
      dst = pb.rows_buf + row * TD * w;
      dst_stride = w;
    }
    std::fill(gh.begin(), gh.end(), S(0));
    for (int64_t i0 = 0; i0 < W; i0 += L) {
      const int nl = static_cast<int>(std::min<int64_t>(L, W - i0));
      Block<D, V> blk;
      block_basis<D, V, S>(pb, rb, rs, i0, nl, A.data(), blk);
      for (int64_t td = 0; td < TD; ++td) ga[td] = V{};
      V szy[D * D];
      for (int k = 0; k < D * D; ++k) szy[k] = V{};
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xc = pb.x + (n * C + c) * T * HW + hh * W + i0;
        scalar_t* gxc = pb.grad_x + (n * C + c) * T * HW + hh * W + i0;
        const S* gpc = pb.grad_pbar + (n * C + c) * HW + hh * W + i0;
        __builtin_prefetch(gpc + 4 * L, 0, 3);
        const V gpt = vload<V, S>(gpc, nl) * inv_T;
        V b[D];
        for (int d = 0; d < D; ++d) b[d] = V{};
        for (int64_t t = 0; t < T; ++t) {
          // 2 T C streams (x and grad_x) exceed the hardware prefetchers: prefetch 4 blocks ahead
          __builtin_prefetch(xc + t * HW + 4 * L, 0, 3);
          __builtin_prefetch(gxc + t * HW + 4 * L, 1, 3);
          const V xv = vload<V, S>(xc + t * HW, nl);
          pt[t] = xv;
          const V* a = A.data() + t * D;
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) b[d] += a[d] * xv;
        }
        V y[D], atq[D], z[D];
        ldl_solve<D, V>(blk.f, b, y);
        for (int d = 0; d < D; ++d) atq[d] = V{};
        for (int64_t t = 0; t < T; ++t) {  // p = x - A y (kept in pt), A^T q with q = gpt + ge2 p
          const V* a = A.data() + t * D;
          V p = pt[t];
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) p -= a[d] * y[d];
          pt[t] = p;
          const V q = gpt + ge2 * p;
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) atq[d] += a[d] * q;
        }
        ldl_solve<D, V>(blk.f, atq, z);
        VIDOPS_UNROLL
        for (int d = 0; d < D; ++d) {
          VIDOPS_UNROLL
          for (int e = 0; e < D; ++e) szy[d * D + e] += z[d] * y[e];
        }
        for (int64_t t = 0; t < T; ++t) {
          const V* a = A.data() + t * D;
          V az = V{};
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) az += a[d] * z[d];
          const V p = pt[t];
          const V q = gpt + ge2 * p;
          vstore<V, S>(gxc + t * HW, q - az, nl);
          V* g = ga.data() + t * D;
          VIDOPS_UNROLL
          for (int d = 0; d < D; ++d) g[d] -= q * y[d] + p * z[d];
        }
      }
      // grad_A += A Szy + (2 e / D) tr(Szy) A
      V tr = V{};
      for (int d = 0; d < D; ++d) tr += szy[d * D + d];
      const V te = two_eps_D * tr;
      for (int64_t t = 0; t < T; ++t) {
        const V* a = A.data() + t * D;
        V* g = ga.data() + t * D;
        VIDOPS_UNROLL
        for (int e = 0; e < D; ++e) {
          V v = te * a[e];
          VIDOPS_UNROLL
          for (int k = 0; k < D; ++k) v += a[k] * szy[k * D + e];
          g[e] += v;
        }
      }
      for (int64_t td = 0; td < TD; ++td) ga[td] *= blk.scale;  // back from A' = s A to A
      // adjoint of the horizontal interpolation
      if (w == W) {
        for (int64_t td = 0; td < TD; ++td) vstore<V, S>(dst + td * dst_stride + i0, ga[td], nl);
      } else {
        // gh is (w, T*D), td fastest: consecutive updates touch different addresses (no
        // store-to-load forwarding chain through one low-res column).
        const int64_t* x0 = pb.rx->i0.data() + i0;
        const int64_t* x1 = pb.rx->i1.data() + i0;
        const S* lx = pb.rx->l1.data() + i0;
        const S* gs = reinterpret_cast<const S*>(ga.data());
        for (int l = 0; l < nl; ++l) {
          S* o0 = gh.data() + x0[l] * TD;
          S* o1 = gh.data() + x1[l] * TD;
          const S w1 = lx[l], w0 = S(1) - w1;
          for (int64_t td = 0; td < TD; ++td) {
            const S g = gs[td * L + l];
            o0[td] += w0 * g;
            o1[td] += w1 * g;
          }
        }
      }
    }
    if (w != W)
      for (int64_t td = 0; td < TD; ++td)
        for (int64_t j = 0; j < w; ++j) dst[td * dst_stride + j] = gh[j * TD + td];
  }
}

VIDOPS_CPU_SIMD_VARIANTS(forward_rows, forward_rows_impl)
VIDOPS_CPU_SIMD_VARIANTS(backward_rows, backward_rows_impl)

// Adjoint of the vertical interpolation: low-res row j of sample n sums the full-res rows that
// read it, in ascending order.
template <typename S, typename scalar_t>
void vertical_adjoint(const Problem<scalar_t, S>& pb, int64_t TD) {
  const int64_t N = pb.N, H = pb.H, h = pb.h, w = pb.w;
  const Resize<S>& ry = *pb.ry;
  at::parallel_for(0, N * h, grain_for(TD * w * (H / h + 2)), [&](int64_t begin, int64_t end) {
    for (int64_t nj = begin; nj < end; ++nj) {
      const int64_t n = nj / h, j = nj % h;
      for (int64_t td = 0; td < TD; ++td) std::fill_n(pb.grad_basis + n * TD * h * w + td * h * w + j * w, w, S(0));
      for (int64_t hh = 0; hh < H; ++hh) {
        const bool r0 = ry.i0[hh] == j, r1 = ry.i1[hh] == j;
        if (!r0 && !r1) continue;
        const S wgt = (r0 ? S(1) - ry.l1[hh] : S(0)) + (r1 ? ry.l1[hh] : S(0));
        const S* src = pb.rows_buf + (n * H + hh) * TD * w;
        for (int64_t td = 0; td < TD; ++td) {
          S* o = pb.grad_basis + n * TD * h * w + td * h * w + j * w;
          const S* g = src + td * w;
          for (int64_t k = 0; k < w; ++k) o[k] += wgt * g[k];
        }
      }
    }
  });
}

void check_inputs(const at::Tensor& x, const at::Tensor& basis, int64_t D) {
  TORCH_CHECK(x.dim() == 5, "vidops.pixelwise_temporal_projection: x must be (N, C, T, H, W), got ", x.sizes());
  TORCH_CHECK(basis.dim() == 4, "vidops.pixelwise_temporal_projection: basis must be (N, T*D, h, w), got ",
              basis.sizes());
  const int64_t T = x.size(2);
  TORCH_CHECK(D >= 1 && D <= 4 && D < T && basis.size(1) == T * D && basis.size(0) == x.size(0),
              "vidops.pixelwise_temporal_projection: basis must be (N, T*D, h, w) with 1 <= D <= 4, D < T; got D=",
              D, ", x ", x.sizes(), ", basis ", basis.sizes());
  TORCH_CHECK(basis.size(2) >= 1 && basis.size(2) <= x.size(3) && basis.size(3) >= 1 && basis.size(3) <= x.size(4),
              "vidops.pixelwise_temporal_projection: the basis resolution must not exceed x's");
  TORCH_CHECK(x.size(1) >= 1 && x.size(3) >= 1 && x.size(4) >= 1,
              "vidops.pixelwise_temporal_projection: x must have C, H, W >= 1");
}

std::tuple<at::Tensor, at::Tensor> pwtp_fwd_cpu(const at::Tensor& x_, const at::Tensor& basis_, int64_t D,
                                                double eps) {
  check_inputs(x_, basis_, D);
  const at::Tensor x = x_.contiguous();
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor basis = basis_.to(ct).contiguous();
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t h = basis.size(2), w = basis.size(3);
  at::Tensor pbar = at::empty({N, C, H, W}, x.options());
  at::Tensor enopr = at::empty({N}, x.options().dtype(ct));
  if (N == 0) return {pbar, enopr};
  std::vector<double> rows(N * H);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pwtp_fwd_cpu", [&] {
    using S = cpu_simd::compute_t<scalar_t>;
    const Resize<S> ry(h, H), rx(w, W);
    Problem<scalar_t, S> pb{x.data_ptr<scalar_t>(), basis.data_ptr<S>(), N, C, T, H, W, h, w,
                            static_cast<S>(effective_eps<S>(eps)), &ry, &rx};
    pb.pbar = pbar.data_ptr<scalar_t>();
    pb.row_sums = rows.data();
    dispatch_D(D, "pixelwise_temporal_projection", [&](auto Dc) {
      constexpr int Dv = decltype(Dc)::value;
      at::parallel_for(0, N * H, grain_for(W * T * (C + Dv)), [&](int64_t b, int64_t e) {
        forward_rows<Dv, S, scalar_t>(pb, b, e);
      });
    });
    S* e = enopr.data_ptr<S>();
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t r = 0; r < H; ++r) acc += rows[n * H + r];
      e[n] = static_cast<S>(acc / static_cast<double>(H * W * C));
    }
  });
  return {pbar, enopr};
}

std::tuple<at::Tensor, at::Tensor> pwtp_bwd_cpu(const at::Tensor& grad_pbar_, const at::Tensor& grad_enopr_,
                                                const at::Tensor& x_, const at::Tensor& basis_, int64_t D,
                                                double eps) {
  check_inputs(x_, basis_, D);
  const at::Tensor x = x_.contiguous();
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor basis = basis_.to(ct).contiguous();
  const int64_t N = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t h = basis.size(2), w = basis.size(3);
  TORCH_CHECK(grad_pbar_.sizes() == at::IntArrayRef({N, C, H, W}),
              "vidops.pixelwise_temporal_projection: grad_pbar must be (N, C, H, W), got ", grad_pbar_.sizes());
  TORCH_CHECK(grad_enopr_.dim() == 1 && grad_enopr_.size(0) == N,
              "vidops.pixelwise_temporal_projection: grad_enopr must be (N,), got ", grad_enopr_.sizes());
  const at::Tensor grad_pbar = grad_pbar_.to(ct).contiguous();
  const at::Tensor grad_enopr = grad_enopr_.to(at::kDouble).contiguous();
  at::Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor grad_basis = at::empty({N, T * D, h, w}, basis.options());
  if (N == 0) return {grad_x, grad_basis.to(basis_.scalar_type())};
  at::Tensor rows_buf = h == H ? at::Tensor() : at::empty({N, H, T * D, w}, basis.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pwtp_bwd_cpu", [&] {
    using S = cpu_simd::compute_t<scalar_t>;
    const Resize<S> ry(h, H), rx(w, W);
    Problem<scalar_t, S> pb{x.data_ptr<scalar_t>(), basis.data_ptr<S>(), N, C, T, H, W, h, w,
                            static_cast<S>(effective_eps<S>(eps)), &ry, &rx};
    pb.grad_pbar = grad_pbar.data_ptr<S>();
    pb.grad_enopr = grad_enopr.data_ptr<double>();
    pb.grad_x = grad_x.data_ptr<scalar_t>();
    pb.grad_basis = grad_basis.data_ptr<S>();
    pb.rows_buf = h == H ? nullptr : rows_buf.data_ptr<S>();
    dispatch_D(D, "pixelwise_temporal_projection", [&](auto Dc) {
      constexpr int Dv = decltype(Dc)::value;
      at::parallel_for(0, N * H, grain_for(2 * W * T * (C + Dv)), [&](int64_t b, int64_t e) {
        backward_rows<Dv, S, scalar_t>(pb, b, e);
      });
    });
    if (h != H) vertical_adjoint<S>(pb, T * D);
  });
  return {grad_x, grad_basis.to(basis_.scalar_type())};
}

}  // namespace
}  // namespace cpu
}  // namespace pwtp
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_pixelwise_temporal_projection_fwd", &vidops::pwtp::cpu::pwtp_fwd_cpu);
  m.impl("_pixelwise_temporal_projection_bwd", &vidops::pwtp::cpu::pwtp_bwd_cpu);
}
