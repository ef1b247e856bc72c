/* probloss._native._ctc: the CTC loss and its gradient, log-space forward-backward.
 *
 * One task per sample (threads over the batch, pl_parallel.h): each task reads its
 * own rows and writes its own loss and gradient slots, in a fixed order, so the
 * result is bit-identical for any thread count. Everything is computed in double
 * and the gradient is rounded once to the logits' type.
 *
 * Per sample (n labels, Tb frames, S = 2n + 1 states of the extended label z):
 *   log_softmax per frame as (x_k - m) - log1p(S'), S' the sum of exp(x_j - m) over
 *     every class but the first maximal one (exact near probability 1);
 *   alpha[t][s] (emission at t included) for t < Tb, kept for the gradient;
 *   loss = -logaddexp(alpha[Tb-1][2n], alpha[Tb-1][2n-1]), +inf where no alignment;
 *   beta (emission at t excluded) backwards, one row at a time; the occupancy of
 *     state s at t is exp(alpha + beta + loss); the gradient is softmax - occupancy
 *     per class, formed from the complements for the class with most occupancy (both
 *     near 1 there). Frames past Tb and samples without alignment get 0.
 * The same algorithm as the array-API kernel probloss/_kernels/_ctc.py (the reference).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pl_parallel.h"

/* log(exp(a) + exp(b) + exp(c)) as max + log1p(sum of the other two exp(x - max)):
 * one log1p, and exact near 0 (a probability near 1 keeps its digits). */
static inline double lae3(double a, double b, double c)
{
    double m = a, u = b, v = c;
    if (b > m) m = b, u = a, v = c;
    if (c > m) m = c, u = a, v = b;
    if (m == -INFINITY) return m;
    double r = 0.0;
    if (u > -INFINITY) r += exp(u - m);
    if (v > -INFINITY) r += exp(v - m);
    return r == 0.0 ? m : m + log1p(r);
}

static inline double lae(double a, double b)
{
    if (a < b) {
        double t = a;
        a = b;
        b = t;
    }
    if (b == -INFINITY) return a;
    return a + log1p(exp(b - a));
}

typedef struct {
    const int64_t *labels, *label_lengths, *logit_lengths;
    const void *logits;
    int is_double;
    long long B, T, K, L;
    long long blank;
    double *loss;
    void *grad;
} ctc_job;

static inline double logit_at(const ctc_job *j, long long index)
{
    return j->is_double ? ((const double *)j->logits)[index] : (double)((const float *)j->logits)[index];
}

static inline void grad_put(const ctc_job *j, long long index, double v)
{
    if (j->is_double)
        ((double *)j->grad)[index] = v;
    else
        ((float *)j->grad)[index] = (float)v;
}

/* Returns 0, or -1 when out of memory (the loss is then NaN). */
static int ctc_sample(const ctc_job *j, long long b)
{
    const long long T = j->T, K = j->K, L = j->L;
    long long n = j->label_lengths[b], Tb = j->logit_lengths[b];
    if (n < 0) n = 0;
    if (n > L) n = L;
    if (Tb < 0) Tb = 0;
    if (Tb > T) Tb = T;
    const long long S = 2 * n + 1;
    const long long base = b * T * K;
    const int64_t *lab = j->labels + b * L;
    int want_grad = j->grad != NULL;

    long long *z = malloc((size_t)S * sizeof(long long));
    unsigned char *skip = malloc((size_t)S);
    double *m = malloc((size_t)(Tb ? Tb : 1) * sizeof(double));     /* 1 / (1 + S') */
    double *l1p = malloc((size_t)(Tb ? Tb : 1) * sizeof(double));   /* log1p(S') */
    long long *top = malloc((size_t)(Tb ? Tb : 1) * sizeof(long long));
    double *alpha = malloc((size_t)((want_grad ? Tb : 1) + 1) * (size_t)S * sizeof(double));
    double *emit = malloc((size_t)(Tb ? Tb : 1) * (size_t)S * sizeof(double));
    /* exp(x - m) of every class and frame, kept for the gradient's softmax (one exp per logit) */
    double *ex = want_grad ? malloc((size_t)(Tb ? Tb : 1) * (size_t)K * sizeof(double)) : NULL;
    if (!z || !skip || !m || !l1p || !top || !alpha || !emit || (want_grad && !ex)) {
        free(z), free(skip), free(m), free(l1p), free(top), free(alpha), free(emit), free(ex);
        j->loss[b] = NAN;
        return -1;
    }
    int bad_label = 0;
    for (long long s = 0; s < S; s++) {
        z[s] = (s % 2) ? lab[s / 2] : j->blank;
        skip[s] = (s % 2) && s >= 2 && z[s] != z[s - 2];
        bad_label |= z[s] < 0 || z[s] >= K;
    }
    if (bad_label) { /* unchecked input (validation off): NaN, never a plausible number */
        j->loss[b] = NAN;
        if (want_grad)
            for (long long i = base; i < base + T * K; i++) grad_put(j, i, NAN);
        free(z), free(skip), free(m), free(l1p), free(top), free(alpha), free(emit), free(ex);
        return 0;
    }
    /* log_softmax parts and the emissions of each state */
    for (long long t = 0; t < Tb; t++) {
        long long row = base + t * K, best = 0;
        double mx = logit_at(j, row);
        for (long long k = 1; k < K; k++) {
            double v = logit_at(j, row + k);
            if (v > mx) mx = v, best = k;
        }
        double rest = 0.0;
        if (ex) {
            double *exr = ex + t * K;
            for (long long k = 0; k < K; k++) exr[k] = exp(logit_at(j, row + k) - mx);
            for (long long k = 0; k < K; k++)
                if (k != best) rest += exr[k];
        } else {
            for (long long k = 0; k < K; k++)
                if (k != best) rest += exp(logit_at(j, row + k) - mx);
        }
        m[t] = 1.0 / (1.0 + rest), top[t] = best, l1p[t] = log1p(rest);
        for (long long s = 0; s < S; s++) {
            long long c = z[s];
            emit[t * S + s] = (logit_at(j, row + c) - mx) - l1p[t];
        }
    }
    /* forward: row r of `alpha` holds frame r (or the current frame only, without gradient) */
    double *prev = malloc((size_t)S * sizeof(double));
    if (!prev) {
        free(z), free(skip), free(m), free(l1p), free(top), free(alpha), free(emit), free(ex);
        j->loss[b] = NAN;
        return -1;
    }
    for (long long s = 0; s < S; s++) prev[s] = s == 0 ? 0.0 : -INFINITY;
    for (long long t = 0; t < Tb; t++) {
        double *cur = alpha + (want_grad ? t : 0) * S;
        const double *e = emit + t * S;
        /* states that can be occupied at t and still reach the end: [lo, hi] */
        long long lo = S - 2 * (Tb - t), hi = 2 * t + 1;
        if (lo < 0) lo = 0;
        if (hi > S - 1) hi = S - 1;
        for (long long s = 0; s < S; s++) {
            if (s < lo || s > hi) {
                cur[s] = -INFINITY;
                continue;
            }
            double a = lae3(prev[s], s >= 1 ? prev[s - 1] : -INFINITY, skip[s] ? prev[s - 2] : -INFINITY);
            cur[s] = a + e[s];
        }
        memcpy(prev, cur, (size_t)S * sizeof(double));
    }
    double ll = prev[S - 1];
    if (S >= 2) ll = lae(ll, prev[S - 2]);
    j->loss[b] = -ll;
    if (want_grad) {
        for (long long i = base; i < base + T * K; i++) grad_put(j, i, 0.0);
        if (ll > -INFINITY && Tb > 0) {
            double *beta = prev, *next = malloc((size_t)S * sizeof(double));
            double *occ_k = calloc((size_t)K, sizeof(double));
            double *occ_s = malloc((size_t)S * sizeof(double));
            if (!next || !occ_k || !occ_s) {
                free(next), free(occ_k), free(occ_s);
                free(z), free(skip), free(m), free(l1p), free(top), free(alpha), free(emit), free(prev), free(ex);
                j->loss[b] = NAN;
                return -1;
            }
            for (long long s = 0; s < S; s++) beta[s] = (s >= S - 2) ? 0.0 : -INFINITY;
            for (long long t = Tb - 1; t >= 0; t--) {
                const double *a = alpha + t * S;
                long long row = base + t * K;
                for (long long s = 0; s < S; s++) {
                    double lo_ = a[s] + beta[s];
                    occ_s[s] = lo_ == -INFINITY ? 0.0 : exp(lo_ - ll);
                    occ_k[z[s]] += occ_s[s];
                }
                /* the class with the most occupancy (first in state order among ties) */
                long long dom = z[0];
                for (long long s = 1; s < S; s++)
                    if (occ_k[z[s]] > occ_k[dom]) dom = z[s];
                double occ_rest = 0.0, prob_rest = 0.0;
                for (long long s = 0; s < S; s++)
                    if (z[s] != dom) occ_rest += occ_s[s];
                const double *exr = ex + t * K;
                double scale = m[t];
                for (long long k = 0; k < K; k++) {
                    double p = exr[k] * scale;
                    if (k != dom) {
                        prob_rest += p;
                        grad_put(j, row + k, p - occ_k[k]);
                    }
                }
                grad_put(j, row + dom, occ_rest - prob_rest);
                for (long long s = 0; s < S; s++) occ_k[z[s]] = 0.0;
                if (t == 0) break;
                /* beta_{t-1} */
                const double *e = emit + t * S;
                for (long long s = 0; s < S; s++) {
                    next[s] = lae3(beta[s] + e[s], s + 1 < S ? beta[s + 1] + e[s + 1] : -INFINITY,
                                   (s + 2 < S && skip[s + 2]) ? beta[s + 2] + e[s + 2] : -INFINITY);
                }
                memcpy(beta, next, (size_t)S * sizeof(double));
            }
            free(next), free(occ_k), free(occ_s);
        }
    }
    free(z), free(skip), free(m), free(l1p), free(top), free(alpha), free(emit), free(prev), free(ex);
    return 0;
}

static int get_buffer(PyObject *obj, Py_buffer *buf, const char *format, Py_ssize_t size, int writable,
                      const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, buf, flags) < 0) return -1;
    if (!buf->format || strcmp(buf->format, format) != 0 || buf->len != size * buf->itemsize) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous '%s' buffer of %zd elements", name, format, size);
        PyBuffer_Release(buf);
        return -1;
    }
    return 0;
}

static PyObject *ctc(PyObject *self, PyObject *args)
{
    PyObject *labels_obj, *logits_obj, *ll_obj, *tl_obj, *loss_obj, *grad_obj;
    long long blank;
    int threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOLOOi", &labels_obj, &logits_obj, &ll_obj, &tl_obj, &blank, &loss_obj,
                          &grad_obj, &threads))
        return NULL;
    Py_buffer xb;
    if (PyObject_GetBuffer(logits_obj, &xb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) return NULL;
    if (xb.ndim != 3 || !xb.format || (strcmp(xb.format, "f") != 0 && strcmp(xb.format, "d") != 0)) {
        PyErr_SetString(PyExc_TypeError, "logits must be a C-contiguous float32/float64 array (B, T, K)");
        PyBuffer_Release(&xb);
        return NULL;
    }
    ctc_job job;
    job.B = xb.shape[0], job.T = xb.shape[1], job.K = xb.shape[2];
    job.is_double = xb.format[0] == 'd';
    job.logits = xb.buf;
    job.blank = blank;
    Py_buffer lb, llb, tlb, ob, gb;
    Py_ssize_t labels_size;
    if (PyObject_GetBuffer(labels_obj, &lb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) goto fail_x;
    if (lb.ndim != 2 || lb.shape[0] != job.B || strcmp(lb.format, "l") != 0 || lb.itemsize != 8) {
        PyErr_SetString(PyExc_TypeError, "labels must be a C-contiguous int64 array (B, L)");
        goto fail_l;
    }
    job.L = lb.shape[1];
    labels_size = lb.shape[0] * lb.shape[1];
    (void)labels_size;
    if (get_buffer(ll_obj, &llb, "l", job.B, 0, "label_lengths") < 0) goto fail_l;
    if (get_buffer(tl_obj, &tlb, "l", job.B, 0, "logit_lengths") < 0) goto fail_ll;
    if (get_buffer(loss_obj, &ob, "d", job.B, 1, "loss") < 0) goto fail_tl;
    job.grad = NULL;
    if (grad_obj != Py_None) {
        if (get_buffer(grad_obj, &gb, xb.format, job.B * job.T * job.K, 1, "grad") < 0) goto fail_o;
        job.grad = gb.buf;
    }
    job.labels = lb.buf, job.label_lengths = llb.buf, job.logit_lengths = tlb.buf, job.loss = ob.buf;
    if (threads < 1) threads = 1;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    PL_PARALLEL_FOR(threads, job.B * job.T * (2 * job.L + 1), job.B, b)
    {
        if (ctc_sample(&job, b) < 0) failed = 1; /* a benign race: every writer stores 1 */
    }
    Py_END_ALLOW_THREADS
    if (grad_obj != Py_None) PyBuffer_Release(&gb);
    PyBuffer_Release(&ob), PyBuffer_Release(&tlb), PyBuffer_Release(&llb), PyBuffer_Release(&lb);
    PyBuffer_Release(&xb);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_o:
    PyBuffer_Release(&ob);
fail_tl:
    PyBuffer_Release(&tlb);
fail_ll:
    PyBuffer_Release(&llb);
fail_l:
    PyBuffer_Release(&lb);
fail_x:
    PyBuffer_Release(&xb);
    return NULL;
}

static PyObject *openmp(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyBool_FromLong(pl_openmp_available());
}

static PyMethodDef methods[] = {
    {"ctc", ctc, METH_VARARGS,
     "ctc(labels, logits, label_lengths, logit_lengths, blank, loss_out, grad_out_or_None, threads) -> None"},
    {"openmp", openmp, METH_NOARGS, "Whether the module was compiled with OpenMP."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ctc", "Compiled CTC loss (log-space forward-backward).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ctc(void) { return PyModule_Create(&module); }
