/* The baseline build of the softmax-family kernels (see softmax_ce_impl.h). */
#include "softmax_ce.h"

#if PL_SOFTMAX_AVAILABLE
#define PL_NAME(fn) fn##_base
#include "softmax_ce_impl.h"
#else
typedef int pl_softmax_ce_base_empty; /* ISO C: no empty translation unit */
#endif
