/* probloss._native._ctc: the CTC loss and its gradient, forward-backward.
 *
 * Two implementations per sample: a scaled linear-space one (ctc_sample_linear, fast:
 * no log or exp per state) that gives up on samples where it cannot keep the accuracy,
 * and the log-space one (ctc_sample) that then runs instead and is described here.
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

/* ------------------------------------------------------------------------------------------
 * Fast path: the same forward-backward in scaled linear space (Rabiner's scaling).
 *
 * Per frame the emission probabilities of the extended label's states are read from
 * exp(x - max) / (1 + S') (no log or exp per state), alpha and beta are restricted to the
 * states that can still complete ([lo, hi], exact: the others never reach the end) and
 * renormalized to sum 1, the scales kept as a float64 sum of logs. The occupancy of a
 * frame is alpha·beta divided by its sum over the states (the same for every frame in
 * exact arithmetic), so no scale is needed for the gradient.
 *
 * Linear space keeps ~1e-16 of each frame's total, not of every state: the function gives
 * up (returns 1, nothing kept) and the caller runs the log-space kernel for the sample
 * when a state that can still complete falls below TINY of its frame's total (it could
 * be lost to underflow and matter later), when a frame's total is not a normal number,
 * when no alignment exists or the frames are 0, and when the loss is below
 * TINY_LOSS_PER_STEP x frames x states (a sum of frames' logs with absolute error ~1e-16
 * each cannot give a tiny loss to 4 float32 ulps; log1p in log space can).
 * Returns 0 done, 1 fall back, -1 out of memory.
 */
#define CTC_TINY 1e-280
#define CTC_TINY_LOSS_PER_STEP 4e-8

/* Sums and minima in four interleaved lanes (a fixed order, so the same result for every
 * build and thread count; the compiler turns the lanes into one vector register). */
static inline double sum_lanes(const double *v, long long n)
{
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    long long i = 0;
    for (; i + 4 <= n; i += 4) a0 += v[i], a1 += v[i + 1], a2 += v[i + 2], a3 += v[i + 3];
    for (; i < n; i++) a0 += v[i];
    return (a0 + a1) + (a2 + a3);
}

/* v[i] *= scale; returns the smallest result (NaN-free input: the callers checked the sum). */
static inline double scale_min_lanes(double *v, long long n, double scale)
{
    double a0 = 1.0, a1 = 1.0, a2 = 1.0, a3 = 1.0;
    long long i = 0;
    for (; i + 4 <= n; i += 4) {
        double w0 = v[i] * scale, w1 = v[i + 1] * scale, w2 = v[i + 2] * scale, w3 = v[i + 3] * scale;
        v[i] = w0, v[i + 1] = w1, v[i + 2] = w2, v[i + 3] = w3;
        a0 = w0 < a0 ? w0 : a0, a1 = w1 < a1 ? w1 : a1, a2 = w2 < a2 ? w2 : a2, a3 = w3 < a3 ? w3 : a3;
    }
    for (; i < n; i++) {
        double w = v[i] * scale;
        v[i] = w;
        a0 = w < a0 ? w : a0;
    }
    a0 = a1 < a0 ? a1 : a0, a2 = a3 < a2 ? a3 : a2;
    return a2 < a0 ? a2 : a0;
}

/* The largest of n >= 1 values and the index of its first occurrence. */
static inline long long argmax_double(const double *x, long long n, double *top)
{
    double a0 = x[0], a1 = x[0], a2 = x[0], a3 = x[0];
    long long i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 = x[i] > a0 ? x[i] : a0, a1 = x[i + 1] > a1 ? x[i + 1] : a1;
        a2 = x[i + 2] > a2 ? x[i + 2] : a2, a3 = x[i + 3] > a3 ? x[i + 3] : a3;
    }
    for (; i < n; i++) a0 = x[i] > a0 ? x[i] : a0;
    a0 = a1 > a0 ? a1 : a0, a2 = a3 > a2 ? a3 : a2;
    double m = a2 > a0 ? a2 : a0;
    long long k = 0;
    while (k < n - 1 && !(x[k] == m)) k++;
    *top = m;
    return k;
}

static inline long long argmax_float(const float *x, long long n, double *top)
{
    float a0 = x[0], a1 = x[0], a2 = x[0], a3 = x[0];
    long long i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 = x[i] > a0 ? x[i] : a0, a1 = x[i + 1] > a1 ? x[i + 1] : a1;
        a2 = x[i + 2] > a2 ? x[i + 2] : a2, a3 = x[i + 3] > a3 ? x[i + 3] : a3;
    }
    for (; i < n; i++) a0 = x[i] > a0 ? x[i] : a0;
    a0 = a1 > a0 ? a1 : a0, a2 = a3 > a2 ? a3 : a2;
    float m = a2 > a0 ? a2 : a0;
    long long k = 0;
    while (k < n - 1 && !(x[k] == m)) k++;
    *top = m;
    return k;
}

/* exp(x) for x <= 0 in a form the compiler vectorizes (no call, no branch): x = k ln2 + r
 * with |r| <= ln2/2 (ln2 in two parts), e^r by its Taylor polynomial to r^13 (truncation
 * below 1e-17), times 2^k built in the exponent bits. Within 2 ulps of exp. Below -708
 * (a subnormal result) it gives 0, NaN stays NaN, -inf gives 0. */
static inline double exp_nonpositive(double x)
{
    const double shift = 0x1.8p52; /* adding it rounds x/ln2 to an integer kept in the low bits */
    const int tiny = x < -708.0;
    x = tiny ? -708.0 : x;
    const double u = x * 0x1.71547652b82fep0 + shift;
    const double k = u - shift;
    double r = x - k * 0x1.62e42fefa39efp-1;
    r = r - k * 0x1.abc9e3b39803fp-56;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits;
    memcpy(&bits, &u, sizeof bits);
    bits = (bits + 1023) << 52; /* the low bits of u hold 2^51 + k: 2^k's exponent field */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return tiny ? 0.0 : p * scale;
}

PL_CLONES static int ctc_sample_linear(const ctc_job *j, long long b)
{
    const long long T = j->T, K = j->K, L = j->L;
    long long n = j->label_lengths[b], Tb = j->logit_lengths[b];
    if (n < 0) n = 0;
    if (n > L) n = L;
    if (Tb > T) Tb = T;
    const long long S = 2 * n + 1;
    if (Tb <= 0 || S > 2 * Tb + 1) return 1; /* no frame, or no alignment */
    const long long base = b * T * K;
    const int64_t *lab = j->labels + b * L;
    const int want_grad = j->grad != NULL;
    const size_t P = (size_t)S + 2; /* every state row has 2 leading zeros: s - 1 and s - 2 always exist */
    const long long blank = j->blank;

    long long *z = malloc((size_t)S * sizeof(long long));
    double *skipm = malloc((P + 2) * sizeof(double)); /* at s + 2: 1.0 where state s may come from s - 2 */
    double *m = malloc(2 * (size_t)Tb * sizeof(double)); /* per frame: 1 / (1 + S'), S' */
    double *emit = malloc((size_t)Tb * P * sizeof(double)); /* emission probability, padded */
    double *alpha = malloc((size_t)(want_grad ? Tb + 1 : 2) * P * sizeof(double));
    double *ex = malloc((size_t)(want_grad ? Tb : 1) * (size_t)K * sizeof(double));
    double *work = malloc(3 * P * sizeof(double));
    long long *span = malloc(((size_t)S + 2 * (size_t)Tb) * sizeof(long long));
    double *occ = want_grad ? calloc((size_t)K, sizeof(double)) : NULL;
    int give_up = 0;
    if (!z || !skipm || !m || !emit || !alpha || !ex || !work || !span || (want_grad && !occ)) {
        give_up = -1;
        goto done;
    }
    skipm[0] = skipm[1] = skipm[S + 2] = skipm[S + 3] = 0.0;
    for (long long s = 0; s < S; s++) {
        z[s] = (s % 2) ? lab[s / 2] : blank;
        if (z[s] < 0 || z[s] >= K) give_up = 1; /* the log-space kernel reports it */
        skipm[s + 2] = ((s % 2) && s >= 2 && z[s] != z[s - 2]) ? 1.0 : 0.0;
    }
    if (give_up) goto done;
    /* span[2t], span[2t+1]: the states [lo, hi] that can be occupied at frame t and still
     * complete. A state s is first reachable at frame first[s] (first[0] = first[1] = 0,
     * then one frame after the state it comes from soonest) and can still complete up to
     * frame last[s] (mirror image); both are nondecreasing in s, so each frame's states
     * form one interval, and every state in it has a nonzero alpha and beta (positive
     * emissions), while every state outside has a zero alpha or beta. */
    {
        long long *first = span + 2 * Tb; /* S slots: first frames, then reused for last frames */
        for (long long s = 0; s < S; s++)
            first[s] = s < 2 ? 0 : (skipm[s + 2] != 0.0 ? first[s - 2] : first[s - 1]) + 1;
        if (first[S >= 2 ? S - 2 : 0] > Tb - 1) { /* no alignment: the log kernel gives +inf */
            give_up = 1;
            goto done;
        }
        for (long long t = 0, s = 0; t < Tb; t++) {
            while (s + 1 < S && first[s + 1] <= t) s++;
            span[2 * t + 1] = s;
        }
        long long *last = first;
        for (long long s = S - 1; s >= 0; s--) {
            if (s >= S - 2)
                last[s] = Tb - 1;
            else {
                long long g = last[s + 1];
                if (skipm[s + 4] != 0.0 && last[s + 2] > g) g = last[s + 2];
                last[s] = g - 1;
            }
        }
        for (long long t = Tb - 1, s = S - 1; t >= 0; t--) {
            while (s - 1 >= 0 && last[s - 1] >= t) s--;
            span[2 * t] = s;
        }
        for (long long t = 0; t < Tb; t++)
            if (span[2 * t] > span[2 * t + 1]) {
                give_up = 1;
                goto done;
            }
    }
    /* softmax parts: exp(x - max) of every class, S' (every class but the first maximal
     * one, as in the log kernel), and the emission probability of each state */
    for (long long t = 0; t < Tb; t++) {
        const long long row = base + t * K;
        double *exr = ex + (want_grad ? t : 0) * K;
        double mx;
        long long best;
        if (j->is_double) {
            const double *x = (const double *)j->logits + row;
            best = argmax_double(x, K, &mx);
            for (long long k = 0; k < K; k++) exr[k] = exp_nonpositive(x[k] - mx);
        } else {
            const float *x = (const float *)j->logits + row;
            best = argmax_float(x, K, &mx);
            for (long long k = 0; k < K; k++) exr[k] = exp_nonpositive((double)x[k] - mx);
        }
        exr[best] = 0.0;
        const double rest = sum_lanes(exr, K);
        exr[best] = 1.0;
        const double mt = 1.0 / (1.0 + rest);
        m[2 * t] = mt, m[2 * t + 1] = rest;
        double *e = emit + (size_t)t * P;
        e[0] = e[1] = 0.0;
        for (long long s = 0; s < S; s++) e[s + 2] = exr[z[s]] * mt;
    }
    /* forward */
    double log_scale = 0.0;
    double *prev = alpha, *cur = alpha;
    for (size_t s = 0; s < P; s++) prev[s] = 0.0;
    prev[2] = 1.0; /* "before frame 0": state 0 of a virtual frame, whose successors are states 0 and 1 */
    for (long long t = 0; t < Tb; t++) {
        cur = alpha + (want_grad ? (size_t)(t + 1) : (size_t)((t + 1) % 2)) * P;
        const double *e = emit + (size_t)t * P;
        const long long lo = span[2 * t] + 2, hi = span[2 * t + 1] + 2; /* padded */
        for (long long s = 0; s < lo; s++) cur[s] = 0.0;
        for (long long s = lo; s <= hi; s++) cur[s] = (prev[s] + prev[s - 1] + skipm[s] * prev[s - 2]) * e[s];
        for (long long s = hi + 1; s < S + 2; s++) cur[s] = 0.0;
        const double c = sum_lanes(cur + lo, hi - lo + 1);
        if (!(c >= CTC_TINY && c <= 1e280) || scale_min_lanes(cur + lo, hi - lo + 1, 1.0 / c) < CTC_TINY) {
            give_up = 1;
            goto done;
        }
        log_scale += log(c);
        prev = cur;
    }
    /* -loss = log_scale + log(alpha[S-1] + alpha[S-2]) */
    const double ll = log_scale + log(cur[S + 1] + (S >= 2 ? cur[S] : 0.0));
    if (!(ll <= 0.0) || -ll < CTC_TINY_LOSS_PER_STEP * (double)Tb * (double)S) {
        give_up = 1;
        goto done;
    }
    if (want_grad) {
        /* beta (emission at t excluded) and the occupancy, unpadded state order with 2
         * trailing zero slots: s + 1 and s + 2 always exist */
        double *beta = work, *next = work + P, *occ_s = work + 2 * P;
        for (size_t s = 0; s < P; s++) beta[s] = occ_s[s] = 0.0;
        beta[S - 1] = 1.0;
        if (S >= 2) beta[S - 2] = 1.0;
        for (long long t = Tb - 1; t >= 0; t--) {
            const double *a = alpha + (size_t)(t + 1) * P + 2;
            const long long lo = span[2 * t], hi = span[2 * t + 1], width = hi - lo + 1;
            for (long long s = lo; s <= hi; s++) occ_s[s] = a[s] * beta[s];
            const double zsum = sum_lanes(occ_s + lo, width);
            if (!(zsum >= CTC_TINY && zsum <= 1e280)) {
                give_up = 1;
                goto done;
            }
            const double inv = 1.0 / zsum;
            for (long long s = lo; s <= hi; s++) occ_s[s] *= inv;
            /* per class: the blank's from the even states (one sum), the labels' by scatter */
            double occ_blank = 0.0;
            for (long long s = lo + (lo & 1); s <= hi; s += 2) occ_blank += occ_s[s];
            occ[blank] = occ_blank;
            for (long long s = lo | 1; s <= hi; s += 2) occ[z[s]] += occ_s[s];
            /* a class holding over half the frame's occupancy, if any: the blank, or the
             * label of the most occupied label state (both near 1 there: its gradient is
             * formed from the complements below) */
            long long dom = blank;
            if (occ_blank < 0.5) {
                double top = -1.0;
                for (long long s = lo | 1; s <= hi; s += 2) top = occ_s[s] > top ? occ_s[s] : top;
                long long s = lo | 1;
                while (s < hi && occ_s[s] != top) s += 2;
                if (s <= hi) dom = z[s];
            }
            /* the gradient: softmax - occupancy; for the dominant class (both near 1 there)
             * as the other classes' occupancy minus their probability */
            double r0 = 0.0, r1 = 0.0, r2 = 0.0, r3 = 0.0;
            long long s4 = lo;
            for (; s4 + 4 <= hi + 1; s4 += 4) {
                r0 += z[s4] != dom ? occ_s[s4] : 0.0, r1 += z[s4 + 1] != dom ? occ_s[s4 + 1] : 0.0;
                r2 += z[s4 + 2] != dom ? occ_s[s4 + 2] : 0.0, r3 += z[s4 + 3] != dom ? occ_s[s4 + 3] : 0.0;
            }
            for (; s4 <= hi; s4++) r0 += z[s4] != dom ? occ_s[s4] : 0.0;
            const double occ_rest = (r0 + r1) + (r2 + r3);
            const double *exr = ex + t * K;
            const double scale = m[2 * t], rest = m[2 * t + 1];
            /* the other classes' probability: S' (from the maximal class) when it dominates,
             * else 1 + S' - exp(x_dom - max), at most half of it */
            const double prob_rest = scale * (exr[dom] == 1.0 ? rest : (rest + 1.0) - exr[dom]);
            const long long row = base + t * K;
            if (j->is_double) {
                double *g = (double *)j->grad + row;
                for (long long k = 0; k < K; k++) g[k] = exr[k] * scale - occ[k];
                g[dom] = occ_rest - prob_rest;
            } else {
                float *g = (float *)j->grad + row;
                for (long long k = 0; k < K; k++) g[k] = (float)(exr[k] * scale - occ[k]);
                g[dom] = (float)(occ_rest - prob_rest);
            }
            occ[blank] = 0.0;
            for (long long s = lo | 1; s <= hi; s += 2) occ[z[s]] = 0.0;
            for (long long s = lo; s <= hi; s++) occ_s[s] = 0.0;
            if (t == 0) break;
            /* beta_{t-1}[s]: beta_t times emission_t over the successors s, s + 1, s + 2 */
            const double *e = emit + (size_t)t * P + 2;
            const long long lo1 = span[2 * t - 2], hi1 = span[2 * t - 1], width1 = hi1 - lo1 + 1;
            for (long long s = lo; s <= hi; s++) occ_s[s] = beta[s] * e[s]; /* occ_s as scratch */
            for (long long s = lo1; s <= hi1; s++) next[s] = occ_s[s] + occ_s[s + 1] + skipm[s + 4] * occ_s[s + 2];
            for (long long s = lo; s <= hi; s++) occ_s[s] = 0.0;
            const double d = sum_lanes(next + lo1, width1);
            if (!(d >= CTC_TINY && d <= 1e280) || scale_min_lanes(next + lo1, width1, 1.0 / d) < CTC_TINY) {
                give_up = 1;
                goto done;
            }
            for (long long s = lo; s <= hi; s++) beta[s] = 0.0;
            for (long long s = lo1; s <= hi1; s++) beta[s] = next[s];
        }
        /* frames past Tb get 0 */
        if (j->is_double)
            memset((double *)j->grad + base + Tb * K, 0, (size_t)((T - Tb) * K) * sizeof(double));
        else
            memset((float *)j->grad + base + Tb * K, 0, (size_t)((T - Tb) * K) * sizeof(float));
    }
    j->loss[b] = -ll;
done:
    free(z), free(skipm), free(m), free(emit), free(alpha), free(ex), free(work), free(span), free(occ);
    return give_up;
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
        int r = ctc_sample_linear(&job, b);
        if (r == 1) r = ctc_sample(&job, b);
        if (r < 0) failed = 1; /* a benign race: every writer stores 1 */
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
