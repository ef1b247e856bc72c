/* probloss._native._softmax_grad: categorical focal cross-entropy from logits with its gradient.
 *
 * A separate module from _softmax (softmax.c) so that the two evolve apart: it
 * compiles softmax_ce_impl.h's helpers again under its own names
 * (softmax_focal_grad_base.c, softmax_focal_grad_avx2.c) and adds the kernel of
 * softmax_focal_grad_impl.h. Same conventions as softmax.c: every argument a
 * C-contiguous buffer checked for type and size, tasks of rows that depend on
 * the shape only (bit-identical for any thread count), the GIL released.
 *
 * Python API:
 *   focal_softmax_ce_grad(logits f32[n*k], labels f32[n*k], k, alpha f64[1 or k], gamma, loss f32[n],
 *                         grad f32[n*k] | None, row_scale f32[n] | None, scale, nthreads, bounds f32[2n] | None
 *                         [, label_bounds f32[2n] | None])
 *     bounds: each row's minimum (NaN where the row holds one) and maximum logit; label_bounds:
 *     each row's minimum and maximum label, or NaN, NaN where a label is not a finite
 *     non-negative number other than -0.0 (range_put in softmax_ce_impl.h), from pass 2.
 *   softmax_isa() -> "avx2" | "baseline"
 *   openmp() -> whether the module was compiled with OpenMP
 *   AVAILABLE: 1, or 0 where the compiler has no vector extensions.
 */
#include "softmax_glue.h"
#include "pl_parallel.h"
#include "softmax_ce.h"

#if PL_SOFTMAX_AVAILABLE

#define PL_SOFTMAX_TASK (1 << 18)

#define DECLARE(suffix)                                                                                       \
    void pl_focal_softmax_ce_grad_rows##suffix(const float *, const float *, int64_t, const double *, int64_t, \
                                               double, float *, float *, const float *, double, float *,        \
                                               float *, int64_t, int64_t);
DECLARE(_fgbase)
#if PL_HAVE_AVX2_BUILD
DECLARE(_fgavx2)
#endif

static void focal_grad_rows(const float *x, const float *t, int64_t k, const double *a, int64_t n_alpha, double gamma,
                            float *loss, float *grad, const float *s, double scale, float *bounds,
                            float *label_bounds, int64_t r0, int64_t r1) {
#if PL_HAVE_AVX2_BUILD
    if (pl_use_avx2()) {
        pl_focal_softmax_ce_grad_rows_fgavx2(x, t, k, a, n_alpha, gamma, loss, grad, s, scale, bounds, label_bounds,
                                             r0, r1);
        return;
    }
#endif
    pl_focal_softmax_ce_grad_rows_fgbase(x, t, k, a, n_alpha, gamma, loss, grad, s, scale, bounds, label_bounds, r0,
                                         r1);
}

static Py_ssize_t rows_per_task(Py_ssize_t k) { return k >= PL_SOFTMAX_TASK ? 1 : PL_SOFTMAX_TASK / k; }

static PyObject *py_focal_softmax_ce_grad(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *logits, *labels, *alpha, *loss, *grad, *row_scale, *bounds, *label_bounds = Py_None;
    Py_ssize_t k;
    double gamma, scale;
    int nthreads;
    if (!PyArg_ParseTuple(args, "OOnOdOOOdiO|O", &logits, &labels, &k, &alpha, &gamma, &loss, &grad,
                          &row_scale, &scale, &nthreads, &bounds, &label_bounds))
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
    Buffer bx, bt, bl, bg, bs, bb, blb;
    if (pl_acquire(alpha, "alpha", 'f', 8, n_alpha, 0, 0, &ba) < 0) return NULL;
    if (pl_acquire(logits, "logits", 'f', 4, n * k, 0, 0, &bx) < 0) goto fail_a;
    if (pl_acquire(labels, "labels", 'f', 4, n * k, 0, 0, &bt) < 0) goto fail_x;
    if (pl_acquire(loss, "loss", 'f', 4, n, 1, 0, &bl) < 0) goto fail_t;
    if (pl_acquire(grad, "grad", 'f', 4, n * k, 1, 1, &bg) < 0) goto fail_l;
    if (pl_acquire(row_scale, "row_scale", 'f', 4, n, 0, 1, &bs) < 0) goto fail_g;
    if (pl_acquire(bounds, "bounds", 'f', 4, 2 * n, 1, 1, &bb) < 0) goto fail_s;
    if (pl_acquire(label_bounds, "label_bounds", 'f', 4, 2 * n, 1, 1, &blb) < 0) goto fail_b;
    {
        const float *x = (const float *)bx.view.buf, *t = (const float *)bt.view.buf;
        const double *a = (const double *)ba.view.buf;
        float *out = (float *)bl.view.buf;
        float *g = bg.held ? (float *)bg.view.buf : NULL;
        const float *s = bs.held ? (const float *)bs.view.buf : NULL;
        float *b = bb.held ? (float *)bb.view.buf : NULL;
        float *lb = blb.held ? (float *)blb.view.buf : NULL;
        const Py_ssize_t per = rows_per_task(k), ntasks = (n + per - 1) / per;
        Py_BEGIN_ALLOW_THREADS
        PL_PARALLEL_FOR(nthreads, n * k, ntasks, task) {
            int64_t r0 = (int64_t)task * per, r1 = r0 + per < n ? r0 + per : n;
            focal_grad_rows(x, t, k, a, n_alpha, gamma, out, g, s, scale, b, lb, r0, r1);
        }
        Py_END_ALLOW_THREADS
    }
    pl_release(&blb);
    pl_release(&bb);
    pl_release(&bs);
    pl_release(&bg);
    pl_release(&bl);
    pl_release(&bt);
    pl_release(&bx);
    pl_release(&ba);
    Py_RETURN_NONE;
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
fail_a:
    pl_release(&ba);
    return NULL;
}

static PyObject *py_softmax_isa(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(pl_use_avx2() ? "avx2" : "baseline");
}

static PyObject *py_openmp(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(pl_openmp_available());
}

static PyMethodDef methods[] = {
    {"openmp", py_openmp, METH_NOARGS, "Whether the module was compiled with OpenMP."},
    {"focal_softmax_ce_grad", py_focal_softmax_ce_grad, METH_VARARGS,
     "Categorical focal cross-entropy rows from logits, with the gradient."},
    {"softmax_isa", py_softmax_isa, METH_NOARGS, "The instruction set the kernel runs on."},
    {NULL, NULL, 0, NULL},
};

#else /* no kernels with this compiler (MSVC) */

static PyMethodDef methods[] = {
    {NULL, NULL, 0, NULL},
};

#endif

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_softmax_grad", "Categorical focal cross-entropy with its gradient.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__softmax_grad(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "AVAILABLE", PL_SOFTMAX_AVAILABLE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
