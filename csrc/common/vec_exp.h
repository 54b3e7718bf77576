// exp(x) on GCC float vectors (any width) for the CPU kernels: Cody-Waite range reduction
// x = n ln2 + r, |r| <= ln2 / 2, then the degree-7 Cephes-style polynomial for e^r (about 1 ulp
// on [-87.3, 88]). Inputs below -87.336 (exp underflows past the smallest normal float),
// -inf included, give exactly 0; inputs above 88 are clamped there (callers pass x <= 0).
// Header-only, always inline: it takes the ISA of the target-attributed function it is inlined in.
#pragma once
#include <cstdint>
#include <cstring>

namespace vidops {
namespace vec {

template <typename V>
inline __attribute__((always_inline)) V exp_float(V x) {
  typedef int32_t VI __attribute__((vector_size(sizeof(V))));
  constexpr int kLanes = sizeof(V) / sizeof(float);
  auto splat = [](float c) {
    V v;
    for (int i = 0; i < kLanes; ++i) v[i] = c;
    return v;
  };
  const V lo = splat(-87.33654f), hi = splat(88.0f);
  const VI underflow = x < lo;  // -1 where the result is 0 (also -inf)
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // round(x / ln2) by the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22; no -ffast-math here)
  const V magic = splat(12582912.0f);
  const V n = (x * splat(1.44269504088896341f) + magic) - magic;
  V r = x - n * splat(0.693359375f);  // ln2 in two parts: the first exact in 9 bits
  r = r - n * splat(-2.12194440e-4f);
  V p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  const V e = p * (r * r) + r + splat(1.0f);
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;  // 2^n, n in [-126, 127]
  V scale;
  std::memcpy(&scale, &bits, sizeof(V));
  V out = e * scale;
  VI ob;
  std::memcpy(&ob, &out, sizeof(V));
  ob &= ~underflow;
  std::memcpy(&out, &ob, sizeof(V));
  return out;
}

}  // namespace vec
}  // namespace vidops
