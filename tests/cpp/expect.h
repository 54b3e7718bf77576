// Minimal assertions for the C++ unit tests (ctest): count failures, print where, keep going.
#pragma once
#include <cmath>
#include <cstdio>

static int failures = 0;

#define EXPECT_EQ(a, b)                                                                   \
  do {                                                                                    \
    long long va = (long long)(a), vb = (long long)(b);                                   \
    if (va != vb) {                                                                       \
      std::printf("%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, va, vb); \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

#define EXPECT_NEAR(a, b, tol)                                                              \
  do {                                                                                      \
    double va = (double)(a), vb = (double)(b);                                              \
    if (!(std::fabs(va - vb) <= (tol))) {                                                   \
      std::printf("%s:%d: %s == %.17g, expected %.17g\n", __FILE__, __LINE__, #a, va, vb); \
      ++failures;                                                                           \
    }                                                                                       \
  } while (0)
