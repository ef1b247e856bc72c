/* The AVX2 + FMA build of the softmax-family kernels (see softmax_ce_impl.h):
 * GCC compiles it with `#pragma GCC target` (and uses a few AVX intrinsics),
 * Clang with `#pragma clang attribute` (its generic vector code is good as
 * is). Empty where softmax_ce.h has no AVX2 build. */
#include "softmax_ce.h"

#if PL_HAVE_AVX2_BUILD
#define PL_NAME(fn) fn##_avx2
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#include "softmax_ce_impl.h"
#pragma clang attribute pop
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "softmax_ce_impl.h"
#pragma GCC pop_options
#endif
#else
typedef int pl_softmax_ce_avx2_empty; /* ISO C: no empty translation unit */
#endif
