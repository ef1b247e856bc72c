/* probloss._native._softmax: the softmax family's compiled kernels.
 *
 * Python functions over the kernels of softmax_ce.h (sparse, categorical and
 * categorical focal cross-entropy from logits, with the gradient in the same
 * pass; sparse and categorical cross-entropy from probabilities). The module
 * is built from this file and softmax_ce.c, softmax_ce_base.c and
 * softmax_ce_avx2.c (setup.py); probloss._backends._native_softmax wraps it.
 *
 * Thin: every argument is a buffer (C-contiguous, checked here for type and
 * size only, so that no call can read or write out of bounds); shapes, dtypes
 * and the choice of kernel are the Python layer's.
 * Rows are cut into tasks of about PL_SOFTMAX_TASK elements, a count that
 * depends on the shape only; each row is computed by one thread from its own
 * data, so the results are bit-identical for any thread count. The Python
 * functions run the tasks on pl_pool.h's pool (the XLA handlers below, called
 * on XLA's threads, on OpenMP: pl_parallel.h). The GIL is released while the
 * kernels run.
 *
 * Python API (all write `loss`; None for an optional buffer; the last two return
 * their call's summary, the others None):
 *   softmax_ce_sparse(logits f32[n*k], labels i64[n], k, loss f32[n], grad f32[n*k] | None,
 *                     row_scale f32[n] | None, scale, nthreads, bounds f32[2n] | None)
 *   softmax_ce(logits f32[n*k], labels f32[n*k], k, loss f32[n], grad f32[n*k] | None,
 *              row_scale f32[n] | None, scale, nthreads, bounds f32[2n] | None[, label_bounds f32[2n] | None])
 *   (summary: (finite, low, high, label_low, label_high): whether every loss is
 *   finite; the minimum of the rows' minima and the maximum of their maxima in
 *   `bounds` and in `label_bounds`, each NaN where its column holds a NaN, or the
 *   buffer is None or empty: NumPy's b[:, 0].min() and b[:, 1].max(). The data checks of probloss's short
 *   NumPy path read these, not the buffers: a NumPy reduction right after a
 *   kernel that has streamed tens of MB costs ~10-20 us, the interpreter's and
 *   NumPy's working set then being out of the caches.)
 *   focal_softmax_ce(logits f32[n*k], labels f32[n*k], k, alpha f64[1 or k], gamma, loss f32[n], nthreads,
 *                    bounds f32[2n] | None[, label_bounds f32[2n] | None])
 *   (bounds receives each row's minimum, NaN where the row holds a NaN, and maximum
 *   of the logits, from the kernels' first pass: for the data checks. label_bounds
 *   receives each row's minimum and maximum label, or NaN, NaN where a label is not
 *   a finite number >= 0 (or is -0.0): softmax_ce.h.)
 *   normalized_ce_sparse(probs f32[n*k], labels i64[n], k, lo, hi, loss f32[n], nthreads
 *                        [, bounds f32[2n] | None])
 *   normalized_ce(probs f32[n*k], labels f32[n*k], k, lo, hi, loss f32[n], nthreads
 *                 [, bounds f32[2n] | None[, label_bounds f32[2n] | None]])
 *   (bounds of probabilities: as label_bounds.)
 *   xla_handlers() -> {name: PyCapsule}: the XLA FFI handlers below (only where built
 *   with XLA's FFI header, PL_XLA_FFI; JAX's CPU paths call them, pl_xla.h)
 *   softmax_isa() -> "avx512" | "avx2" | "baseline"
 *   openmp() -> whether the module was compiled with OpenMP
 *   AVAILABLE: 1, or 0 where the compiler has no vector extensions (MSVC: the
 *   module is then empty and NumPy inputs use the generic kernels).
 */
#include "softmax_glue.h"
#include "pl_huge.h"
#include "pl_pool.h"
#include "softmax_ce.h"
#include "pl_xla.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if PL_SOFTMAX_AVAILABLE

/* Elements per task: hundreds of short rows; for long rows (>= 8192 classes)
 * four times as many, 32 rows of 32000 classes, since the next row is
 * prefetched within a task only and a task's first row comes cold from memory
 * (2048 x 32000 then makes 64 tasks). */
#define PL_SOFTMAX_TASK (1 << 18)
#define PL_SOFTMAX_LONG_ROW 8192
#define PL_SOFTMAX_LONG_TASK (1 << 20)

static Py_ssize_t rows_per_task(Py_ssize_t k) {
    Py_ssize_t task = k >= PL_SOFTMAX_LONG_ROW ? PL_SOFTMAX_LONG_TASK : PL_SOFTMAX_TASK;
    return k >= task ? 1 : task / k;
}

/* The Python functions' threads: pl_pool.h, whose caller never waits for a
 * worker that has not started. An OpenMP region ends in a barrier that does,
 * and right after another library's call, whose threads still spin on the
 * cores, that wait cost more than the second thread saved: categorical CE of
 * 4096 x 1000 on 2 threads, timed between optax and torch calls on the shared
 * 2-core machine, best of 40: 3.4-4.4 ms with OpenMP, 1.3-2.2 ms with the
 * pool, 2.2 ms on one thread. One call's arguments, for the pool's task
 * function; `per` rows a task. */
enum { JOB_SPARSE, JOB_DENSE, JOB_FOCAL, JOB_NORMALIZED_SPARSE, JOB_NORMALIZED };

typedef struct {
    int kind;
    const float *x;  /* logits or probabilities */
    const void *t;   /* labels: int64 (sparse) or float32 */
    int64_t k, n, per;
    float *out, *g, *b, *lb;
    const float *s;
    double scale, gamma, lo, hi;
    const double *alpha;
    int64_t n_alpha;
} SoftmaxJob;

static void softmax_task(void *ctx, long long task) {
    const SoftmaxJob *J = (const SoftmaxJob *)ctx;
    int64_t r0 = (int64_t)task * J->per, r1 = r0 + J->per < J->n ? r0 + J->per : J->n;
    switch (J->kind) {
    case JOB_SPARSE:
        pl_sparse_softmax_ce_rows(J->x, J->k, (const int64_t *)J->t, J->out, J->g, J->s, J->scale, J->b, r0, r1);
        break;
    case JOB_DENSE:
        pl_softmax_ce_rows(J->x, (const float *)J->t, J->k, J->out, J->g, J->s, J->scale, J->b, J->lb, r0, r1);
        break;
    case JOB_FOCAL:
        pl_focal_softmax_ce_rows(J->x, (const float *)J->t, J->k, J->alpha, J->n_alpha, J->gamma, J->out, J->b,
                                 J->lb, r0, r1);
        break;
    case JOB_NORMALIZED_SPARSE:
        pl_sparse_normalized_ce_rows(J->x, J->k, (const int64_t *)J->t, J->lo, J->hi, J->out, J->b, r0, r1);
        break;
    default:
        pl_normalized_ce_rows(J->x, (const float *)J->t, J->k, J->lo, J->hi, J->out, J->b, J->lb, r0, r1);
    }
}

/* The range of a kernel's per-row bounds b[0..2n) (row r: b[2r], b[2r + 1]): the
 * minimum of the first column and the maximum of the second, as NumPy's
 * b[:, 0].min() and b[:, 1].max() (each NaN where its column holds a NaN, or n
 * is 0), the reductions of the data checks (probloss._backends._softmax_paths).
 * In vectors of 4, two rows (SSE's minps and maxps, a < b ? a : b; elsewhere
 * GCC's vector extension, as the kernels: the compiler does not vectorize a
 * float minimum by itself, which would have to assume no NaN), two vectors a
 * step for two independent chains: 4096 rows take ~1-2 us (scalar: ~14
 * instructions a float). A NaN lane leaves the minimum and maximum as they are
 * (every comparison false) and is counted apart. */
typedef float pl_v4f __attribute__((vector_size(16)));
typedef int32_t pl_v4i __attribute__((vector_size(16)));

#if defined(__SSE2__)
#include <emmintrin.h>
#define PL_V4_MIN(a, b) ((pl_v4f)_mm_min_ps((__m128)(a), (__m128)(b)))
#define PL_V4_MAX(a, b) ((pl_v4f)_mm_max_ps((__m128)(a), (__m128)(b)))
#else
static inline pl_v4f pl_v4_select(pl_v4i m, pl_v4f a, pl_v4f b) {
    return (pl_v4f)(((pl_v4i)a & m) | ((pl_v4i)b & ~m));
}
#define PL_V4_MIN(a, b) pl_v4_select((a) < (b), (a), (b))
#define PL_V4_MAX(a, b) pl_v4_select((a) > (b), (a), (b))
#endif

static void bounds_range(const float *b, Py_ssize_t n, double *lo, double *hi) {
    const Py_ssize_t m = 2 * n;
    const pl_v4f inf = {INFINITY, INFINITY, INFINITY, INFINITY};
    pl_v4f mn0 = inf, mn1 = inf, mx0 = -inf, mx1 = -inf;
    pl_v4i nan = {0, 0, 0, 0};
    Py_ssize_t i = 0;
    for (; i + 8 <= m; i += 8) {
        pl_v4f v0, v1;
        memcpy(&v0, b + i, sizeof v0);
        memcpy(&v1, b + i + 4, sizeof v1);
        mn0 = PL_V4_MIN(v0, mn0);
        mn1 = PL_V4_MIN(v1, mn1);
        mx0 = PL_V4_MAX(v0, mx0);
        mx1 = PL_V4_MAX(v1, mx1);
        nan |= (v0 != v0) | (v1 != v1);
    }
    /* lanes 0 and 2 hold first-column entries, lanes 1 and 3 second-column ones */
    float fmn = INFINITY, fmx = -INFINITY;
    int nan_lo = n == 0, nan_hi = n == 0;
    for (int l = 0; l < 4; l += 2) {
        float a = mn0[l] < mn1[l] ? mn0[l] : mn1[l], z = mx0[l + 1] > mx1[l + 1] ? mx0[l + 1] : mx1[l + 1];
        fmn = a < fmn ? a : fmn;
        fmx = z > fmx ? z : fmx;
        nan_lo |= nan[l] != 0;
        nan_hi |= nan[l + 1] != 0;
    }
    for (; i < m; i += 2) {
        fmn = b[i] < fmn ? b[i] : fmn;
        fmx = b[i + 1] > fmx ? b[i + 1] : fmx;
        nan_lo |= b[i] != b[i];
        nan_hi |= b[i + 1] != b[i + 1];
    }
    *lo = nan_lo ? NAN : (double)fmn;
    *hi = nan_hi ? NAN : (double)fmx;
}

/* Whether every loss[0..n) is finite. */
static int all_finite(const float *loss, Py_ssize_t n) {
    int ok = 1;
    for (Py_ssize_t i = 0; i < n; i++) ok &= fabsf(loss[i]) <= FLT_MAX;
    return ok;
}

/* Run `job` (its fields but per set) over n rows of k on up to nthreads threads. */
static void run_job(SoftmaxJob *job, int nthreads) {
    job->per = rows_per_task(job->k);
    const Py_ssize_t ntasks = (job->n + job->per - 1) / job->per;
    pl_run_tasks(nthreads, (long long)(job->n * job->k), (long long)ntasks, softmax_task, job);
}

static PyObject *logits_kernel(PyObject *args, int sparse) {
    PyObject *logits, *labels, *loss, *grad, *row_scale, *bounds, *label_bounds = Py_None;
    Py_ssize_t k;
    double scale;
    int nthreads;
    if (!PyArg_ParseTuple(args, "OOnOOOdiO|O", &logits, &labels, &k, &loss, &grad, &row_scale, &scale, &nthreads,
                          &bounds, &label_bounds))
        return NULL;
    if (sparse && label_bounds != Py_None) {
        PyErr_SetString(PyExc_ValueError, "label_bounds: only for dense labels");
        return NULL;
    }
    Py_ssize_t n = pl_loss_rows(loss);
    if (n < 0 || pl_check_shape(n, k) < 0) return NULL;
    Buffer bx, bt, bl, bg, bs, bb, blb;
    int finite = 1;
    double low = NAN, high = NAN, label_low = NAN, label_high = NAN;
    if (pl_acquire(logits, "logits", 'f', 4, n * k, 0, 0, &bx) < 0) return NULL;
    if (pl_acquire(labels, "labels", sparse ? 'i' : 'f', sparse ? 8 : 4, sparse ? n : n * k, 0, 0, &bt) < 0) goto fail_x;
    if (pl_acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (pl_acquire(grad, "grad", 'f', 4, n * k, 1, 1, &bg) < 0) goto fail_l;
    if (pl_acquire(row_scale, "row_scale", 'f', 4, n, 0, 1, &bs) < 0) goto fail_g;
    if (pl_acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_s;
    if (pl_acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        SoftmaxJob job = {sparse ? JOB_SPARSE : JOB_DENSE};
        job.x = (const float *)bx.view.buf;
        job.t = bt.view.buf;
        job.k = k;
        job.n = n;
        job.out = (float *)bl.view.buf;
        job.g = bg.held ? (float *)bg.view.buf : NULL;
        job.s = bs.held ? (const float *)bs.view.buf : NULL;
        job.scale = scale;
        job.b = bb.held ? (float *)bb.view.buf : NULL;
        job.lb = blb.held ? (float *)blb.view.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        /* a fresh gradient buffer (PyTorch's, one per call) faults in 2 MiB pages */
        if (job.g) pl_huge_pages(job.g, (size_t)(n * k) * sizeof(float));
        run_job(&job, nthreads);
        finite = all_finite(job.out, n);
        if (job.b) bounds_range(job.b, n, &low, &high);
        if (job.lb) bounds_range(job.lb, n, &label_low, &label_high);
        Py_END_ALLOW_THREADS
    }
    pl_release(&blb);
    pl_release(&bb);
    pl_release(&bs);
    pl_release(&bg);
    pl_release(&bl);
    pl_release(&bt);
    pl_release(&bx);
    return Py_BuildValue("(Ndddd)", PyBool_FromLong(finite), low, high, label_low, label_high);
fail_b:
    pl_release(&bb);
fail_s:
    pl_release(&bs);
fail_g:
    pl_release(&bg);
fail_l:
    pl_release(&bl);
fail_t:
    pl_release(&bt);
fail_x:
    pl_release(&bx);
    return NULL;
}

static PyObject *py_softmax_ce_sparse(PyObject *self, PyObject *args) {
    (void)self;
    return logits_kernel(args, 1);
}

static PyObject *py_softmax_ce(PyObject *self, PyObject *args) {
    (void)self;
    return logits_kernel(args, 0);
}

static PyObject *py_focal_softmax_ce(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *logits, *labels, *alpha, *loss, *bounds, *label_bounds = Py_None;
    Py_ssize_t k;
    double gamma;
    int nthreads;
    if (!PyArg_ParseTuple(args, "OOnOdOiO|O", &logits, &labels, &k, &alpha, &gamma, &loss, &nthreads, &bounds,
                          &label_bounds))
        return NULL;
    Py_ssize_t n = pl_loss_rows(loss);
    if (n < 0 || pl_check_shape(n, k) < 0) return NULL;
    Buffer ba;
    if (PyObject_GetBuffer(alpha, &ba.view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    ba.held = 1;
    Py_ssize_t n_alpha = ba.view.len / 8;
    pl_release(&ba);
    if (n_alpha != 1 && n_alpha != k) {
        PyErr_SetString(PyExc_ValueError, "alpha: expected 1 or k float64 values");
        return NULL;
    }
    Buffer bx, bt, bl, bb, blb;
    if (pl_acquire(alpha, "alpha", 'f', 8, n_alpha, 0, 0, &ba) < 0) return NULL;
    if (pl_acquire(logits, "logits", 'f', 4, n * k, 0, 0, &bx) < 0) goto fail_a;
    if (pl_acquire(labels, "labels", 'f', 4, n * k, 0, 0, &bt) < 0) goto fail_x;
    if (pl_acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (pl_acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_l;
    if (pl_acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        SoftmaxJob job = {JOB_FOCAL};
        job.x = (const float *)bx.view.buf;
        job.t = bt.view.buf;
        job.k = k;
        job.n = n;
        job.alpha = (const double *)ba.view.buf;
        job.n_alpha = n_alpha;
        job.gamma = gamma;
        job.out = (float *)bl.view.buf;
        job.b = bb.held ? (float *)bb.view.buf : NULL;
        job.lb = blb.held ? (float *)blb.view.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        run_job(&job, nthreads);
        Py_END_ALLOW_THREADS
    }
    pl_release(&blb);
    pl_release(&bb);
    pl_release(&bl);
    pl_release(&bt);
    pl_release(&bx);
    pl_release(&ba);
    Py_RETURN_NONE;
fail_b:
    pl_release(&bb);
fail_l:
    pl_release(&bl);
fail_t:
    pl_release(&bt);
fail_x:
    pl_release(&bx);
fail_a:
    pl_release(&ba);
    return NULL;
}

static PyObject *probability_kernel(PyObject *args, int sparse) {
    PyObject *probs, *labels, *loss, *bounds = Py_None, *label_bounds = Py_None;
    Py_ssize_t k;
    double lo, hi;
    int nthreads;
    if (!PyArg_ParseTuple(args, "OOnddOi|OO", &probs, &labels, &k, &lo, &hi, &loss, &nthreads, &bounds,
                          &label_bounds))
        return NULL;
    if (sparse && label_bounds != Py_None) {
        PyErr_SetString(PyExc_ValueError, "label_bounds: only for dense labels");
        return NULL;
    }
    Py_ssize_t n = pl_loss_rows(loss);
    if (n < 0 || pl_check_shape(n, k) < 0) return NULL;
    Buffer by, bt, bl, bb, blb;
    if (pl_acquire(probs, "probs", 'f', 4, n * k, 0, 0, &by) < 0) return NULL;
    if (pl_acquire(labels, "labels", sparse ? 'i' : 'f', sparse ? 8 : 4, sparse ? n : n * k, 0, 0, &bt) < 0) goto fail_y;
    if (pl_acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (pl_acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_l;
    if (pl_acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        SoftmaxJob job = {sparse ? JOB_NORMALIZED_SPARSE : JOB_NORMALIZED};
        job.x = (const float *)by.view.buf;
        job.t = bt.view.buf;
        job.k = k;
        job.n = n;
        job.lo = lo;
        job.hi = hi;
        job.out = (float *)bl.view.buf;
        job.b = bb.held ? (float *)bb.view.buf : NULL;
        job.lb = blb.held ? (float *)blb.view.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        run_job(&job, nthreads);
        Py_END_ALLOW_THREADS
    }
    pl_release(&blb);
    pl_release(&bb);
    pl_release(&bl);
    pl_release(&bt);
    pl_release(&by);
    Py_RETURN_NONE;
fail_b:
    pl_release(&bb);
fail_l:
    pl_release(&bl);
fail_t:
    pl_release(&bt);
fail_y:
    pl_release(&by);
    return NULL;
}

static PyObject *py_normalized_ce_sparse(PyObject *self, PyObject *args) {
    (void)self;
    return probability_kernel(args, 1);
}

static PyObject *py_normalized_ce(PyObject *self, PyObject *args) {
    (void)self;
    return probability_kernel(args, 0);
}

static PyObject *py_softmax_isa(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(pl_softmax_ce_isa());
}

static PyObject *py_openmp(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(pl_openmp_available());
}

#ifdef PL_XLA_FFI
/* ------------------------------------------------------------ XLA FFI handlers (pl_xla.h)
 *
 * probloss_softmax_ce_sparse(logits f32[..., k], labels s32|s64[...] [, row_scale f32[...]])
 *     -> loss f32[...] [, grad f32[..., k]]
 * probloss_softmax_ce(logits f32[..., k], labels f32[..., k] [, row_scale f32[...]])
 *     -> loss f32[...] [, grad f32[..., k]]
 * probloss_normalized_ce(probs f32[..., k], labels f32[..., k]; lo, hi) -> loss f32[...] [, grad f32[..., k]]
 * Every leading axis is a row (JAX's vmap adds them in front); attribute
 * `threads` (the most threads). The gradient, where a second result is asked
 * for, is s_r (softmax(x) sum(t) - t) per row, s_r = row_scale[r] (1 without it);
 * from probabilities, d loss[r] / d probs[r, j] (pl_normalized_ce_grad_rows). */

static XLA_FFI_Error *xla_logits(XLA_FFI_CallFrame *frame, int sparse) {
    PL_XLA_PROLOGUE(frame);
    XLA_FFI_Buffer *bx = pl_xla_arg(frame, 0), *bt = pl_xla_arg(frame, 1), *bl = pl_xla_ret(frame, 0);
    XLA_FFI_Buffer *bg = frame->rets.size > 1 ? pl_xla_ret(frame, 1) : NULL;
    XLA_FFI_Buffer *bs = frame->args.size > 2 ? pl_xla_arg(frame, 2) : NULL;
    int64_t threads;
    if (!bx || !bt || !bl || (frame->rets.size > 1 && !bg) || (frame->args.size > 2 && !bs) ||
        pl_xla_attr_i64(frame, "threads", &threads) < 0)
        return pl_xla_error(frame, "probloss softmax FFI: expected 2 or 3 buffers, 1 or 2 results, `threads`");
    const int64_t k = pl_xla_last(bx), n = k ? pl_xla_numel(bx) / k : pl_xla_numel(bl);
    if (bs && (bs->dtype != XLA_FFI_DataType_F32 || pl_xla_numel(bs) != n))
        return pl_xla_error(frame, "probloss softmax FFI: row_scale must be float32, one per row");
    int label_ok = sparse ? (bt->dtype == XLA_FFI_DataType_S32 || bt->dtype == XLA_FFI_DataType_S64) &&
                                pl_xla_numel(bt) == n
                          : bt->dtype == XLA_FFI_DataType_F32 && pl_xla_numel(bt) == n * k;
    if (bx->dtype != XLA_FFI_DataType_F32 || !label_ok || bl->dtype != XLA_FFI_DataType_F32 ||
        pl_xla_numel(bl) != n || (bg && (bg->dtype != XLA_FFI_DataType_F32 || pl_xla_numel(bg) != n * k)))
        return pl_xla_error(frame, "probloss softmax FFI: unexpected dtypes or shapes");
    if (n == 0) return NULL;
    if (k < 1 || k > INT32_MAX - 16) return pl_xla_error(frame, "probloss softmax FFI: classes out of range");
    const void *t = bt->data;
    int64_t *wide = NULL;
    if (sparse && bt->dtype == XLA_FFI_DataType_S32) { /* the kernel reads int64 labels */
        wide = (int64_t *)malloc((size_t)n * sizeof(int64_t));
        if (!wide) return pl_xla_error(frame, "probloss softmax FFI: out of memory");
        const int32_t *src = (const int32_t *)bt->data;
        for (int64_t i = 0; i < n; i++) wide[i] = src[i];
        t = wide;
    }
    const float *x = (const float *)bx->data;
    float *out = (float *)bl->data, *g = bg ? (float *)bg->data : NULL;
    const float *s = bs ? (const float *)bs->data : NULL;
    if (g) pl_xla_huge_pages(g, (size_t)(n * k) * sizeof(float));
    const int nthreads = threads < 1 ? 1 : (int)threads;
    const Py_ssize_t per = rows_per_task(k), ntasks = (n + per - 1) / per;
    PL_PARALLEL_FOR(nthreads, n * k, ntasks, task) {
        int64_t r0 = (int64_t)task * per, r1 = r0 + per < n ? r0 + per : n;
        if (sparse)
            pl_sparse_softmax_ce_rows(x, k, (const int64_t *)t, out, g, s, 1.0, NULL, r0, r1);
        else
            pl_softmax_ce_rows(x, (const float *)t, k, out, g, s, 1.0, NULL, NULL, r0, r1);
    }
    free(wide);
    return NULL;
}

static XLA_FFI_Error *xla_softmax_ce_sparse(XLA_FFI_CallFrame *frame) { return xla_logits(frame, 1); }

static XLA_FFI_Error *xla_softmax_ce(XLA_FFI_CallFrame *frame) { return xla_logits(frame, 0); }

static XLA_FFI_Error *xla_normalized_ce(XLA_FFI_CallFrame *frame) {
    PL_XLA_PROLOGUE(frame);
    XLA_FFI_Buffer *by = pl_xla_arg(frame, 0), *bt = pl_xla_arg(frame, 1), *bl = pl_xla_ret(frame, 0);
    XLA_FFI_Buffer *bg = frame->rets.size > 1 ? pl_xla_ret(frame, 1) : NULL;
    int64_t threads;
    double lo, hi;
    if (!by || !bt || !bl || (frame->rets.size > 1 && !bg) || pl_xla_attr_i64(frame, "threads", &threads) < 0 ||
        pl_xla_attr_f64(frame, "lo", &lo) < 0 || pl_xla_attr_f64(frame, "hi", &hi) < 0)
        return pl_xla_error(frame,
                            "probloss normalized FFI: expected 2 buffers, 1 or 2 results, `threads`, `lo`, `hi`");
    const int64_t k = pl_xla_last(by), n = k ? pl_xla_numel(by) / k : pl_xla_numel(bl);
    if (by->dtype != XLA_FFI_DataType_F32 || bt->dtype != XLA_FFI_DataType_F32 || pl_xla_numel(bt) != n * k ||
        bl->dtype != XLA_FFI_DataType_F32 || pl_xla_numel(bl) != n ||
        (bg && (bg->dtype != XLA_FFI_DataType_F32 || pl_xla_numel(bg) != n * k)))
        return pl_xla_error(frame, "probloss normalized FFI: unexpected dtypes or shapes");
    if (n == 0) return NULL;
    if (k < 1 || k > INT32_MAX - 16) return pl_xla_error(frame, "probloss normalized FFI: classes out of range");
    /* log of a clipped probability: lo must be a positive normal number (Keras's ε is) */
    if (!(lo >= 0x1p-1022) || !(hi >= lo))
        return pl_xla_error(frame, "probloss normalized FFI: `lo` must be a positive normal number <= `hi`");
    const float *y = (const float *)by->data, *t = (const float *)bt->data;
    float *out = (float *)bl->data, *g = bg ? (float *)bg->data : NULL;
    if (g) pl_xla_huge_pages(g, (size_t)(n * k) * sizeof(float));
    const int nthreads = threads < 1 ? 1 : (int)threads;
    const Py_ssize_t per = rows_per_task(k), ntasks = (n + per - 1) / per;
    PL_PARALLEL_FOR(nthreads, n * k, ntasks, task) {
        int64_t r0 = (int64_t)task * per, r1 = r0 + per < n ? r0 + per : n;
        if (g)
            pl_normalized_ce_grad_rows(y, t, k, lo, hi, out, g, r0, r1);
        else
            pl_normalized_ce_rows(y, t, k, lo, hi, out, NULL, NULL, r0, r1);
    }
    return NULL;
}

static PyObject *py_xla_handlers(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return Py_BuildValue("{sNsNsN}", "probloss_softmax_ce_sparse", PL_XLA_CAPSULE(xla_softmax_ce_sparse),
                         "probloss_softmax_ce", PL_XLA_CAPSULE(xla_softmax_ce), "probloss_normalized_ce",
                         PL_XLA_CAPSULE(xla_normalized_ce));
}
#endif /* PL_XLA_FFI */

static PyMethodDef methods[] = {
    {"softmax_ce_sparse", py_softmax_ce_sparse, METH_VARARGS, "Sparse softmax cross-entropy rows (see softmax.c)."},
    {"softmax_ce", py_softmax_ce, METH_VARARGS, "Softmax cross-entropy rows, dense labels."},
    {"focal_softmax_ce", py_focal_softmax_ce, METH_VARARGS, "Categorical focal cross-entropy rows from logits."},
    {"normalized_ce_sparse", py_normalized_ce_sparse, METH_VARARGS, "Sparse cross-entropy rows from probabilities."},
    {"normalized_ce", py_normalized_ce, METH_VARARGS, "Categorical cross-entropy rows from probabilities."},
    {"softmax_isa", py_softmax_isa, METH_NOARGS, "The instruction set the softmax kernels run on."},
    {"openmp", py_openmp, METH_NOARGS, "Whether the module was compiled with OpenMP."},
#ifdef PL_XLA_FFI
    {"xla_handlers", py_xla_handlers, METH_NOARGS, "XLA FFI handlers (name -> PyCapsule) for jax.ffi."},
#endif
    {NULL, NULL, 0, NULL},
};

#else /* no kernels with this compiler (MSVC): an empty module; NumPy inputs use the generic kernels */

static PyMethodDef methods[] = {
    {NULL, NULL, 0, NULL},
};

#endif

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_softmax", "Compiled kernels of the softmax loss family.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__softmax(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "AVAILABLE", PL_SOFTMAX_AVAILABLE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
