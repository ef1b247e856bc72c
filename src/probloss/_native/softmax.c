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
 * data, so the results are bit-identical for any thread count. The GIL is
 * released while the kernels run.
 *
 * Python API (all return None and write `loss`; None for an optional buffer):
 *   softmax_ce_sparse(logits f32[n*k], labels i64[n], k, loss f32[n], grad f32[n*k] | None,
 *                     row_scale f32[n] | None, scale, nthreads, bounds f32[2n] | None)
 *   softmax_ce(logits f32[n*k], labels f32[n*k], k, loss f32[n], grad f32[n*k] | None,
 *              row_scale f32[n] | None, scale, nthreads, bounds f32[2n] | None[, label_bounds f32[2n] | None])
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
 *   softmax_isa() -> "avx2" | "baseline"
 *   openmp() -> whether the module was compiled with OpenMP
 *   AVAILABLE: 1, or 0 where the compiler has no vector extensions (MSVC: the
 *   module is then empty and NumPy inputs use the generic kernels).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pl_parallel.h"
#include "softmax_ce.h"

#if PL_SOFTMAX_AVAILABLE

/* Elements per task: hundreds of short rows; for long rows (>= 8192 classes)
 * four times as many, 32 rows of 32000 classes, since the next row is
 * prefetched within a task only and a task's first row comes cold from memory
 * (2048 x 32000 then makes 64 tasks). */
#define PL_SOFTMAX_TASK (1 << 18)
#define PL_SOFTMAX_LONG_ROW 8192
#define PL_SOFTMAX_LONG_TASK (1 << 20)

typedef struct {
    Py_buffer view;
    int held;
} Buffer;

static void release(Buffer *b) {
    if (b->held) PyBuffer_Release(&b->view);
    b->held = 0;
}

/* Take `obj` as a C-contiguous buffer of `count` items of `itemsize` bytes and
 * the format kind `kind` ('f' float, 'i' signed integer); None is allowed when
 * `optional`. Returns 0, or -1 with a Python error set. */
static int acquire(PyObject *obj, const char *name, char kind, Py_ssize_t itemsize, Py_ssize_t count,
                   int writable, int optional, Buffer *out) {
    out->held = 0;
    if (obj == Py_None && optional) return 0;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &out->view, flags) < 0) return -1;
    out->held = 1;
    const char *format = out->view.format ? out->view.format : "B";
    if (*format == '<' || *format == '=' || *format == '@') format++;
    int kind_ok = kind == 'f' ? (*format == 'f' || *format == 'd')
                              : (*format == 'q' || *format == 'l' || *format == 'i');
    if (!kind_ok || format[1] != '\0' || out->view.itemsize != itemsize || out->view.len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd native items of %zd bytes (kind %c), got format %s, %zd bytes",
                     name, count, itemsize, kind, out->view.format ? out->view.format : "B", out->view.len);
        release(out);
        return -1;
    }
    return 0;
}

static int check_shape(Py_ssize_t n, Py_ssize_t k) {
    if (k < 1 || k > INT32_MAX - 16 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "classes must be in [1, 2^31 - 17]");
        return -1;
    }
    return 0;
}

static Py_ssize_t rows_per_task(Py_ssize_t k) {
    Py_ssize_t task = k >= PL_SOFTMAX_LONG_ROW ? PL_SOFTMAX_LONG_TASK : PL_SOFTMAX_TASK;
    return k >= task ? 1 : task / k;
}

/* n from the loss buffer's length: loss is f32[n] */
static Py_ssize_t loss_rows(PyObject *loss) {
    Py_buffer view;
    if (PyObject_GetBuffer(loss, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) return -1;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(float);
    PyBuffer_Release(&view);
    return n;
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
    Py_ssize_t n = loss_rows(loss);
    if (n < 0 || check_shape(n, k) < 0) return NULL;
    Buffer bx, bt, bl, bg, bs, bb, blb;
    if (acquire(logits, "logits", 'f', 4, n * k, 0, 0, &bx) < 0) return NULL;
    if (acquire(labels, "labels", sparse ? 'i' : 'f', sparse ? 8 : 4, sparse ? n : n * k, 0, 0, &bt) < 0) goto fail_x;
    if (acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (acquire(grad, "grad", 'f', 4, n * k, 1, 1, &bg) < 0) goto fail_l;
    if (acquire(row_scale, "row_scale", 'f', 4, n, 0, 1, &bs) < 0) goto fail_g;
    if (acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_s;
    if (acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        const float *x = (const float *)bx.view.buf;
        const void *t = bt.view.buf;
        float *out = (float *)bl.view.buf;
        float *g = bg.held ? (float *)bg.view.buf : NULL;
        const float *s = bs.held ? (const float *)bs.view.buf : NULL;
        float *b = bb.held ? (float *)bb.view.buf : NULL;
        float *lb = blb.held ? (float *)blb.view.buf : NULL;
        const Py_ssize_t per = rows_per_task(k), ntasks = (n + per - 1) / per;
        Py_BEGIN_ALLOW_THREADS
        PL_PARALLEL_FOR(nthreads, n * k, ntasks, task) {
            int64_t r0 = (int64_t)task * per, r1 = r0 + per < n ? r0 + per : n;
            if (sparse)
                pl_sparse_softmax_ce_rows(x, k, (const int64_t *)t, out, g, s, scale, b, r0, r1);
            else
                pl_softmax_ce_rows(x, (const float *)t, k, out, g, s, scale, b, lb, r0, r1);
        }
        Py_END_ALLOW_THREADS
    }
    release(&blb);
    release(&bb);
    release(&bs);
    release(&bg);
    release(&bl);
    release(&bt);
    release(&bx);
    Py_RETURN_NONE;
fail_b:
    release(&bb);
fail_s:
    release(&bs);
fail_g:
    release(&bg);
fail_l:
    release(&bl);
fail_t:
    release(&bt);
fail_x:
    release(&bx);
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
    Py_ssize_t n = loss_rows(loss);
    if (n < 0 || check_shape(n, k) < 0) return NULL;
    Buffer ba;
    if (PyObject_GetBuffer(alpha, &ba.view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    ba.held = 1;
    Py_ssize_t n_alpha = ba.view.len / 8;
    release(&ba);
    if (n_alpha != 1 && n_alpha != k) {
        PyErr_SetString(PyExc_ValueError, "alpha: expected 1 or k float64 values");
        return NULL;
    }
    Buffer bx, bt, bl, bb, blb;
    if (acquire(alpha, "alpha", 'f', 8, n_alpha, 0, 0, &ba) < 0) return NULL;
    if (acquire(logits, "logits", 'f', 4, n * k, 0, 0, &bx) < 0) goto fail_a;
    if (acquire(labels, "labels", 'f', 4, n * k, 0, 0, &bt) < 0) goto fail_x;
    if (acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_l;
    if (acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        const float *x = (const float *)bx.view.buf, *t = (const float *)bt.view.buf;
        const double *a = (const double *)ba.view.buf;
        float *out = (float *)bl.view.buf;
        float *b = bb.held ? (float *)bb.view.buf : NULL;
        float *lb = blb.held ? (float *)blb.view.buf : NULL;
        const Py_ssize_t per = rows_per_task(k), ntasks = (n + per - 1) / per;
        Py_BEGIN_ALLOW_THREADS
        PL_PARALLEL_FOR(nthreads, n * k, ntasks, task) {
            int64_t r0 = (int64_t)task * per, r1 = r0 + per < n ? r0 + per : n;
            pl_focal_softmax_ce_rows(x, t, k, a, n_alpha, gamma, out, b, lb, r0, r1);
        }
        Py_END_ALLOW_THREADS
    }
    release(&blb);
    release(&bb);
    release(&bl);
    release(&bt);
    release(&bx);
    release(&ba);
    Py_RETURN_NONE;
fail_b:
    release(&bb);
fail_l:
    release(&bl);
fail_t:
    release(&bt);
fail_x:
    release(&bx);
fail_a:
    release(&ba);
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
    Py_ssize_t n = loss_rows(loss);
    if (n < 0 || check_shape(n, k) < 0) return NULL;
    Buffer by, bt, bl, bb, blb;
    if (acquire(probs, "probs", 'f', 4, n * k, 0, 0, &by) < 0) return NULL;
    if (acquire(labels, "labels", sparse ? 'i' : 'f', sparse ? 8 : 4, sparse ? n : n * k, 0, 0, &bt) < 0) goto fail_y;
    if (acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_l;
    if (acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        const float *y = (const float *)by.view.buf;
        const void *t = bt.view.buf;
        float *out = (float *)bl.view.buf;
        float *b = bb.held ? (float *)bb.view.buf : NULL;
        float *lb = blb.held ? (float *)blb.view.buf : NULL;
        const Py_ssize_t per = rows_per_task(k), ntasks = (n + per - 1) / per;
        Py_BEGIN_ALLOW_THREADS
        PL_PARALLEL_FOR(nthreads, n * k, ntasks, task) {
            int64_t r0 = (int64_t)task * per, r1 = r0 + per < n ? r0 + per : n;
            if (sparse)
                pl_sparse_normalized_ce_rows(y, k, (const int64_t *)t, lo, hi, out, b, r0, r1);
            else
                pl_normalized_ce_rows(y, (const float *)t, k, lo, hi, out, b, lb, r0, r1);
        }
        Py_END_ALLOW_THREADS
    }
    release(&blb);
    release(&bb);
    release(&bl);
    release(&bt);
    release(&by);
    Py_RETURN_NONE;
fail_b:
    release(&bb);
fail_l:
    release(&bl);
fail_t:
    release(&bt);
fail_y:
    release(&by);
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

static PyMethodDef methods[] = {
    {"softmax_ce_sparse", py_softmax_ce_sparse, METH_VARARGS, "Sparse softmax cross-entropy rows (see softmax.c)."},
    {"softmax_ce", py_softmax_ce, METH_VARARGS, "Softmax cross-entropy rows, dense labels."},
    {"focal_softmax_ce", py_focal_softmax_ce, METH_VARARGS, "Categorical focal cross-entropy rows from logits."},
    {"normalized_ce_sparse", py_normalized_ce_sparse, METH_VARARGS, "Sparse cross-entropy rows from probabilities."},
    {"normalized_ce", py_normalized_ce, METH_VARARGS, "Categorical cross-entropy rows from probabilities."},
    {"softmax_isa", py_softmax_isa, METH_NOARGS, "The instruction set the softmax kernels run on."},
    {"openmp", py_openmp, METH_NOARGS, "Whether the module was compiled with OpenMP."},
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
