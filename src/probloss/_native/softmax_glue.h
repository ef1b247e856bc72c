/* softmax_glue.h: the Python side of the softmax family's modules (softmax.c,
 * softmax_focal_grad.c): taking arguments as checked buffers, and choosing the
 * AVX2 or the baseline build of the kernels at run time.
 *
 * Every kernel argument is a C-contiguous buffer checked here for its item kind
 * and size, so that no call can read or write out of bounds; shapes, dtypes and
 * the choice of kernel are the Python layer's.
 *
 * C API (static, one copy per module):
 *   Buffer, pl_release(&b)     a held buffer view, released once
 *   pl_acquire(obj, name, kind, itemsize, count, writable, optional, &out)
 *                              0, or -1 with a Python error set
 *   pl_check_shape(n, k)       0, or -1 with ValueError when k is out of range
 *   pl_loss_rows(loss)         n from a writable f32[n] buffer, or -1
 *   pl_use_avx2()              1 when the AVX2 + FMA build is to run
 */
#ifndef PL_SOFTMAX_GLUE_H
#define PL_SOFTMAX_GLUE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

#include "softmax_ce.h" /* PL_HAVE_AVX2_BUILD */

typedef struct {
    Py_buffer view;
    int held;
} Buffer;

static inline void pl_release(Buffer *b) {
    if (b->held) PyBuffer_Release(&b->view);
    b->held = 0;
}

/* Take `obj` as a C-contiguous buffer of `count` items of `itemsize` bytes and
 * the format kind `kind` ('f' float, 'i' signed integer); None is allowed when
 * `optional`. Returns 0, or -1 with a Python error set. */
static inline int pl_acquire(PyObject *obj, const char *name, char kind, Py_ssize_t itemsize, Py_ssize_t count,
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
        pl_release(out);
        return -1;
    }
    return 0;
}

/* The kernels index a row's classes with int32 lanes (with 16 to spare). */
static inline int pl_check_shape(Py_ssize_t n, Py_ssize_t k) {
    if (k < 1 || k > INT32_MAX - 16 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "classes must be in [1, 2^31 - 17]");
        return -1;
    }
    return 0;
}

/* n from the loss buffer's length: loss is f32[n] */
static inline Py_ssize_t pl_loss_rows(PyObject *loss) {
    Py_buffer view;
    if (PyObject_GetBuffer(loss, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) return -1;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(float);
    PyBuffer_Release(&view);
    return n;
}

/* PROBLOSS_NATIVE_BASELINE=1 in the environment forces the baseline build
 * (for tests of that build on AVX2 machines). The first call decides; a race
 * between threads on it writes the same value. */
static inline int pl_use_avx2(void) {
#if PL_HAVE_AVX2_BUILD
    static volatile int cached = -1;
    if (cached < 0) {
        const char *force = getenv("PROBLOSS_NATIVE_BASELINE");
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !(force && force[0] == '1');
    }
    return cached;
#else
    return 0;
#endif
}

/* 1 when the AVX-512 build is to run (softmax_ce.c's kernels; softmax_focal_grad.c
 * has none): the AVX2 build's conditions, AVX-512 F, VL, BW and DQ, and
 * PROBLOSS_NATIVE_NO_AVX512 not 1 (for tests comparing the two builds). */
static inline int pl_use_avx512(void) {
#if PL_HAVE_AVX512_BUILD
    static volatile int cached = -1;
    if (cached < 0) {
        const char *force = getenv("PROBLOSS_NATIVE_NO_AVX512");
        cached = pl_use_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                 && !(force && force[0] == '1');
    }
    return cached;
#else
    return 0;
#endif
}

#endif /* PL_SOFTMAX_GLUE_H */
