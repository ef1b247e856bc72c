/* probloss._native._binary: the binary family's compiled kernels.
 *
 * Binary cross-entropy (logits and probabilities), binary focal cross-entropy
 * (logits and probabilities), Poisson and KL divergence: an elementwise term
 * reduced along the last axis of a 2-D (rows, cols) view, in one pass that
 * also returns the bounds of both inputs (for the data checks of `validate`).
 * The formulas are those of the generic kernels (src/probloss/_kernels/), with
 * their float64 parts in float64; see src/probloss/_backends/_native.py for
 * how results with non-finite values are handed back to the generic kernel.
 *
 * Python API (one function; every array float32, native byte order):
 *
 *   row_losses(kind, y, x, out, divisor, threads, grad, params)
 *       -> (nonfinite_rows, y_min, y_max, x_min, x_max)
 *
 *   kind     KIND_* below.
 *   y, x     2-D buffers (rows, cols), any strides.
 *   out      1-D C-contiguous writable float32 buffer of `rows` elements:
 *            out[r] = sum_c term(y[r, c], x[r, c]) / divisor.
 *   divisor  cols for a mean, 1.0 for a sum.
 *   threads  the most threads to use (results do not depend on it).
 *   grad     None, or a C-contiguous writable float32 (rows, cols) buffer that
 *            receives d out[r] / d x[r, c] (every kind; the scale 1/divisor
 *            included). Entries of rows whose value is non-finite are
 *            unspecified (the caller recomputes those rows).
 *   params   tuple of floats, per kind (see each block function).
 *   Returns the number of rows whose value is NaN or inf, and the minimum and
 *   maximum of y and x (NaN when the array holds one; +inf/-inf for empty).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pl_rows.h"

enum {
    KIND_BCE_LOGITS = 0,
    KIND_BCE_PROBS = 1,
    KIND_FOCAL_LOGITS = 2,
    KIND_FOCAL_PROBS = 3,
    KIND_POISSON = 4,
    KIND_KL = 5,
    KIND_COUNT
};

typedef struct {
    double p[6];
    double scale; /* 1/divisor: d out[r] / d term, the gradient's scale */
} params_t;

/* ------------------------------------------------------------ block functions */

/* The derivative of clip(x, lo, hi) = minimum(maximum(x, lo), hi) as the generic
 * kernel's autograd takes it: 1 inside, 1/2 at a bound (a tie of maximum or
 * minimum splits the gradient), 0 outside; NaN for NaN. */
PL_INLINE double clip_slope(float x, float lo, float hi)
{
    double inside = x > lo && x < hi ? 1.0 : (x == lo || x == hi ? 0.5 : 0.0);
    return x != x ? (double)x : inside;
}

/* term = log1p(e) + y·max(-x, 0) + (1-y)·max(x, 0), e = exp(-|x|): the generic
 * kernel's formula, in float (as the generic kernel on float32), summed in
 * double. exp < 0.94 ulp and log1p(e) < 1.56 ulp (pl_math.h); the terms are
 * non-negative, so a sample is within ~2.6 ulps. An infinite or NaN logit
 * gives NaN (the x - x term) and the row is recomputed generically.
 * Gradient: sigmoid(x) - y, without 1 - (1 - tiny). */
PL_CLONES static void bce_logits_block(const void *params, const float *restrict y,
                                       const float *restrict x, Py_ssize_t n, double *acc,
                                       float *restrict grad, pl_bounds *b)
{
    float terms[PL_BLOCK]; /* all-float loop: 8 lanes per AVX2 register throughout */
    for (Py_ssize_t i = 0; i < n; i++) {
        float xi = x[i], yi = y[i];
        float e = pl_expf_neg(fabsf(xi));
        float relu = xi > 0.0f ? xi : 0.0f;
        float relu_neg = xi < 0.0f ? -xi : 0.0f;
        float t = (yi * relu_neg + (1.0f - yi) * relu) + (xi - xi);
        terms[i] = pl_log1pf_unit(e) + t;
    }
    pl_sum_lanes_f(terms, n, acc);
    pl_bounds_update(y, x, n, b);
    if (grad) {
        const float scale = (float)((const params_t *)params)->scale;
        for (Py_ssize_t i = 0; i < n; i++) {
            float xi = x[i];
            float e = pl_expf_neg(fabsf(xi));
            float near_one = 1.0f / (1.0f + e), small = e * near_one;
            float sig = xi >= 0.0f ? near_one : small;      /* sigmoid(x) */
            float sig_neg = xi >= 0.0f ? small : near_one;  /* sigmoid(-x) = 1 - sigmoid(x), exactly formed */
            float yi = y[i];
            /* (1 - y)·sigmoid(x) - y·sigmoid(-x) = sigmoid(x) - y: a hard label's gradient is
             * one of the two terms alone, so a confident logit keeps its tiny gradient */
            grad[i] = ((1.0f - yi) * sig - yi * sig_neg) * scale;
        }
    }
}

/* term = -(y·log(p) + (1-y)·log1p(-p)), p = clip(x, lo, hi) in float (Keras's
 * clip in the input dtype); in float, summed in double.
 * params: p[0] = lo, p[1] = hi (float32 values). */
PL_CLONES static void bce_probs_block(const void *params, const float *restrict y,
                                      const float *restrict x, Py_ssize_t n, double *acc,
                                      float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    const float lo = (float)P->p[0], hi = (float)P->p[1];
    float terms[PL_BLOCK]; /* all-float loop: 8 lanes per AVX2 register */
    for (Py_ssize_t i = 0; i < n; i++) {
        float p = x[i] < lo ? lo : x[i];
        p = p > hi ? hi : p; /* NaN stays NaN */
        float yi = y[i];
        /* Both logs <= 0 and both weights >= 0 (valid data): no cancellation. y·log(p)
         * is exact inside the fma; log errors <= 0.87 ulp, (1 - y), its product and
         * the fma round once each (<= 0.5 ulp of a same-signed sum): <= 2.4 ulps. */
        terms[i] = -fmaf(yi, pl_logf(p), (1.0f - yi) * pl_log1pf(-p));
    }
    pl_sum_lanes_f(terms, n, acc);
    pl_bounds_update(y, x, n, b);
    if (grad) {
        /* d/dx = (p - y) / (p (1 - p)) inside (lo, hi), 0 outside, and half of it at a
         * bound (the generic kernel's clip is maximum/minimum, whose derivative at a tie
         * is 1/2); in float64, rounded once. */
        const double scale = P->scale;
        for (Py_ssize_t i = 0; i < n; i++) {
            float xi = x[i];
            float p = xi < lo ? lo : xi;
            p = p > hi ? hi : p;
            double pd = (double)p;
            double g = ((pd - (double)y[i]) / (pd * (1.0 - pd))) * scale;
            grad[i] = (float)(g * clip_slope(xi, lo, hi));
        }
    }
}

/* (1 - p_t)^gamma for u = 1 - p_t >= 0, as pow_nonnegative: 0^0 = 1, 0^g = 0. */
PL_INLINE double focal_power(double u, const int mode, double gamma)
{
    if (mode == 0) return 1.0;
    if (mode == 1) return u;
    if (mode == 2) return u * u;
    double safe = u > 0.0 ? u : 1.0;
    double w = pl_exp(gamma * pl_log(safe));
    return u > 0.0 ? w : 0.0;
}

/* The generic kernel's float64 logits formula: bce as above, and
 * 1 - p_t = y·sigmoid(-x) + (1-y)·sigmoid(x) from e = exp(-|x|). `mode` is a
 * constant in each specialised copy (see FOCAL_DISPATCH), so every copy vectorises. */
PL_INLINE void focal_logits_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                 Py_ssize_t n, double *restrict terms, const int mode)
{
    const double gamma = P->p[0], alpha = P->p[2];
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double xi = (double)x[i], yi = (double)y[i];
        double e = pl_exp(-fabs(xi));
        double relu = xi > 0.0 ? xi : 0.0;
        double relu_neg = xi < 0.0 ? -xi : 0.0;
        double bce = pl_log1p(e) + yi * relu_neg + (1.0 - yi) * relu;
        double near_one = 1.0 / (1.0 + e);
        double near_zero = e * near_one;
        double sig_pos = xi >= 0.0 ? near_one : near_zero;
        double sig_neg = xi >= 0.0 ? near_zero : near_one;
        double u = yi * sig_neg + (1.0 - yi) * sig_pos;
        double focal = focal_power(u, mode, gamma) * bce;
        terms[i] = balance ? (yi * alpha + (1.0 - yi) * (1.0 - alpha)) * focal : focal;
    }
}

/* p clipped to [lo, hi] (float32 bounds) for the logs, unclipped for
 * 1 - p_t = y(1-p) + (1-y)p: the generic kernel's float64 probability formula. */
PL_INLINE void focal_probs_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                Py_ssize_t n, double *restrict terms, const int mode)
{
    const double gamma = P->p[0], alpha = P->p[2], lo = P->p[4], hi = P->p[5];
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = (double)x[i], yi = (double)y[i];
        double pc = p < lo ? lo : p;
        pc = pc > hi ? hi : pc;
        double bce = -(yi * pl_log(pc) + (1.0 - yi) * pl_log1p(-pc));
        double u = yi * (1.0 - p) + (1.0 - yi) * p;
        double focal = focal_power(u, mode, gamma) * bce;
        terms[i] = balance ? (yi * alpha + (1.0 - yi) * (1.0 - alpha)) * focal : focal;
    }
}

#define FOCAL_DISPATCH(loop)                                            \
    do {                                                                \
        switch ((int)P->p[1]) {                                         \
        case 0: loop(P, y, x, n, terms, 0); break;                      \
        case 1: loop(P, y, x, n, terms, 1); break;                      \
        case 2: loop(P, y, x, n, terms, 2); break;                      \
        default: loop(P, y, x, n, terms, 3); break;                     \
        }                                                               \
    } while (0)

/* d (1 - p_t)^gamma / d u for u >= 0, as the generic kernel's pow_nonnegative
 * differentiates: 0 for gamma 0, 1 for gamma 1, 2u for gamma 2, else
 * gamma·u^(gamma-1) where u > 0 and 0 at u = 0. */
PL_INLINE double focal_power_slope(double u, const int mode, double gamma)
{
    if (mode == 0) return 0.0;
    if (mode == 1) return 1.0;
    if (mode == 2) return 2.0 * u;
    double safe = u > 0.0 ? u : 1.0;
    double w = gamma * pl_exp((gamma - 1.0) * pl_log(safe));
    return u > 0.0 ? w : 0.0;
}

/* d term / d x of focal_logits_loop: w·(pow'(u)·du/dx·bce + u^gamma·(sigmoid(x) - y)),
 * du/dx = (1 - 2y)·sigmoid(x)·sigmoid(-x); in float64, rounded once. */
PL_INLINE void focal_logits_grad_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                      Py_ssize_t n, double *restrict terms, float *restrict grad, const int mode)
{
    const double gamma = P->p[0], alpha = P->p[2], scale = P->scale;
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double xi = (double)x[i], yi = (double)y[i];
        double e = pl_exp(-fabs(xi));
        double relu = xi > 0.0 ? xi : 0.0;
        double relu_neg = xi < 0.0 ? -xi : 0.0;
        double bce = pl_log1p(e) + yi * relu_neg + (1.0 - yi) * relu;
        double near_one = 1.0 / (1.0 + e);
        double near_zero = e * near_one;
        double sig_pos = xi >= 0.0 ? near_one : near_zero;
        double sig_neg = xi >= 0.0 ? near_zero : near_one;
        double u = yi * sig_neg + (1.0 - yi) * sig_pos;
        /* sigmoid(x) - y = (1 - y)·sigmoid(x) - y·sigmoid(-x): no 1 - (1 - tiny) */
        double dbce = (1.0 - yi) * sig_pos - yi * sig_neg;
        double du = (1.0 - 2.0 * yi) * (sig_pos * sig_neg);
        double power = focal_power(u, mode, gamma);
        double g = focal_power_slope(u, mode, gamma) * du * bce + power * dbce;
        double weight = balance ? yi * alpha + (1.0 - yi) * (1.0 - alpha) : 1.0;
        terms[i] = balance ? weight * (power * bce) : power * bce; /* as focal_logits_loop */
        grad[i] = (float)(weight * g * scale);
    }
}

/* d term / d x of focal_probs_loop: the logs see p clipped (gradient inside [lo, hi]
 * only), 1 - p_t = y(1-p) + (1-y)p sees p unclipped. */
PL_INLINE void focal_probs_grad_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                     Py_ssize_t n, double *restrict terms, float *restrict grad, const int mode)
{
    const double gamma = P->p[0], alpha = P->p[2], lo = P->p[4], hi = P->p[5], scale = P->scale;
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = (double)x[i], yi = (double)y[i];
        double pc = p < lo ? lo : p;
        pc = pc > hi ? hi : pc;
        double bce = -(yi * pl_log(pc) + (1.0 - yi) * pl_log1p(-pc));
        double dbce = (pc - yi) / (pc * (1.0 - pc)) * clip_slope((float)p, (float)lo, (float)hi);
        double u = yi * (1.0 - p) + (1.0 - yi) * p;
        double du = 1.0 - 2.0 * yi;
        double power = focal_power(u, mode, gamma);
        double g = focal_power_slope(u, mode, gamma) * du * bce + power * dbce;
        double weight = balance ? yi * alpha + (1.0 - yi) * (1.0 - alpha) : 1.0;
        terms[i] = balance ? weight * (power * bce) : power * bce; /* as focal_probs_loop */
        grad[i] = (float)(p != p ? p : weight * g * scale);
    }
}

#define FOCAL_GRAD_DISPATCH(loop)                                       \
    do {                                                                \
        switch ((int)P->p[1]) {                                         \
        case 0: loop(P, y, x, n, terms, grad, 0); break;                \
        case 1: loop(P, y, x, n, terms, grad, 1); break;                \
        case 2: loop(P, y, x, n, terms, grad, 2); break;                \
        default: loop(P, y, x, n, terms, grad, 3); break;               \
        }                                                               \
    } while (0)

/* params: p[0] = gamma, p[1] = power mode (0: gamma 0, 1: gamma 1, 2: gamma 2,
 * 3: general), p[2] = alpha, p[3] = apply_class_balancing (0/1). */
PL_CLONES static void focal_logits_block(const void *params, const float *restrict y,
                                         const float *restrict x, Py_ssize_t n, double *acc,
                                         float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    double terms[PL_BLOCK];
    if (grad) /* the terms and the gradient in one loop */
        FOCAL_GRAD_DISPATCH(focal_logits_grad_loop);
    else
        FOCAL_DISPATCH(focal_logits_loop);
    pl_sum_lanes(terms, n, acc);
    pl_bounds_update(y, x, n, b);
}

/* params: as focal_logits_block, and p[4] = lo, p[5] = hi. */
PL_CLONES static void focal_probs_block(const void *params, const float *restrict y,
                                        const float *restrict x, Py_ssize_t n, double *acc,
                                        float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    double terms[PL_BLOCK];
    if (grad) /* the terms and the gradient in one loop */
        FOCAL_GRAD_DISPATCH(focal_probs_grad_loop);
    else
        FOCAL_DISPATCH(focal_probs_loop);
    pl_sum_lanes(terms, n, acc);
    pl_bounds_update(y, x, n, b);
}

/* log(u) for u = p + eps of float32 numbers, in double: pl_log without its
 * subnormal scaling (a sum of float32 numbers is 0 or a normal double), so the
 * same value for every u > 0; 0 -> -inf, u < 0 -> NaN, inf -> inf, NaN -> NaN. */
PL_INLINE double log_of_float_sum(double u)
{
    double uu = u > 0.0 && u < (double)INFINITY ? u : 1.0;
    double kf, f;
    PL_SPLIT(uu, kf, f);
    double result = pl_log_reduced(f, kf, 0.0);
    result = u == 0.0 ? -(double)INFINITY : result;
    result = u < 0.0 ? (double)NAN : result;
    result = u == (double)INFINITY ? u : result;
    return u != u ? u : result;
}

/* Keras's p - y·log(p + eps), in float64. params: p[0] = eps (float32 value). */
PL_CLONES static void poisson_block(const void *params, const float *restrict y,
                                    const float *restrict x, Py_ssize_t n, double *acc,
                                    float *restrict grad, pl_bounds *b)
{
    const double eps = ((const params_t *)params)->p[0];
    double terms[PL_BLOCK];
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = (double)x[i];
        terms[i] = p - (double)y[i] * log_of_float_sum(p + eps);
    }
    pl_sum_lanes(terms, n, acc);
    pl_bounds_update(y, x, n, b);
    if (grad) { /* d/dp = 1 - y/(p + eps), in float64, rounded once */
        const double scale = ((const params_t *)params)->scale;
        for (Py_ssize_t i = 0; i < n; i++)
            grad[i] = (float)((1.0 - (double)y[i] / ((double)x[i] + eps)) * scale);
    }
}

/* log(t/p) for t, p in [lo, 1] (positive normal doubles, or NaN): log1p((t - p)/p)
 * where 2t >= p (exact near t = p: t - p of two float32 numbers is exact in
 * double), log(t/p) below, as the generic kernel's log_ratio. One logarithm:
 * pl_log1p and pl_log share pl_log_reduced, so the branch only picks its
 * argument (1 + r with the rounding error c of the addition, or t/p with none);
 * for arguments in (0, inf) this is exactly what those two functions compute. */
PL_INLINE double kl_log_ratio(double t, double p)
{
    double r = (t - p) / p;
    double q = t / p;
    int near = 2.0 * t >= p;
    double u = near ? 1.0 + r : q;
    double c = near ? (r > 1.0 ? 1.0 - (u - r) : r - (u - 1.0)) : 0.0;
    double uu = u > 0.0 && u < (double)INFINITY ? u : 1.0; /* NaN input: keep the bit tricks sane */
    double kf, f;
    PL_SPLIT(uu, kf, f);
    double result = pl_log_reduced(f, kf, c / uu);
    return u != u ? u : result;
}

/* t·log(t/p) with t, p clipped to [lo, 1] (float32 bounds), in float64 (kl_log_ratio).
 * params: p[0] = lo. */
PL_CLONES static void kl_block(const void *params, const float *restrict y,
                               const float *restrict x, Py_ssize_t n, double *acc,
                               float *restrict grad, pl_bounds *b)
{
    const double lo = ((const params_t *)params)->p[0];
    double terms[PL_BLOCK];
    for (Py_ssize_t i = 0; i < n; i++) {
        double t = (double)y[i], p = (double)x[i];
        t = t < lo ? lo : t;
        t = t > 1.0 ? 1.0 : t;
        p = p < lo ? lo : p;
        p = p > 1.0 ? 1.0 : p;
        terms[i] = t * kl_log_ratio(t, p);
    }
    pl_sum_lanes(terms, n, acc);
    pl_bounds_update(y, x, n, b);
    if (grad) { /* d/dp = -t/p inside (lo, 1), half of it at a bound, 0 outside (clip_slope) */
        const double scale = ((const params_t *)params)->scale;
        for (Py_ssize_t i = 0; i < n; i++) {
            double t = (double)y[i], p = (double)x[i];
            t = t < lo ? lo : t;
            t = t > 1.0 ? 1.0 : t;
            /* the clipped p: equal to p wherever the slope is not 0, and it keeps
             * -t/p finite where it is (p = 0 would give inf·0 = NaN) */
            double pc = p < lo ? lo : (p > 1.0 ? 1.0 : p);
            double g = -(t / pc) * scale;
            grad[i] = (float)(g * clip_slope((float)p, (float)lo, 1.0f));
        }
    }
}

static const pl_block_fn BLOCKS[KIND_COUNT] = {
    bce_logits_block, bce_probs_block, focal_logits_block,
    focal_probs_block, poisson_block, kl_block,
};

/* ------------------------------------------------------------ Python glue */

static int get_view(PyObject *obj, Py_buffer *buf, pl_view *v, Py_ssize_t *rows, Py_ssize_t *cols,
                    const char *name)
{
    if (PyObject_GetBuffer(obj, buf, PyBUF_RECORDS_RO) < 0) return -1;
    if (buf->ndim != 2 || buf->itemsize != 4 || !buf->format || strcmp(buf->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a 2-D native float32 array", name);
        PyBuffer_Release(buf);
        return -1;
    }
    v->data = (const char *)buf->buf;
    v->row_stride = buf->strides[0];
    v->col_stride = buf->strides[1];
    *rows = buf->shape[0];
    *cols = buf->shape[1];
    return 0;
}

static int get_output(PyObject *obj, Py_buffer *buf, Py_ssize_t size, const char *name)
{
    if (PyObject_GetBuffer(obj, buf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (buf->itemsize != 4 || !buf->format || strcmp(buf->format, "f") != 0 || buf->len != size * 4) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous float32 buffer of %zd elements", name, size);
        PyBuffer_Release(buf);
        return -1;
    }
    return 0;
}

static PyObject *row_losses(PyObject *self, PyObject *args)
{
    int kind, threads;
    double divisor;
    PyObject *y_obj, *x_obj, *out_obj, *grad_obj, *params_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOOdiOO!", &kind, &y_obj, &x_obj, &out_obj, &divisor, &threads,
                          &grad_obj, &PyTuple_Type, &params_obj))
        return NULL;
    if (kind < 0 || kind >= KIND_COUNT) {
        PyErr_SetString(PyExc_ValueError, "unknown kernel kind");
        return NULL;
    }
    params_t params = {{0}};
    Py_ssize_t np_ = PyTuple_GET_SIZE(params_obj);
    if (np_ > 6) {
        PyErr_SetString(PyExc_ValueError, "at most 6 parameters");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < np_; i++) {
        params.p[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(params_obj, i));
        if (params.p[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    Py_buffer yb, xb, ob, gb;
    pl_view yv, xv;
    Py_ssize_t rows, cols, rows2, cols2;
    if (get_view(y_obj, &yb, &yv, &rows, &cols, "y") < 0) return NULL;
    if (get_view(x_obj, &xb, &xv, &rows2, &cols2, "x") < 0) {
        PyBuffer_Release(&yb);
        return NULL;
    }
    if (rows != rows2 || cols != cols2) {
        PyErr_SetString(PyExc_ValueError, "y and x must have the same shape");
        goto fail_yx;
    }
    if (get_output(out_obj, &ob, rows, "out") < 0) goto fail_yx;
    float *grad = NULL;
    int has_grad = grad_obj != Py_None;
    if (has_grad) {
        if (get_output(grad_obj, &gb, rows * cols, "grad") < 0) goto fail_out;
        grad = (float *)gb.buf;
    }
    if (threads < 1) threads = 1;
    params.scale = 1.0 / divisor;
    pl_bounds bounds;
    Py_ssize_t nonfinite;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = pl_row_reduce(BLOCKS[kind], &params, yv, xv, rows, cols, divisor, (float *)ob.buf, grad,
                           threads, &bounds, &nonfinite);
    Py_END_ALLOW_THREADS
    if (has_grad) PyBuffer_Release(&gb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&yb);
    if (status < 0) return PyErr_NoMemory();
    int empty = rows * cols == 0;
    return Py_BuildValue("(ndddd)", nonfinite, empty ? INFINITY : (double)pl_unorder_f(bounds.ymin),
                         empty ? -INFINITY : (double)pl_unorder_f(bounds.ymax),
                         empty ? INFINITY : (double)pl_unorder_f(bounds.xmin),
                         empty ? -INFINITY : (double)pl_unorder_f(bounds.xmax));
fail_out:
    PyBuffer_Release(&ob);
fail_yx:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&yb);
    return NULL;
}

static PyObject *openmp(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyBool_FromLong(pl_openmp_available());
}

static PyMethodDef methods[] = {
    {"row_losses", row_losses, METH_VARARGS,
     "row_losses(kind, y, x, out, divisor, threads, grad, params) -> (nonfinite, y_min, y_max, x_min, x_max)"},
    {"openmp", openmp, METH_NOARGS, "Whether the module was compiled with OpenMP."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binary", "Compiled kernels of the binary loss family.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__binary(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "KIND_BCE_LOGITS", KIND_BCE_LOGITS) < 0 ||
        PyModule_AddIntConstant(m, "KIND_BCE_PROBS", KIND_BCE_PROBS) < 0 ||
        PyModule_AddIntConstant(m, "KIND_FOCAL_LOGITS", KIND_FOCAL_LOGITS) < 0 ||
        PyModule_AddIntConstant(m, "KIND_FOCAL_PROBS", KIND_FOCAL_PROBS) < 0 ||
        PyModule_AddIntConstant(m, "KIND_POISSON", KIND_POISSON) < 0 ||
        PyModule_AddIntConstant(m, "KIND_KL", KIND_KL) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
