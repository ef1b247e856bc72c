/* The AVX2 + FMA build of the focal gradient kernel (see softmax_ce_avx2.c for the pragmas). */
#include "softmax_ce.h"

#if PL_HAVE_AVX2_BUILD
#define PL_NAME(fn) fn##_fgavx2
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#include "softmax_ce_impl.h"
#include "softmax_focal_grad_impl.h"
#pragma clang attribute pop
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "softmax_ce_impl.h"
#include "softmax_focal_grad_impl.h"
#pragma GCC pop_options
#endif
#else
typedef int pl_softmax_focal_grad_avx2_empty; /* ISO C: no empty translation unit */
#endif
