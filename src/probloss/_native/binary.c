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
 *   params   tuple of floats, per kind (see each block function, binary_impl.h).
 *   Returns the number of rows whose value is NaN or inf, and the minimum and
 *   maximum of y and x (NaN when the array holds one; +inf/-inf for empty).
 *
 *   xla_handlers() -> {"probloss_binary": PyCapsule}: the same kernels as an XLA FFI
 *   handler (only where built with XLA's FFI header, PL_XLA_FFI; pl_xla.h).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pl_rows.h"
#include "pl_xla.h"

enum {
    KIND_BCE_LOGITS = 0,
    KIND_BCE_PROBS = 1,
    KIND_FOCAL_LOGITS = 2,
    KIND_FOCAL_PROBS = 3,
    KIND_POISSON = 4,
    KIND_KL = 5,
    KIND_COUNT
};

/* The block functions, twice: the load-time clones (AVX-512, AVX2 + FMA or the
 * baseline, chosen by the CPU) and the baseline alone (for PROBLOSS_NATIVE_BASELINE=1). */
#define PL_NAME(fn) fn##_auto
#define PL_BLOCK_ATTR PL_CLONES
#include "binary_impl.h"
#define PL_NAME(fn) fn##_base
#define PL_BLOCK_ATTR
#include "binary_impl.h"

/* 1 when PROBLOSS_NATIVE_BASELINE=1 was set when the module was loaded: the
 * baseline build runs (tests of that build on AVX2 machines). */
static int force_baseline = 0;

/* The block function of a kind: the baseline build's where forced, KL's fused
 * copy where the CPU has one (kl_fused_block), else the load-time clones. */
static pl_block_fn block_for(int kind)
{
    if (force_baseline) return blocks_base[kind];
#ifdef PL_KL_FUSED
    if (kind == KIND_KL && kl_fused_block()) return kl_fused_block();
#endif
    return blocks_auto[kind];
}

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
    status = pl_row_reduce(block_for(kind), &params, yv, xv, rows, cols, divisor, (float *)ob.buf, grad,
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

#ifdef PL_XLA_FFI
/* ------------------------------------------------------------ XLA FFI handler (pl_xla.h)
 *
 * probloss_binary(y f32[..., cols], x f32[..., cols]) -> out f32[...] [, grad f32[..., cols]]
 * with the attributes `kind`, `threads`, `divisor` and `p0`..`p5` (the params of
 * row_losses; absent ones are 0), and optionally `grad_scale`: the gradient's
 * scale in place of 1/divisor (a reduction's factor folded in: JAX's Loss-level
 * short way, probloss._backends._jax_direct). Every leading axis is a row (JAX's vmap adds
 * them in front). Rows whose value is non-finite are the caller's to recompute. */
static XLA_FFI_Error *xla_binary(XLA_FFI_CallFrame *frame)
{
    PL_XLA_PROLOGUE(frame);
    XLA_FFI_Buffer *by = pl_xla_arg(frame, 0), *bx = pl_xla_arg(frame, 1), *bo = pl_xla_ret(frame, 0);
    XLA_FFI_Buffer *bg = frame->rets.size > 1 ? pl_xla_ret(frame, 1) : NULL;
    int64_t kind, threads;
    double divisor;
    if (!by || !bx || !bo || (frame->rets.size > 1 && !bg) || pl_xla_attr_i64(frame, "kind", &kind) < 0 ||
        pl_xla_attr_i64(frame, "threads", &threads) < 0 || pl_xla_attr_f64(frame, "divisor", &divisor) < 0)
        return pl_xla_error(frame, "probloss binary FFI: expected 2 buffers, 1 or 2 results, kind, threads, divisor");
    if (kind < 0 || kind >= KIND_COUNT) return pl_xla_error(frame, "probloss binary FFI: unknown kernel kind");
    params_t params = {{0}};
    static const char *const names[6] = {"p0", "p1", "p2", "p3", "p4", "p5"};
    for (int i = 0; i < 6; i++) {
        double v;
        if (pl_xla_attr_f64(frame, names[i], &v) == 0) params.p[i] = v;
    }
    const int64_t cols = pl_xla_last(bx), rows = cols ? pl_xla_numel(bx) / cols : pl_xla_numel(bo);
    if (bx->dtype != XLA_FFI_DataType_F32 || by->dtype != XLA_FFI_DataType_F32 || bo->dtype != XLA_FFI_DataType_F32 ||
        pl_xla_numel(by) != rows * cols || pl_xla_numel(bo) != rows ||
        (bg && (bg->dtype != XLA_FFI_DataType_F32 || pl_xla_numel(bg) != rows * cols)))
        return pl_xla_error(frame, "probloss binary FFI: unexpected dtypes or shapes");
    if (rows == 0) return NULL;
    pl_view yv = {(const char *)by->data, (Py_ssize_t)(cols * 4), 4};
    pl_view xv = {(const char *)bx->data, (Py_ssize_t)(cols * 4), 4};
    params.scale = 1.0 / divisor;
    double grad_scale;
    if (pl_xla_attr_f64(frame, "grad_scale", &grad_scale) == 0) params.scale = grad_scale;
    if (bg) pl_xla_huge_pages(bg->data, (size_t)(rows * cols) * sizeof(float));
    pl_bounds bounds;
    Py_ssize_t nonfinite;
    if (pl_row_reduce(block_for(kind), &params, yv, xv, rows, cols, divisor,
                      (float *)bo->data, bg ? (float *)bg->data : NULL, threads < 1 ? 1 : (int)threads, &bounds,
                      &nonfinite) < 0)
        return pl_xla_error(frame, "probloss binary FFI: out of memory");
    return NULL;
}

static PyObject *xla_handlers(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return Py_BuildValue("{sN}", "probloss_binary", PL_XLA_CAPSULE(xla_binary));
}
#endif /* PL_XLA_FFI */

static PyObject *openmp(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyBool_FromLong(pl_openmp_available());
}

static PyObject *isa(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyUnicode_FromString(force_baseline ? "baseline" : "auto");
}

static PyMethodDef methods[] = {
    {"row_losses", row_losses, METH_VARARGS,
     "row_losses(kind, y, x, out, divisor, threads, grad, params) -> (nonfinite, y_min, y_max, x_min, x_max)"},
    {"openmp", openmp, METH_NOARGS, "Whether the module was compiled with OpenMP."},
    {"isa", isa, METH_NOARGS,
     "'baseline' when PROBLOSS_NATIVE_BASELINE=1 forced the baseline build, else 'auto' (the CPU's clone)."},
#ifdef PL_XLA_FFI
    {"xla_handlers", xla_handlers, METH_NOARGS, "XLA FFI handlers (name -> PyCapsule) for jax.ffi."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binary", "Compiled kernels of the binary loss family.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__binary(void)
{
    const char *force = getenv("PROBLOSS_NATIVE_BASELINE");
    force_baseline = force && force[0] == '1';
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
