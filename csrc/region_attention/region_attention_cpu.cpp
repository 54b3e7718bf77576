// CPU kernel of the region_attention softmax forward with shared keys (RNL, k = None): the online
// softmax update of one block of the symmetric logits S_ab = P_a^T P_b (queries a x keys b), for
// both orientations in two passes over the block (vidops/ops/_region_attention_shared_keys.py runs
// the GEMMs around it; its softmax_block_update_torch is the same update in plain PyTorch):
//
//   rows = queries a:     m_a' = max(m_a, max_c s_rc)    alpha_a = exp(m_a - m_a')
//                         s_rc <- exp(s_rc - m_a'_r)     l_a <- alpha_a l_a + sum_c s_rc
//   columns = queries b:  m_b' = max(m_b, max_r s_rc)    alpha_b = exp(m_b - m_b')
//   (not on diagonal      p2t_rc = exp(s_rc - m_b'_c)    l_b <- alpha_b l_b + sum_r p2t_rc
//    blocks)
//
// m and l are updated in place; the caller rescales its accumulators by alpha and adds
// V_b s^T and V_a p2t.
//
// _region_attention_softmax_block_grad: the backward's elementwise step on the same block, in one
// pass (lse from the forward, delta = g . y per query):
//   s <- P1 = exp(s - lse_a)     dp2t <- P2T = exp(s - lse_b^T)
//   dp1 <- P1 o (dp1 - delta_a) + P2T o (dp2t - delta_b^T)    (dS1 + dS2T; dS1 alone on diagonals)
// With the sample's g, v, y position-major (g_t, v_t, y_t: (L, dv)) and the blocks' first
// positions a0, b0, a dominant entry (P > kDominantP, query j, key i) takes dS = P g_j . (v_i - y_j)
// instead of P (dP_ji - delta_j): equal in exact arithmetic, but the latter subtracts two rounded
// dots of size |g||v| whose true difference is ~(1 - P)|g||v|, noise where the attention is
// saturated (y_j = v_i exactly when P is one-hot, so the former is exactly 0 there). Such entries
// are rare (at most 1 / kDominantP per query): the vector pass leaves their term out and a scalar
// pass over the rows that hold one adds it.
// Float in the widest SIMD of the CPU (vec_exp.h), double in scalar code.
// Column sums are formed per task of kRows rows and added in task order: the result does not
// depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

// Wide vector types only cross always-inline boundaries inside target-specific callers.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "common/cpu_isa.h"
#include "common/vec_exp.h"

TORCH_LIBRARY_FRAGMENT(vidops, m) {
  m.def(
      "_region_attention_softmax_block(Tensor(a!) s, Tensor(b!)? p2t, Tensor(c!) m_a, Tensor(d!) l_a, "
      "Tensor(e!)? m_b, Tensor(f!)? l_b) -> (Tensor alpha_a, Tensor alpha_b)");
  m.def(
      "_region_attention_softmax_block_grad(Tensor(a!) s, Tensor(b!) dp1, Tensor(c!)? dp2t, Tensor lse_a, "
      "Tensor? lse_b, Tensor delta_a, Tensor? delta_b, Tensor? g_t=None, Tensor? v_t=None, Tensor? y_t=None, "
      "int a0=0, int b0=0) -> ()");
}

namespace vidops {
namespace rattn {
namespace {

#define VIDOPS_AI inline __attribute__((always_inline))

constexpr int64_t kRows = 16;
// must match DOMINANT_P of vidops/ops/_region_attention_shared_keys.py (the kernel's twin)
constexpr double kDominantP = 0.125;

template <typename S>
struct Block {
  S* s;
  S* p2t;              // null on diagonal blocks (then no column side)
  const S* m_a_new;    // (A)
  const S* m_b_new;    // (B)
  S* part;             // (tasks, B): column maxima (pass 1) then column sums (pass 2)
  S* rowmax;           // (A) pass 1 output
  S* rowsum;           // (A) pass 2 output
  int64_t A, B;
};

template <typename V, typename S>
VIDOPS_AI V splat(S c) {
  V v;
  for (int i = 0; i < static_cast<int>(sizeof(V) / sizeof(S)); ++i) v[i] = c;
  return v;
}

template <typename V, typename S>
VIDOPS_AI V vexp(V x) {
  if constexpr (std::is_same_v<S, float>) {
    return vec::exp_float(x);
  } else {
    for (int i = 0; i < static_cast<int>(sizeof(V) / sizeof(S)); ++i) x[i] = std::exp(x[i]);
    return x;
  }
}

// n valid lanes from p, the rest `fill`.
template <typename V, typename S>
VIDOPS_AI V load(const S* p, int64_t n, S fill) {
  constexpr int64_t VL = sizeof(V) / sizeof(S);
  V v;
  if (n >= VL) {
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  v = splat<V, S>(fill);
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}

template <typename V, typename S>
VIDOPS_AI void store(S* p, const V& v, int64_t n) {
  constexpr int64_t VL = sizeof(V) / sizeof(S);
  if (n >= VL) {
    std::memcpy(p, &v, sizeof(V));
    return;
  }
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}

template <typename V, typename S>
VIDOPS_AI V vmax(V a, V b) {
  return a > b ? a : b;
}

// Pass 1: row maxima, and per task the column maxima of its rows.
template <typename V, typename S>
VIDOPS_AI void maxima_impl(const Block<S>& bk, int64_t t0, int64_t t1) {
  constexpr int64_t VL = sizeof(V) / sizeof(S);
  const S ninf = -std::numeric_limits<S>::infinity();
  const int64_t B = bk.B;
  for (int64_t t = t0; t < t1; ++t) {
    S* cm = bk.p2t != nullptr ? bk.part + t * B : nullptr;
    const int64_t r1 = std::min(bk.A, (t + 1) * kRows);
    for (int64_t r = t * kRows; r < r1; ++r) {
      const S* row = bk.s + r * B;
      V acc = splat<V, S>(ninf);
      for (int64_t c = 0; c < B; c += VL) {
        const V x = load<V, S>(row + c, B - c, ninf);
        acc = vmax<V, S>(acc, x);
        if (cm != nullptr) {
          const V prev = r == t * kRows ? splat<V, S>(ninf) : load<V, S>(cm + c, B - c, ninf);
          store<V, S>(cm + c, vmax<V, S>(prev, x), B - c);
        }
      }
      S mx = acc[0];
      for (int64_t i = 1; i < VL; ++i) mx = std::max(mx, static_cast<S>(acc[i]));
      bk.rowmax[r] = mx;
    }
  }
}

// Pass 2: p2t = exp(s - m_b'), s <- exp(s - m_a'), row sums and per task the column sums.
template <typename V, typename S>
VIDOPS_AI void exp_impl(const Block<S>& bk, int64_t t0, int64_t t1) {
  constexpr int64_t VL = sizeof(V) / sizeof(S);
  const int64_t B = bk.B;
  for (int64_t t = t0; t < t1; ++t) {
    S* cs = bk.p2t != nullptr ? bk.part + t * B : nullptr;
    const int64_t r1 = std::min(bk.A, (t + 1) * kRows);
    for (int64_t r = t * kRows; r < r1; ++r) {
      S* row = bk.s + r * B;
      const V ma = splat<V, S>(bk.m_a_new[r]);
      V acc = splat<V, S>(S(0));
      for (int64_t c = 0; c < B; c += VL) {
        const int64_t n = B - c;
        const V x = load<V, S>(row + c, n, S(0));
        if (cs != nullptr) {
          const V p2 = vexp<V, S>(x - load<V, S>(bk.m_b_new + c, n, S(0)));
          store<V, S>(bk.p2t + r * B + c, p2, n);
          const V prev = r == t * kRows ? splat<V, S>(S(0)) : load<V, S>(cs + c, n, S(0));
          store<V, S>(cs + c, prev + p2, n);
        }
        V p1 = vexp<V, S>(x - ma);
        if (n < VL)
          for (int64_t i = n; i < VL; ++i) p1[i] = S(0);
        store<V, S>(row + c, p1, n);
        acc += p1;
      }
      S sum = 0;
      for (int64_t i = 0; i < VL; ++i) sum += acc[i];
      bk.rowsum[r] = sum;
    }
  }
}

template <typename S>
struct GradBlock {
  S* s;
  S* dp1;
  S* dp2t;  // null on diagonal blocks
  const S *lse_a, *lse_b, *delta_a, *delta_b;
  const S *g_t, *v_t, *y_t;  // (L, dv) position-major; null: no dominant-entry form
  int64_t dv, a0, b0;
  int64_t A, B;
};

// g_j . (v_i - y_j): dP_ji - delta_j without the cancellation of two rounded dots.
template <typename S>
inline S residual_dot(const GradBlock<S>& bk, int64_t j, int64_t i) {
  const S* g = bk.g_t + j * bk.dv;
  const S* v = bk.v_t + i * bk.dv;
  const S* y = bk.y_t + j * bk.dv;
  S acc = 0;
  for (int64_t c = 0; c < bk.dv; ++c) acc += g[c] * (v[c] - y[c]);
  return acc;
}

template <typename V, typename S>
VIDOPS_AI S hmax(const V& v) {
  S m = v[0];
  for (int i = 1; i < static_cast<int>(sizeof(V) / sizeof(S)); ++i) m = std::max(m, static_cast<S>(v[i]));
  return m;
}

template <typename V, typename S>
VIDOPS_AI void grad_impl(const GradBlock<S>& bk, int64_t t0, int64_t t1) {
  constexpr int64_t VL = sizeof(V) / sizeof(S);
  const int64_t B = bk.B;
  const bool dominant = bk.g_t != nullptr;
  const S tau = static_cast<S>(kDominantP);
  const V tauv = splat<V, S>(tau), zero = splat<V, S>(S(0));
  for (int64_t r = t0 * kRows; r < std::min(bk.A, t1 * kRows); ++r) {
    S* srow = bk.s + r * B;
    S* d1 = bk.dp1 + r * B;
    S* d2 = bk.dp2t != nullptr ? bk.dp2t + r * B : nullptr;
    const V la = splat<V, S>(bk.lse_a[r]), da = splat<V, S>(bk.delta_a[r]);
    V pmax = zero;  // the row's largest weight of either orientation (valid lanes only)
    for (int64_t c = 0; c < B; c += VL) {
      const int64_t n = B - c;
      const V x = load<V, S>(srow + c, n, S(0));
      V p1 = vexp<V, S>(x - la);
      V ds = p1 * (load<V, S>(d1 + c, n, S(0)) - da);
      if (dominant) ds = p1 > tauv ? zero : ds;
      if (d2 != nullptr) {
        V p2 = vexp<V, S>(x - load<V, S>(bk.lse_b + c, n, S(0)));
        V ds2 = p2 * (load<V, S>(d2 + c, n, S(0)) - load<V, S>(bk.delta_b + c, n, S(0)));
        if (dominant) {
          ds2 = p2 > tauv ? zero : ds2;
          if (n < VL)
            for (int64_t i = n; i < VL; ++i) p2[i] = S(0);
          pmax = vmax<V, S>(pmax, p2);
        }
        ds += ds2;
        store<V, S>(d2 + c, p2, n);
      }
      if (dominant) {
        if (n < VL)
          for (int64_t i = n; i < VL; ++i) p1[i] = S(0);
        pmax = vmax<V, S>(pmax, p1);
      }
      store<V, S>(srow + c, p1, n);
      store<V, S>(d1 + c, ds, n);
    }
    if (!dominant || !(hmax<V, S>(pmax) > tau)) continue;
    // the row holds a dominant entry: find it by segments of kScan vectors (one horizontal max each)
    constexpr int64_t kScan = 4;
    for (int64_t c0 = 0; c0 < B; c0 += kScan * VL) {
      const int64_t c1 = std::min(B, c0 + kScan * VL);
      V m = zero;
      for (int64_t c = c0; c < c1; c += VL) {
        m = vmax<V, S>(m, load<V, S>(srow + c, c1 - c, S(0)));
        if (d2 != nullptr) m = vmax<V, S>(m, load<V, S>(d2 + c, c1 - c, S(0)));
      }
      if (!(hmax<V, S>(m) > tau)) continue;
      for (int64_t c = c0; c < c1; ++c) {
        if (srow[c] > tau) d1[c] += srow[c] * residual_dot(bk, bk.a0 + r, bk.b0 + c);  // query a0+r, key b0+c
        if (d2 != nullptr && d2[c] > tau) d1[c] += d2[c] * residual_dot(bk, bk.b0 + c, bk.a0 + r);
      }
    }
  }
}

using cpu_isa::VecOf;

#define VIDOPS_RATTN_VARIANTS(NAME, IMPL, BLOCK)                                                            \
  template <typename S>                                                                                     \
  void NAME##_base(const BLOCK<S>& bk, int64_t t0, int64_t t1) {                                            \
    IMPL<typename VecOf<S, 16>::type, S>(bk, t0, t1);                                                       \
  }                                                                                                         \
  template <typename S>                                                                                     \
  __attribute__((target("avx2,fma"))) void NAME##_avx2(const BLOCK<S>& bk, int64_t t0, int64_t t1) {        \
    IMPL<typename VecOf<S, 32>::type, S>(bk, t0, t1);                                                       \
  }                                                                                                         \
  template <typename S>                                                                                     \
  __attribute__((target("avx512f,avx512vl,avx2,fma"))) void NAME##_avx512(const BLOCK<S>& bk, int64_t t0,   \
                                                                         int64_t t1) {                      \
    IMPL<typename VecOf<S, 64>::type, S>(bk, t0, t1);                                                       \
  }                                                                                                         \
  template <typename S>                                                                                     \
  void NAME(const BLOCK<S>& bk, int64_t t0, int64_t t1) {                                                   \
    switch (cpu_isa::detect_isa()) {                                                                        \
      case cpu_isa::Isa::kAvx512: return NAME##_avx512<S>(bk, t0, t1);                                      \
      case cpu_isa::Isa::kAvx2: return NAME##_avx2<S>(bk, t0, t1);                                          \
      default: return NAME##_base<S>(bk, t0, t1);                                                           \
    }                                                                                                       \
  }

#if defined(__x86_64__) && defined(__GNUC__)
VIDOPS_RATTN_VARIANTS(maxima, maxima_impl, Block)
VIDOPS_RATTN_VARIANTS(exps, exp_impl, Block)
VIDOPS_RATTN_VARIANTS(grads, grad_impl, GradBlock)
#else
template <typename S>
void maxima(const Block<S>& bk, int64_t t0, int64_t t1) {
  maxima_impl<typename VecOf<S, 16>::type, S>(bk, t0, t1);
}
template <typename S>
void exps(const Block<S>& bk, int64_t t0, int64_t t1) {
  exp_impl<typename VecOf<S, 16>::type, S>(bk, t0, t1);
}
template <typename S>
void grads(const GradBlock<S>& bk, int64_t t0, int64_t t1) {
  grad_impl<typename VecOf<S, 16>::type, S>(bk, t0, t1);
}
#endif

void check_vector(const char* name, const at::Tensor& t, int64_t n, const at::Tensor& s) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n && t.is_contiguous() && t.scalar_type() == s.scalar_type() &&
                  t.device() == s.device(),
              "vidops.region_attention (softmax block): ", name, " must be a contiguous ", s.scalar_type(),
              " vector of ", n, " elements, got ", t.sizes(), " ", t.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> softmax_block_cpu(at::Tensor s, const std::optional<at::Tensor>& p2t_opt,
                                                     at::Tensor m_a, at::Tensor l_a,
                                                     const std::optional<at::Tensor>& m_b_opt,
                                                     const std::optional<at::Tensor>& l_b_opt) {
  TORCH_CHECK(s.dim() == 2 && s.is_contiguous() &&
                  (s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble),
              "vidops.region_attention (softmax block): s must be a contiguous float32/float64 matrix, got ",
              s.sizes(), " ", s.scalar_type());
  const int64_t A = s.size(0), B = s.size(1);
  const bool cols = p2t_opt.has_value();
  TORCH_CHECK(cols == m_b_opt.has_value() && cols == l_b_opt.has_value(),
              "vidops.region_attention (softmax block): p2t, m_b and l_b go together");
  check_vector("m_a", m_a, A, s);
  check_vector("l_a", l_a, A, s);
  if (cols) {
    TORCH_CHECK(p2t_opt->sizes() == s.sizes() && p2t_opt->is_contiguous() &&
                    p2t_opt->scalar_type() == s.scalar_type(),
                "vidops.region_attention (softmax block): p2t must be a contiguous matrix like s");
    check_vector("m_b", *m_b_opt, B, s);
    check_vector("l_b", *l_b_opt, B, s);
  }
  at::Tensor alpha_a = at::empty({A}, s.options());
  at::Tensor alpha_b = at::empty({cols ? B : 0}, s.options());
  if (A == 0 || B == 0) return {alpha_a.fill_(1), alpha_b.fill_(1)};
  const int64_t tasks = (A + kRows - 1) / kRows;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / (kRows * B));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "region_attention_softmax_block", [&] {
    using S = scalar_t;
    at::Tensor part = at::empty({cols ? tasks : 0, B}, s.options());
    at::Tensor rowmax = at::empty({A}, s.options()), rowsum = at::empty({A}, s.options());
    at::Tensor mb_new = at::empty({cols ? B : 0}, s.options());
    S* ma = m_a.data_ptr<S>();
    S* la = l_a.data_ptr<S>();
    S* aa = alpha_a.data_ptr<S>();
    Block<S> bk{s.data_ptr<S>(), cols ? p2t_opt->data_ptr<S>() : nullptr, rowmax.data_ptr<S>(),
                mb_new.data_ptr<S>(), part.data_ptr<S>(), rowmax.data_ptr<S>(), rowsum.data_ptr<S>(), A, B};
    at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) { maxima<S>(bk, t0, t1); });
    // rowmax becomes m_a' in place (bk.m_a_new points at it)
    for (int64_t r = 0; r < A; ++r) {
      const S mn = std::max(ma[r], bk.rowmax[r]);
      aa[r] = std::exp(ma[r] - mn);  // exp(-inf) = 0 on the first block
      bk.rowmax[r] = mn;
    }
    if (cols) {
      S* mb = m_b_opt->data_ptr<S>();
      S* ab = alpha_b.data_ptr<S>();
      S* mbn = mb_new.data_ptr<S>();
      at::parallel_for(0, B, 1024, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) mbn[c] = mb[c];
        for (int64_t t = 0; t < tasks; ++t)
          for (int64_t c = c0; c < c1; ++c) mbn[c] = std::max(mbn[c], bk.part[t * B + c]);
        for (int64_t c = c0; c < c1; ++c) ab[c] = std::exp(mb[c] - mbn[c]);
      });
    }
    at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) { exps<S>(bk, t0, t1); });
    for (int64_t r = 0; r < A; ++r) {
      la[r] = aa[r] * la[r] + bk.rowsum[r];
      ma[r] = bk.rowmax[r];
    }
    if (cols) {
      S* mb = m_b_opt->data_ptr<S>();
      S* lb = l_b_opt->data_ptr<S>();
      const S* ab = alpha_b.data_ptr<S>();
      const S* mbn = mb_new.data_ptr<S>();
      at::parallel_for(0, B, 1024, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) lb[c] *= ab[c];
        for (int64_t t = 0; t < tasks; ++t)
          for (int64_t c = c0; c < c1; ++c) lb[c] += bk.part[t * B + c];
        for (int64_t c = c0; c < c1; ++c) mb[c] = mbn[c];
      });
    }
  });
  return {alpha_a, alpha_b};
}

void softmax_block_grad_cpu(at::Tensor s, at::Tensor dp1, const std::optional<at::Tensor>& dp2t,
                            const at::Tensor& lse_a, const std::optional<at::Tensor>& lse_b,
                            const at::Tensor& delta_a, const std::optional<at::Tensor>& delta_b,
                            const std::optional<at::Tensor>& g_t, const std::optional<at::Tensor>& v_t,
                            const std::optional<at::Tensor>& y_t, int64_t a0, int64_t b0) {
  TORCH_CHECK(s.dim() == 2 && s.is_contiguous() &&
                  (s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble),
              "vidops.region_attention (softmax block grad): s must be a contiguous float32/float64 matrix, got ",
              s.sizes(), " ", s.scalar_type());
  const int64_t A = s.size(0), B = s.size(1);
  const bool cols = dp2t.has_value();
  TORCH_CHECK(cols == lse_b.has_value() && cols == delta_b.has_value(),
              "vidops.region_attention (softmax block grad): dp2t, lse_b and delta_b go together");
  const at::Tensor& second = cols ? *dp2t : dp1;
  for (const at::Tensor* t : {static_cast<const at::Tensor*>(&dp1), &second})
    TORCH_CHECK(t->sizes() == s.sizes() && t->is_contiguous() && t->scalar_type() == s.scalar_type(),
                "vidops.region_attention (softmax block grad): dp1 and dp2t must be contiguous matrices like s");
  check_vector("lse_a", lse_a, A, s);
  check_vector("delta_a", delta_a, A, s);
  if (cols) {
    check_vector("lse_b", *lse_b, B, s);
    check_vector("delta_b", *delta_b, B, s);
  }
  const bool dominant = g_t.has_value();
  TORCH_CHECK(dominant == v_t.has_value() && dominant == y_t.has_value(),
              "vidops.region_attention (softmax block grad): g_t, v_t and y_t go together");
  int64_t dv = 0;
  if (dominant) {
    const int64_t L = g_t->dim() == 2 ? g_t->size(0) : -1;
    dv = g_t->dim() == 2 ? g_t->size(1) : -1;
    for (const at::Tensor* t : {&*g_t, &*v_t, &*y_t})
      TORCH_CHECK(t->dim() == 2 && t->size(0) == L && t->size(1) == dv && t->is_contiguous() &&
                      t->scalar_type() == s.scalar_type() && t->device() == s.device(),
                  "vidops.region_attention (softmax block grad): g_t, v_t and y_t must be contiguous (L, dv) ",
                  s.scalar_type(), " matrices of one shape, got ", t->sizes(), " ", t->scalar_type());
    TORCH_CHECK(a0 >= 0 && b0 >= 0 && a0 + A <= L && b0 + B <= L,
                "vidops.region_attention (softmax block grad): the block [", a0, ", ", a0 + A, ") x [", b0, ", ",
                b0 + B, ") is outside the ", L, " positions of g_t");
  }
  if (A == 0 || B == 0) return;
  const int64_t tasks = (A + kRows - 1) / kRows;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / (kRows * B));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "region_attention_softmax_block_grad", [&] {
    using S = scalar_t;
    const GradBlock<S> bk{s.data_ptr<S>(),
                          dp1.data_ptr<S>(),
                          cols ? dp2t->data_ptr<S>() : nullptr,
                          lse_a.data_ptr<S>(),
                          cols ? lse_b->data_ptr<S>() : nullptr,
                          delta_a.data_ptr<S>(),
                          cols ? delta_b->data_ptr<S>() : nullptr,
                          dominant ? g_t->data_ptr<S>() : nullptr,
                          dominant ? v_t->data_ptr<S>() : nullptr,
                          dominant ? y_t->data_ptr<S>() : nullptr,
                          dv,
                          a0,
                          b0,
                          A,
                          B};
    at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) { grads<S>(bk, t0, t1); });
  });
}

}  // namespace
}  // namespace rattn
}  // namespace vidops

TORCH_LIBRARY_IMPL(vidops, CPU, m) {
  m.impl("_region_attention_softmax_block", &vidops::rattn::softmax_block_cpu);
  m.impl("_region_attention_softmax_block_grad", &vidops::rattn::softmax_block_grad_cpu);
}
