/* The baseline build of the focal gradient kernel (softmax_focal_grad_impl.h), with the helpers of
 * softmax_ce_impl.h compiled under this module's own names. */
#include "softmax_ce.h"

#if PL_SOFTMAX_AVAILABLE
#define PL_NAME(fn) fn##_fgbase
#include "softmax_ce_impl.h"
#include "softmax_focal_grad_impl.h"
#else
typedef int pl_softmax_focal_grad_base_empty; /* ISO C: no empty translation unit */
#endif
