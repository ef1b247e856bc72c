/* softmax_ce.h: softmax-family cross-entropy kernels on float32 rows.
 *
 * Sparse categorical, categorical and categorical focal cross-entropy from
 * logits, and sparse and categorical cross-entropy from probabilities. Each
 * function computes rows [row_begin, row_end) of C-contiguous (rows, k)
 * arrays; a row is computed from its own data only, so splitting rows between
 * threads in any way gives bit-identical results. softmax_ce.c documents the
 * math and its error bounds; softmax_ce_impl.h holds the code.
 *
 * Rows the kernels leave to the caller get a NaN loss: a NaN or +inf logit or
 * no finite one; a negative, NaN or infinite probability, or a zero row; a
 * sparse label outside [0, k). (The Python layer recomputes them with the
 * generic kernel, which defines the result there.) A -inf logit is handled.
 *
 * Requires GCC or Clang (vector extensions): PL_SOFTMAX_AVAILABLE is 0
 * elsewhere (MSVC), and the functions are then not defined.
 */
#ifndef PROBLOSS_SOFTMAX_CE_H
#define PROBLOSS_SOFTMAX_CE_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define PL_SOFTMAX_AVAILABLE 1
#else
#define PL_SOFTMAX_AVAILABLE 0
#endif

/* An AVX2 + FMA build of the kernels is compiled (x86-64, GCC or Clang). */
#if PL_SOFTMAX_AVAILABLE && defined(__x86_64__)
#define PL_HAVE_AVX2_BUILD 1
#else
#define PL_HAVE_AVX2_BUILD 0
#endif

/* And an AVX-512 (F, VL, BW, DQ) build of the same 8-lane code (softmax_ce_avx512.c):
 * GCC >= 5 or Clang >= 8 (their AVX-512VL target attributes). */
#if PL_HAVE_AVX2_BUILD && (defined(__clang__) ? (__clang_major__ >= 8) : (__GNUC__ >= 5))
#define PL_HAVE_AVX512_BUILD 1
#else
#define PL_HAVE_AVX512_BUILD 0
#endif

#if PL_SOFTMAX_AVAILABLE

/* "avx512", "avx2" or "baseline": the build the kernels run on this CPU
 * (PROBLOSS_NATIVE_BASELINE=1 in the environment forces the baseline,
 * PROBLOSS_NATIVE_NO_AVX512=1 the AVX2 build where the CPU has AVX2). */
const char *pl_softmax_ce_isa(void);

/* Sparse categorical cross-entropy from logits: loss[r] = -log softmax(x_r)[labels[r]].
 * grad (may be NULL) receives s_r (softmax(x_r) - onehot(labels[r])) with
 * s_r = scale * (row_scale ? row_scale[r] : 1); rows left to the caller get NaN.
 * bounds (may be NULL; 2 floats per row) receives each row's minimum (NaN where
 * the row holds a NaN) and maximum, from the first pass (for the data checks);
 * likewise in the two functions below. */
void pl_sparse_softmax_ce_rows(const float *logits, int64_t k, const int64_t *labels, float *loss, float *grad,
                               const float *row_scale, double scale, float *bounds, int64_t row_begin,
                               int64_t row_end);

/* Categorical cross-entropy from logits: loss[r] = sum_j t_j -log softmax(x_r)_j.
 * grad (may be NULL): s_r (softmax(x_r) sum_j t_j - t), s_r as above.
 * label_bounds (may be NULL; 2 floats per row) receives each row's minimum and
 * maximum label, or NaN, NaN where a label is not a finite number >= 0 (or is
 * -0.0): "not known", the caller checks that row itself. Likewise below. */
void pl_softmax_ce_rows(const float *logits, const float *labels, int64_t k, float *loss, float *grad,
                        const float *row_scale, double scale, float *bounds, float *label_bounds,
                        int64_t row_begin, int64_t row_end);

/* Categorical focal cross-entropy from logits:
 * loss[r] = sum_j alpha_j (1 - p_j)^gamma t_j -log p_j, p = softmax(x_r);
 * alpha holds one weight (n_alpha = 1) or one per class (n_alpha = k). */
void pl_focal_softmax_ce_rows(const float *logits, const float *labels, int64_t k, const double *alpha,
                              int64_t n_alpha, double gamma, float *loss, float *bounds, float *label_bounds,
                              int64_t row_begin, int64_t row_end);

/* Sparse categorical cross-entropy from probabilities, Keras's clipping of
 * p = y_l / sum(y) to [lo, hi] (the bounds rounded to float32 by the caller).
 * bounds (may be NULL): each row's range of the probabilities, as label_bounds above. */
void pl_sparse_normalized_ce_rows(const float *probs, int64_t k, const int64_t *labels, double lo, double hi,
                                  float *loss, float *bounds, int64_t row_begin, int64_t row_end);

/* Categorical cross-entropy from probabilities: sum_j t_j -log(clip(y_j / sum(y), lo, hi)).
 * bounds, label_bounds (may be NULL): the rows' ranges of y and t, as above. */
void pl_normalized_ce_rows(const float *probs, const float *labels, int64_t k, double lo, double hi, float *loss,
                           float *bounds, float *label_bounds, int64_t row_begin, int64_t row_end);

/* pl_normalized_ce_rows's loss and its gradient d loss[r] / d probs[r, j] (grad, the
 * probabilities' shape; a NaN row where the loss is left to the caller). */
void pl_normalized_ce_grad_rows(const float *probs, const float *labels, int64_t k, double lo, double hi,
                                float *loss, float *grad, int64_t row_begin, int64_t row_end);

#endif /* PL_SOFTMAX_AVAILABLE */
#endif /* PROBLOSS_SOFTMAX_CE_H */
