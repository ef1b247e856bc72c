/* pl_rows.h: run an elementwise loss over a 2-D (rows, cols) float32 pair and
 * reduce each row, multi-threaded, with the data's bounds from the same pass.
 *
 * This is the driver of the binary family (binary CE, focal, Poisson, KL);
 * the kernels supply only a block function. Include it after Python.h.
 *
 * C API:
 *
 *   typedef struct { const char *data; Py_ssize_t row_stride, col_stride; } pl_view;
 *       A 2-D float32 array: element (r, c) at data + r*row_stride + c*col_stride
 *       (byte strides, any sign; from the buffer protocol).
 *
 *   typedef struct { int32_t ymin, ymax, xmin, xmax; } pl_bounds;
 *       Minimum and maximum of y and x as pl_order_f() keys (an order-preserving
 *       map of float bits to int32: -NaN < -inf < ... < -0 < +0 < ... < inf < NaN),
 *       so integer min/max vectorise and give the float bounds exactly.
 *
 *   typedef void (*pl_block_fn)(const void *params, const float *y, const float *x,
 *                               Py_ssize_t n, double *acc, float *grad, pl_bounds *b);
 *       Process n <= PL_BLOCK contiguous elements: add each loss term into the
 *       lane accumulators acc[PL_LANES] with pl_sum_lanes or pl_sum_lanes_f
 *       (double or float terms; fixed order, vectorised), update
 *       *b with pl_bounds_update, and if grad != NULL write d(term)/dx there.
 *       Define it with PL_CLONES so that it runs with AVX2/AVX-512 where present.
 *
 *   int pl_row_reduce(pl_block_fn fn, const void *params, pl_view y, pl_view x,
 *                     Py_ssize_t rows, Py_ssize_t cols, double divisor, float *out,
 *                     float *grad, int nthreads, pl_bounds *bounds, Py_ssize_t *nonfinite);
 *       out[r] = (sum_c term(y[r,c], x[r,c])) / divisor, rounded once to float32;
 *       grad (C-contiguous rows x cols, or NULL) receives the block function's
 *       gradient. *nonfinite counts the rows whose out is NaN or inf. Returns 0,
 *       or -1 when memory ran out. Call it with the GIL released. Threads:
 *       pl_pool.h (the caller never waits for a worker that has not started).
 *
 * Blocking: a row of up to PL_TASK elements is one unit, rows are grouped into
 * tasks of about PL_TASK elements; a longer row is cut into chunks of PL_TASK
 * whose partial sums are added in chunk order. Neither depends on the thread
 * count, hence bit-identical results for any number of threads.
 */
#ifndef PL_ROWS_H
#define PL_ROWS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pl_math.h"
#include "pl_pool.h"

#define PL_BLOCK 1024
#define PL_TASK 16384
#define PL_LANES 8

typedef struct {
    const char *data;
    Py_ssize_t row_stride, col_stride;
} pl_view;

typedef struct {
    int32_t ymin, ymax, xmin, xmax;
} pl_bounds;

typedef void (*pl_block_fn)(const void *params, const float *y, const float *x, Py_ssize_t n,
                            double *acc, float *grad, pl_bounds *b);

/* Order-preserving int32 key of a float's bits; its own inverse. */
PL_INLINE int32_t pl_order_f(float v)
{
    int32_t i;
    memcpy(&i, &v, 4);
    return i ^ ((i >> 31) & INT32_MAX); /* flip all but the sign bit of a negative float: shift + one ternary logic op */
}

PL_INLINE float pl_unorder_f(int32_t k)
{
    int32_t i = k ^ (int32_t)((uint32_t)(k >> 31) >> 1);
    float v;
    memcpy(&v, &i, 4);
    return v;
}

static const pl_bounds pl_bounds_empty = {INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN};

PL_INLINE void pl_bounds_merge(pl_bounds *into, const pl_bounds *b)
{
    if (b->ymin < into->ymin) into->ymin = b->ymin;
    if (b->ymax > into->ymax) into->ymax = b->ymax;
    if (b->xmin < into->xmin) into->xmin = b->xmin;
    if (b->xmax > into->xmax) into->xmax = b->xmax;
}

/* Vectorised min/max of the keys of y and x (inline into the cloned block function). */
PL_INLINE void pl_bounds_update(const float *restrict y, const float *restrict x, Py_ssize_t n,
                                pl_bounds *b)
{
    int32_t ylo = b->ymin, yhi = b->ymax, xlo = b->xmin, xhi = b->xmax;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t ky = pl_order_f(y[i]), kx = pl_order_f(x[i]);
        ylo = ky < ylo ? ky : ylo;
        yhi = ky > yhi ? ky : yhi;
        xlo = kx < xlo ? kx : xlo;
        xhi = kx > xhi ? kx : xhi;
    }
    b->ymin = ylo, b->ymax = yhi, b->xmin = xlo, b->xmax = xhi;
}

/* acc[j] += terms[j + PL_LANES*m] for all m: a fixed summation order that vectorises
 * without reassociation (each lane is an independent running sum). */
PL_INLINE void pl_sum_lanes(const double *restrict terms, Py_ssize_t n, double *restrict acc)
{
    Py_ssize_t i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int j = 0; j < PL_LANES; j++) acc[j] += terms[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += terms[i + j];
}

/* The same for float terms, each widened to double before it is added. */
PL_INLINE void pl_sum_lanes_f(const float *restrict terms, Py_ssize_t n, double *restrict acc)
{
    Py_ssize_t i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int j = 0; j < PL_LANES; j++) acc[j] += (double)terms[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += (double)terms[i + j];
}

static double pl_lanes_total(const double *acc)
{
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* Sum of the terms of row r, columns [c0, c1), into acc. */
static void pl_run_span(pl_block_fn fn, const void *params, pl_view y, pl_view x, Py_ssize_t r,
                        Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t cols, double *acc, float *grad,
                        pl_bounds *b)
{
    const char *yr = y.data + r * y.row_stride, *xr = x.data + r * x.row_stride;
    float *gr = grad ? grad + r * cols : NULL;
    int y_contiguous = y.col_stride == (Py_ssize_t)sizeof(float);
    int x_contiguous = x.col_stride == (Py_ssize_t)sizeof(float);
    float ybuf[PL_BLOCK], xbuf[PL_BLOCK];
    for (Py_ssize_t c = c0; c < c1; c += PL_BLOCK) {
        Py_ssize_t n = c1 - c < PL_BLOCK ? c1 - c : PL_BLOCK;
        const float *yp, *xp;
        if (y_contiguous) {
            yp = (const float *)(yr + c * y.col_stride);
        } else {
            for (Py_ssize_t i = 0; i < n; i++) memcpy(ybuf + i, yr + (c + i) * y.col_stride, sizeof(float));
            yp = ybuf;
        }
        if (x_contiguous) {
            xp = (const float *)(xr + c * x.col_stride);
        } else {
            for (Py_ssize_t i = 0; i < n; i++) memcpy(xbuf + i, xr + (c + i) * x.col_stride, sizeof(float));
            xp = xbuf;
        }
        fn(params, yp, xp, n, acc, gr ? gr + c : NULL, b);
    }
}

/* One call's arguments, for the task function (pl_pool.h). */
typedef struct {
    pl_block_fn fn;
    const void *params;
    pl_view y, x;
    Py_ssize_t rows, cols, chunks, rows_per_task;
    int chunked;
    double divisor;
    float *out, *grad;
    pl_bounds *task_bounds;
    Py_ssize_t *task_bad;
    double *partial;
} pl_row_job;

/* Task t of a pl_row_reduce call: its rows (or its chunk of one long row), its
 * own result slots. */
static void pl_row_task(void *ctx, long long t)
{
    const pl_row_job *J = (const pl_row_job *)ctx;
    pl_bounds b = pl_bounds_empty;
    if (J->chunked) {
        Py_ssize_t r = (Py_ssize_t)(t / J->chunks), k = (Py_ssize_t)(t % J->chunks);
        double acc[PL_LANES] = {0};
        Py_ssize_t c1 = (k + 1) * PL_TASK < J->cols ? (k + 1) * PL_TASK : J->cols;
        pl_run_span(J->fn, J->params, J->y, J->x, r, k * PL_TASK, c1, J->cols, acc, J->grad, &b);
        J->partial[t] = pl_lanes_total(acc);
    } else {
        Py_ssize_t r0 = (Py_ssize_t)t * J->rows_per_task;
        Py_ssize_t r1 = r0 + J->rows_per_task < J->rows ? r0 + J->rows_per_task : J->rows;
        Py_ssize_t bad = 0;
        for (Py_ssize_t r = r0; r < r1; r++) {
            double acc[PL_LANES] = {0};
            pl_run_span(J->fn, J->params, J->y, J->x, r, 0, J->cols, J->cols, acc, J->grad, &b);
            float v = (float)(pl_lanes_total(acc) / J->divisor);
            J->out[r] = v;
            bad += !(v - v == 0.0f); /* NaN or inf */
        }
        J->task_bad[t] = bad;
    }
    J->task_bounds[t] = b;
}

static int pl_row_reduce(pl_block_fn fn, const void *params, pl_view y, pl_view x, Py_ssize_t rows,
                         Py_ssize_t cols, double divisor, float *out, float *grad, int nthreads,
                         pl_bounds *bounds, Py_ssize_t *nonfinite)
{
    *bounds = pl_bounds_empty;
    *nonfinite = 0;
    if (rows == 0) return 0;
    const Py_ssize_t work = rows * cols;
    const int chunked = cols > PL_TASK;
    const Py_ssize_t chunks = chunked ? (cols + PL_TASK - 1) / PL_TASK : 1;
    const Py_ssize_t rows_per_task = chunked ? 1 : (cols ? (PL_TASK / cols > 0 ? PL_TASK / cols : 1) : rows);
    const Py_ssize_t ntasks = chunked ? rows * chunks : (rows + rows_per_task - 1) / rows_per_task;
    pl_bounds *task_bounds = (pl_bounds *)malloc((size_t)ntasks * sizeof(pl_bounds));
    Py_ssize_t *task_bad = (Py_ssize_t *)calloc((size_t)ntasks, sizeof(Py_ssize_t));
    double *partial = chunked ? (double *)malloc((size_t)ntasks * sizeof(double)) : NULL;
    if (!task_bounds || !task_bad || (chunked && !partial)) {
        free(task_bounds);
        free(task_bad);
        free(partial);
        return -1;
    }
    pl_row_job job = {fn, params, y, x, rows, cols, chunks, rows_per_task, chunked, divisor, out, grad,
                      task_bounds, task_bad, partial};
    pl_run_tasks(nthreads, (long long)work, (long long)ntasks, pl_row_task, &job);
    Py_ssize_t bad = 0;
    if (chunked) {
        for (Py_ssize_t r = 0; r < rows; r++) {
            double total = 0.0;
            for (Py_ssize_t k = 0; k < chunks; k++) total += partial[r * chunks + k];
            float v = (float)(total / divisor);
            out[r] = v;
            bad += !(v - v == 0.0f);
        }
    }
    for (Py_ssize_t t = 0; t < ntasks; t++) {
        pl_bounds_merge(bounds, &task_bounds[t]);
        bad += task_bad[t];
    }
    *nonfinite = bad;
    free(task_bounds);
    free(task_bad);
    free(partial);
    return 0;
}

#endif /* PL_ROWS_H */
