/* The AVX-512 build of the softmax-family kernels (see softmax_ce_impl.h): the
 * same 8-lane code as softmax_ce_avx2.c, compiled with AVX-512F/VL/BW/DQ
 * enabled. The vectors stay 256 bits wide (no 512-bit frequency drop, and on
 * AMD Zen 4 a 512-bit operation takes two of the same pipes anyway); what the
 * build buys is AVX-512's 32 vector registers: pass 2 of a categorical row
 * holds the exp's constants, the float64 sums and the labels' sums and range,
 * more than AVX2's 16 registers, so the AVX2 build reloads spilled constants
 * from the stack in its hottest loop (seen in its assembly). Measured on
 * AMD EPYC (Zen 4), one thread, 4096 x 1000 categorical CE: 5% faster; the
 * same operations in the same order, so the same bits as the AVX2 build
 * (tests/test_native_softmax.py). Empty where softmax_ce.h has no AVX-512 build. */
#include "softmax_ce.h"

#if PL_HAVE_AVX512_BUILD
#define PL_NAME(fn) fn##_avx512
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq"))), \
                             apply_to = function)
#include "softmax_ce_impl.h"
#pragma clang attribute pop
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq")
#include "softmax_ce_impl.h"
#pragma GCC pop_options
#endif
#else
typedef int pl_softmax_ce_avx512_empty; /* ISO C: no empty translation unit */
#endif
