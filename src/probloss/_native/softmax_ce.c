/* Softmax-family cross-entropies on float32 rows: the compiled fast paths of
 * sparse categorical, categorical and categorical focal cross-entropy.
 *
 * Every function here works on a range of rows [row_begin, row_end) of a
 * C-contiguous (rows, classes) float32 array, and each row is computed by one
 * thread from its own data only, so the results do not depend on how rows are
 * split between threads (bit-identical for any thread count).
 *
 * The math of a row from logits x (see probloss._numerics.neg_log_softmax):
 *
 *   m   = max(x), a = the first index of m,
 *   S'  = sum over j != a of exp(x_j - m)     (ties at m stay in S' as 1s),
 *   -log softmax(x)_j = (m - x_j) + log1p(S').
 *
 * Both terms are >= 0, so a confident class keeps its tiny loss. The passes:
 *   1. m, the row's minimum and whether the row holds NaN or +inf (such rows
 *      are left NaN for the caller, which recomputes them with the generic
 *      kernel): max, min and an unordered compare per vector;
 *   2. S' with a float32 SIMD exp (below), the terms added in float32 pairs
 *      and then in float64, and a, the first index of m, whose term is left
 *      out (each pair of vectors compared with m until it turns up); with a
 *      gradient buffer, the exps are stored
 *      there; with dense labels, their sums sum_j t_j (m - x_j) and sum_j t_j
 *      (float64; vectors of zero labels skipped) and their range;
 *   3. (gradient only) the exps are scaled in place into the gradient.
 * A row of 32000 classes (125 KiB) stays in L2 between the passes; the next
 * row is prefetched during pass 2.
 *
 * The SIMD exp: exp(d) for d = x - m in [-151, 0] (x clamped at fl(m - 150),
 * so -inf logits need no test: exp(-150) ~ 1e-65 adds nothing a float32
 * result can show; for |m| > 2^20, where fl(m - 150) is too coarse, d itself
 * is clamped). d = fl(x - m) carries a rounding error of up to |d|/2 ulps,
 * which exp turns into the same relative error of the term; TwoSum gives the
 * exact error `err` and it is folded into the reduced argument (exp(d + err)).
 * The reduction: k = round(d/ln 2), r = d - k ln2_hi (exact: Cody-Waite with
 * a 15-bit ln2_hi, |k| <= 218) - k ln2_lo + err, |r| <= 0.36; exp(r) by a
 * degree-6 polynomial fitted for relative error (2^-27.5 on |r| <= 0.36) in
 * Horner form; the result is scaled by 2^(k + 100) rather than 2^k (an
 * integer add to the exponent field): every term is then a normal float32
 * number (terms below 2^-126 keep their bits: S' of a confident row can be a
 * sum of such terms and still a normal float32 loss), and the float64 sum is
 * scaled back by 2^-100 exactly. The error of a term is about 1.5 ulp
 * (argument ~0.4, polynomial and Horner ~1 u); S' of positive terms keeps
 * that relative error plus u = 2^-24 from the float32 pair sums, log1p(S')
 * too, and the float32 loss adds its own rounding: <= ~3 ulps (measured
 * worst 0.5: docs/accuracy.md).
 *
 * The loss alone (no gradient buffer) and |m| <= 128 take a cheaper exp,
 * exps_direct: it never forms x - m, so there is no rounding error to
 * restore. With km = round(m / ln 2), each term is stored as
 * 2^(100 - km) e^x = 2^(k + 100 - km) e^r, k = round(x / ln 2) (from the
 * magic-number addition, whose constant carries 100 - km), r = x - k ln2_hi
 * (exact: |k| <= 402 < 2^9 with the 15-bit ln2_hi, Sterbenz) - k ln2_lo (one
 * rounding, <= 2^-26 absolute); the row's float64 sum is multiplied once by
 * exp(km ln2 - m) (double, ~2^-46 relative). A term's error is then the
 * polynomial's and Horner's ~1.06 u plus ~0.25 u from r, S' adds u from the
 * pair sums: <= ~2.3 u relative on S', hence on log1p(S') (both terms of the
 * loss are >= 0), plus the final rounding: <= ~2.8 ulps. No TwoSum (6
 * operations) and no subtraction: pass 2 does 13 vector operations per
 * vector instead of 21. With a gradient the TwoSum path stays: its terms near
 * the maximum are e^d in [0.7, 1], rounded to 2^-25, which the maximum's
 * entry of a soft-label gradient (a difference of nearly equal numbers)
 * needs; so the loss with a gradient may differ from the loss alone in its
 * last bits, both within the bound.
 */
#include "softmax_glue.h"
#include "softmax_ce.h"

#if PL_SOFTMAX_AVAILABLE

#include <stdlib.h>

/* Each instruction set's build of softmax_ce_impl.h, and the choice at run time. */
#define DECLARE(suffix)                                                                                       \
    void pl_sparse_softmax_ce_rows##suffix(const float *, int64_t, const int64_t *, float *, float *,         \
                                           const float *, double, float *, int64_t, int64_t);                 \
    void pl_softmax_ce_rows##suffix(const float *, const float *, int64_t, float *, float *, const float *,    \
                                    double, float *, float *, int64_t, int64_t);                               \
    void pl_focal_softmax_ce_rows##suffix(const float *, const float *, int64_t, const double *, int64_t,      \
                                          double, float *, float *, float *, int64_t, int64_t);                \
    void pl_sparse_normalized_ce_rows##suffix(const float *, int64_t, const int64_t *, double, double, float *, \
                                              float *, int64_t, int64_t);                                      \
    void pl_normalized_ce_rows##suffix(const float *, const float *, int64_t, double, double, float *, float *, \
                                       float *, int64_t, int64_t);                                               \
    void pl_normalized_ce_grad_rows##suffix(const float *, const float *, int64_t, double, double, float *,    \
                                            float *, int64_t, int64_t);
DECLARE(_base)
#if PL_HAVE_AVX2_BUILD
DECLARE(_avx2)
#endif
#if PL_HAVE_AVX512_BUILD
DECLARE(_avx512)
#endif

const char *pl_softmax_ce_isa(void) { return pl_use_avx512() ? "avx512" : pl_use_avx2() ? "avx2" : "baseline"; }

#if PL_HAVE_AVX512_BUILD
#define PICK(fn) (pl_use_avx512() ? fn##_avx512 : pl_use_avx2() ? fn##_avx2 : fn##_base)
#elif PL_HAVE_AVX2_BUILD
#define PICK(fn) (pl_use_avx2() ? fn##_avx2 : fn##_base)
#else
#define PICK(fn) fn##_base
#endif

void pl_sparse_softmax_ce_rows(const float *logits, int64_t k, const int64_t *labels, float *loss, float *grad,
                               const float *row_scale, double scale, float *bounds, int64_t row_begin,
                               int64_t row_end) {
    PICK(pl_sparse_softmax_ce_rows)(logits, k, labels, loss, grad, row_scale, scale, bounds, row_begin, row_end);
}

void pl_softmax_ce_rows(const float *logits, const float *labels, int64_t k, float *loss, float *grad,
                        const float *row_scale, double scale, float *bounds, float *label_bounds,
                        int64_t row_begin, int64_t row_end) {
    PICK(pl_softmax_ce_rows)(logits, labels, k, loss, grad, row_scale, scale, bounds, label_bounds, row_begin,
                             row_end);
}

void pl_focal_softmax_ce_rows(const float *logits, const float *labels, int64_t k, const double *alpha,
                              int64_t n_alpha, double gamma, float *loss, float *bounds, float *label_bounds,
                              int64_t row_begin, int64_t row_end) {
    PICK(pl_focal_softmax_ce_rows)(logits, labels, k, alpha, n_alpha, gamma, loss, bounds, label_bounds, row_begin,
                                   row_end);
}

void pl_sparse_normalized_ce_rows(const float *probs, int64_t k, const int64_t *labels, double lo, double hi,
                                  float *loss, float *bounds, int64_t row_begin, int64_t row_end) {
    PICK(pl_sparse_normalized_ce_rows)(probs, k, labels, lo, hi, loss, bounds, row_begin, row_end);
}

void pl_normalized_ce_rows(const float *probs, const float *labels, int64_t k, double lo, double hi, float *loss,
                           float *bounds, float *label_bounds, int64_t row_begin, int64_t row_end) {
    PICK(pl_normalized_ce_rows)(probs, labels, k, lo, hi, loss, bounds, label_bounds, row_begin, row_end);
}

void pl_normalized_ce_grad_rows(const float *probs, const float *labels, int64_t k, double lo, double hi,
                                float *loss, float *grad, int64_t row_begin, int64_t row_end) {
    PICK(pl_normalized_ce_grad_rows)(probs, labels, k, lo, hi, loss, grad, row_begin, row_end);
}

#endif /* PL_SOFTMAX_AVAILABLE */
