/* binary_impl.h: the block functions of the binary family (see binary.c).
 *
 * binary.c includes this file twice: once with PL_BLOCK_ATTR = PL_CLONES (the
 * x86-64-v4 / x86-64-v3 / baseline clones chosen at load time) and PL_NAME(fn)
 * = fn##_auto, and once with no attribute and PL_NAME(fn) = fn##_base (the
 * baseline build, which PROBLOSS_NATIVE_BASELINE=1 forces, so that tests run
 * it on AVX2 machines too). The helpers in the first part are compiled once and
 * inlined into both.
 *
 * "Ordinary" blocks. Each kernel first takes the bounds of its block (it
 * reports them anyway, for the data checks) and, where every input of the block
 * is in the range where no special case can occur (no NaN, no infinity, no
 * logarithm of 0 or of a negative number, no subnormal result), runs a loop
 * without the blends that handle those cases; every other block runs the
 * general loop. The two loops agree to the last bit for BCE from probabilities
 * and Poisson (same formulas; Poisson's logarithm is log_reduced_2s in both), and
 * to an ulp or two of float64 elsewhere: the focal losses' ordinary loops take
 * log_reduced7 (and, from logits, log1p's correction c/u as c times the 1/u
 * computed anyway) where the general loop calls pl_log/pl_log1p, and KL's
 * ordinary loop forms t·log(t/p) with one division and log_reduced_2s
 * (kl_term_ordinary). Every float32 result keeps its accuracy
 * (tests/test_accuracy.py); tests/test_native_binary_paths.py runs both loops
 * and both builds against float64 formulas.
 */

#ifndef PL_BINARY_HELPERS
#define PL_BINARY_HELPERS

typedef struct {
    double p[6];
    double scale; /* 1/divisor: d out[r] / d term, the gradient's scale */
} params_t;

/* The bounds of one block's y and x: taken first, so that the block can choose
 * its loop; merged into the task's bounds by the caller. */
PL_INLINE pl_bounds block_bounds(const float *restrict y, const float *restrict x, Py_ssize_t n)
{
    pl_bounds local = pl_bounds_empty;
    pl_bounds_update(y, x, n, &local);
    return local;
}

/* Whether every value of a block with these order keys lies in [lo, hi]
 * (false for a NaN: its key lies beyond +-inf). */
PL_INLINE int keys_within(int32_t kmin, int32_t kmax, float lo, float hi)
{
    return kmin >= pl_order_f(lo) && kmax <= pl_order_f(hi);
}

/* The derivative of clip(x, lo, hi) = minimum(maximum(x, lo), hi) as the generic
 * kernel's autograd takes it: 1 inside, 1/2 at a bound (a tie of maximum or
 * minimum splits the gradient), 0 outside; NaN for NaN. */
PL_INLINE double clip_slope(float x, float lo, float hi)
{
    double inside = x > lo && x < hi ? 1.0 : (x == lo || x == hi ? 0.5 : 0.0);
    return x != x ? (double)x : inside;
}

/* e^-a for a in [0, 700]: pl_exp's method without its clamps and NaN test, with
 * one scaling by 2^k (k in [-1010, 0]: a normal double, and so is the result),
 * and with the Taylor polynomial of degree 13 evaluated as 1 + r(1 + r(1/2 +
 * r·q(r))), q (degree 10) by Estrin's scheme: 8 dependent floating-point steps
 * instead of Horner's 14, so that the out-of-order core overlaps elements
 * instead of waiting on one chain. Max error 0.88 ulp measured (2e7 random
 * points against expl; Horner 0.87): the low-order steps, which carry the
 * rounding that matters, stay in Horner's order. */
PL_INLINE double exp_neg_ordinary(double a)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double xc = -a;
    double kf = (xc * 1.4426950408889634 + magic) - magic;
    double r = xc - kf * 6.93147180369123816490e-01;
    r = r - kf * 1.90821492927058770002e-10;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double a3 = 1.0 / 6.0 + r * (1.0 / 24.0), a5 = 1.0 / 120.0 + r * (1.0 / 720.0);
    double a7 = 1.0 / 5040.0 + r * (1.0 / 40320.0), a9 = 1.0 / 362880.0 + r * (1.0 / 3628800.0);
    double a11 = 1.0 / 39916800.0 + r * (1.0 / 479001600.0);
    double b3 = a3 + r2 * a5, b7 = a7 + r2 * a9, b11 = a11 + r2 * (1.0 / 6227020800.0);
    double q = (b3 + r4 * b7) + r8 * b11;
    double p = 1.0 + r * (1.0 + r * (0.5 + r * q));
    return p * pl_pow2_d(kf);
}

/* pl_log_reduced with a shorter polynomial: log f for f = 1 + t in
 * [sqrt(2)/2, sqrt(2)), plus `extra` and k·ln2, in the same fdlibm order of
 * summation. R(z)/z, z = s^2 <= (3 - 2 sqrt(2))^2, is a degree-6 minimax fit
 * (relative error, Remez exchange at 50 digits in mpmath) of (2 atanh(s)/s - 2)/z:
 * relative error 4.7e-16 (2^-50.9) with the coefficients rounded to double.
 * That error enters the result as s·R·err <= (s^2/3)·err relative to log f
 * ~ 2s: below 2^-57.6, 0.03 ulp, against the 11-term Taylor series of
 * pl_log_reduced (4 fused multiply-adds fewer; fewer registers spilled in
 * the two-vector unrolled loops). */
PL_INLINE double log_reduced7(double f, double kf, double extra)
{
    double t = f - 1.0;
    double s = t / (2.0 + t);
    double z = s * s;
    /* Estrin's scheme (3 dependent steps, not 7); z <= 0.03, so the sum is that of
     * c0 + c1·z to within 2^-60 whatever the order of the small terms */
    double z2 = z * z, z4 = z2 * z2;
    double g = (0.666666666666667 + z * 0.3999999999989918) + z2 * (0.28571428626106177 + z * 0.22222211115826268)
               + z4 * ((0.18182890369327984 + z * 0.1533168400243779) + z2 * 0.14616875727366235);
    double R = g * z;
    double hfsq = 0.5 * t * t;
    return kf * 6.93147180369123816490e-01
           - ((hfsq - (s * (hfsq + R) + (kf * 1.90821492927058770002e-10 + extra))) - t);
}

/* log f + k·ln2 for f = 1 + t in [sqrt(2)/2, sqrt(2)) (k an integer-valued double),
 * the short way: 2·atanh(s) = 2s + s·z·g(z), s = t/(2+t), z = s^2, with the
 * minimax g of log_reduced7 (relative error 2^-50.9; its roundings here add
 * below 2^-52 of g). For Poisson and KL, whose
 * results are float32: about 3 operations fewer than log_reduced7's fdlibm form
 * (t - (hfsq - s·(hfsq + R))), which is there to keep the rounding error of s out
 * of the leading term. Here it is not: s = RN(t / RN(2 + t)) (t exact, Sterbenz)
 * carries <= 2 roundings, 2s is exact, the correction s·z·g is at most
 * z·g/2 <= 0.0099 of 2s (so g's error and the 3 roundings inside it add below
 * 2^-58), and the final additions round once each: relative error below 2^-51
 * (2 ulps of double; 1.98 measured over 6e6 points against logl, 1 ± 1e-16 and
 * both ends of [sqrt(2)/2, sqrt(2)) included, with and without FMA contraction),
 * and for k != 0, |k·ln2| >= 2·|log f| keeps it so. k·ln2 with ln2 as one double
 * (its error 2.3e-17, times |k|, is below 2^-53 of |k·ln2|; the product rounds
 * once, or not at all inside a fused multiply-add): not fdlibm's two parts (k·ln2_hi
 * exact, k·ln2_lo added last), whose extra product and addition cost 7-9% of
 * Poisson's loop for no measurable gain (max 1.99 ulps either way over 6e6 points
 * from 2^-20 to e^100, AVX-512 and baseline builds). Poisson and KL terms then carry about 2^-50
 * relative error, 2^-26 of float32's resolution: far inside the cancellation bound
 * 4·2^-24·(sum of the terms' magnitudes) of docs/accuracy.md (tests/test_accuracy.py
 * against mpmath; tests/test_native_binary_paths.py's cancelling rows hold Poisson
 * rows that cancel to 2^-41 of their terms within 2^-48 of those terms). */
PL_INLINE double log_reduced_2s(double f, double kf)
{
    double t = f - 1.0;
    double s = t / (2.0 + t);
    double z = s * s;
    /* Horner's scheme, not log_reduced7's Estrin: these loops are bound by the
     * number of operations (every element independent, the out-of-order core
     * overlaps their chains), and Horner has two fewer (no z^2, z^4): a bare
     * Poisson loop ran 0.84 -> 0.73 ms per 1M elements (AVX-512), the kernels
     * (with their bounds pass and sums) 2-4% faster. */
    double g = 0.666666666666667
               + z * (0.3999999999989918
                      + z * (0.28571428626106177
                             + z * (0.22222211115826268
                                    + z * (0.18182890369327984 + z * (0.1533168400243779 + z * 0.14616875727366235)))));
    return kf * 0.6931471805599453 + ((s * z) * g + 2.0 * s);
}

/* log(u) for a positive normal finite double u by log_reduced_2s (Poisson's ordinary loop). */
PL_INLINE double log_short(double u)
{
    double kf, f;
    PL_SPLIT(u, kf, f);
    return log_reduced_2s(f, kf);
}

/* log(u) for a positive normal finite double u: pl_log without its special
 * cases (the same value there). */
PL_INLINE double log_ordinary(double u)
{
    double kf, f;
    PL_SPLIT(u, kf, f);
    return log_reduced7(f, kf, 0.0);
}

/* log1p(v) from u = 1 + v (rounded, a positive normal finite double, 1 + v
 * computed by the caller) and inv ~ 1/u to a relative 2^-52: pl_log1p's
 * method, its c/u correction (|c/u| <= 2^-53) taken as c·inv. Requires
 * v <= 1 (pl_log1p's Fast2Sum branch for v <= 1). */
PL_INLINE double log1p_ordinary(double v, double u, double inv)
{
    double c = v - (u - 1.0);
    double kf, f;
    PL_SPLIT(u, kf, f);
    return log_reduced7(f, kf, c * inv);
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

/* The pieces of the focal losses from logits, for one element: bce =
 * log1p(e) + y·relu(-x) + (1-y)·relu(x), e = exp(-|x|), and the two sigmoids
 * formed from e without 1 - (1 - tiny). `ordinary` (a constant in each
 * specialised copy): |x| <= 700, so e is a normal double in (0, 1]. */
typedef struct {
    double bce, sig_pos, sig_neg;
} focal_logit_parts;

PL_INLINE focal_logit_parts focal_logit_pieces(double xi, double yi, const int ordinary)
{
    focal_logit_parts out;
    double a = fabs(xi);
    double e = ordinary ? exp_neg_ordinary(a) : pl_exp(-a);
    double u = 1.0 + e;
    double near_one = 1.0 / u;
    double log1p_e = ordinary ? log1p_ordinary(e, u, near_one) : pl_log1p(e);
    double relu = xi > 0.0 ? xi : 0.0;
    double relu_neg = xi < 0.0 ? -xi : 0.0;
    out.bce = log1p_e + yi * relu_neg + (1.0 - yi) * relu;
    double near_zero = e * near_one;
    out.sig_pos = xi >= 0.0 ? near_one : near_zero;
    out.sig_neg = xi >= 0.0 ? near_zero : near_one;
    return out;
}

/* The generic kernel's float64 logits formula: 1 - p_t = y·sigmoid(-x) +
 * (1-y)·sigmoid(x). `mode` and `ordinary` are constants in each specialised
 * copy (see FOCAL_DISPATCH), so every copy vectorises. */
PL_INLINE void focal_logits_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                 Py_ssize_t n, double *restrict terms, const int mode, const int ordinary)
{
    const double gamma = P->p[0], alpha = P->p[2];
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double xi = (double)x[i], yi = (double)y[i];
        focal_logit_parts q = focal_logit_pieces(xi, yi, ordinary);
        double u = yi * q.sig_neg + (1.0 - yi) * q.sig_pos;
        double focal = focal_power(u, mode, gamma) * q.bce;
        terms[i] = balance ? (yi * alpha + (1.0 - yi) * (1.0 - alpha)) * focal : focal;
    }
}

/* d term / d x of focal_logits_loop: w·(pow'(u)·du/dx·bce + u^gamma·(sigmoid(x) - y)),
 * du/dx = (1 - 2y)·sigmoid(x)·sigmoid(-x); in float64, rounded once. */
PL_INLINE void focal_logits_grad_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                      Py_ssize_t n, double *restrict terms, float *restrict grad, const int mode,
                                      const int ordinary)
{
    const double gamma = P->p[0], alpha = P->p[2], scale = P->scale;
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double xi = (double)x[i], yi = (double)y[i];
        focal_logit_parts q = focal_logit_pieces(xi, yi, ordinary);
        double u = yi * q.sig_neg + (1.0 - yi) * q.sig_pos;
        /* sigmoid(x) - y = (1 - y)·sigmoid(x) - y·sigmoid(-x): no 1 - (1 - tiny) */
        double dbce = (1.0 - yi) * q.sig_pos - yi * q.sig_neg;
        double du = (1.0 - 2.0 * yi) * (q.sig_pos * q.sig_neg);
        double power = focal_power(u, mode, gamma);
        double g = focal_power_slope(u, mode, gamma) * du * q.bce + power * dbce;
        double weight = balance ? yi * alpha + (1.0 - yi) * (1.0 - alpha) : 1.0;
        terms[i] = balance ? weight * (power * q.bce) : power * q.bce; /* as focal_logits_loop */
        grad[i] = (float)(weight * g * scale);
    }
}

/* ---- The short loop of the focal loss from logits (focal_logits_short_loop).
 *
 * float64 arithmetic, but polynomials sized for the float32 result rather than
 * for float64's last bit, and one float64 division (1/(1 + e)): about 35
 * multiplications or fused multiply-adds per element where the ordinary loop
 * takes about 60 and two divisions. Used for blocks with every |x| <= 700, every label in [0, 1] and
 * gamma 0, 1 or 2 (the common case), and so for the terms
 * w·(1 - p_t)^gamma·bce of non-negative factors.
 *
 * Why it suffices: the loss's float32 value is the float64 mean of the terms
 * rounded once (0.5 ulp), and a relative error eta of every (non-negative) term
 * moves that mean by at most eta, i.e. eta / 2^-24 ulps. Relative errors of the
 * pieces (each also carries a few float64 roundings, ~2^-51, left out below):
 *   e = exp(-|x|)           exp_neg_short: 2^-29.0;
 *   near_one = 1/(1 + e)    recip_unit_short: correctly rounded, plus e's error times
 *                           e/(1 + e) <= 1/2;
 *   near_zero = e·near_one  e's error and near_one's: below 1.5·2^-29;
 *   log1p(e)                e·log1p_unit_q(e): 2^-30.3, plus e's error (the
 *                           derivative of log(log1p(e)) in log(e) is in (0, 1]);
 *   bce = log1p(e) + (relu(x) - y·x)   relu(x) - y·x is y·relu(-x) + (1-y)·relu(x)
 *                           >= 0, formed by one fused multiply-add (exact
 *                           product, one rounding; without FMA, in the baseline
 *                           build, y·x is rounded too: 2^-53·x, at most 2^-29 of
 *                           (1-y)·x since a float label below 1 has 1 - y >=
 *                           2^-24); a sum of non-negative numbers has at most
 *                           its parts' relative error: 2^-29.0 + 2^-30.3 < 2^-28.4;
 *   u = 1 - p_t = y·sigmoid(-x) + (1-y)·sigmoid(x)   non-negative parts: below
 *                           1.5·2^-29;
 *   w·u^2·bce               2·1.5·2^-29 + 2^-28.4 < 2^-27 (gamma 2; less for 0, 1).
 * So every term is within 2^-27 of its exact value, relative, and the float32
 * loss within 0.5 + 2^-3 ulp (docs/accuracy.md has the measured figure), far
 * inside the 4-ulp bound. (The ordinary loop's terms are within ~2^-52: its
 * float32 result is the correctly rounded one but for ties.) The labels must lie
 * in [0, 1] for the no-cancellation argument: other blocks take the ordinary
 * loop. A term below float64's range comes out 0, as in the ordinary loop (the
 * exact loss is then far below float32's smallest number).
 *
 * The gradient w·(u·(2·du·bce + u·dbce)) (gamma 2), du = (1 - 2y)·sigmoid(x)·
 * sigmoid(-x), dbce = (1-y)·sigmoid(x) - y·sigmoid(-x), is formed from the same
 * pieces in float64 and rounded once to float32: within ~2^-27 of the sum of the
 * magnitudes of its parts (with soft labels the two parts may cancel; with hard
 * ones they have one sign and the bound is relative). */

/* e^-a for a in [0, 700], relative error 1.86e-9 (2^-29.0): exp_neg_ordinary's
 * reduction, a degree-6 minimax polynomial of e^r on |r| <= 0.34667 (Remez
 * exchange on the relative error at 50 digits in mpmath; the bound is that of
 * the coefficients as rounded here), and the scaling by 2^k added to the
 * exponent field (k in [-1010, 0] and e^r in [0.70, 1.42]: the result is a
 * normal double). Horner's scheme: the loop is limited by multiplications, not
 * by latency (its elements are independent). */
PL_INLINE double exp_neg_short(double a)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double km = -a * 1.4426950408889634 + magic; /* round(-a/ln2) in the low bits */
    double kf = km - magic;
    /* r = -a - k·ln2 in one step, with ln2 rounded to double: k·(ln2 - RN(ln2)) is below
     * 1010·2^-54 < 2^-44 (and the fused product is exact, the result rounds once to
     * 2^-54 of |r| <= 0.35), so e^r is off by 2^-44 relative: nothing next to the
     * polynomial's 2^-29.0 (exp_neg_ordinary's two-part ln2 serves float64's last bit). */
    double r = -a - kf * 0.6931471805599453;
    double p = 0.0013836817223317841;
    p = p * r + 0.008374838756494259;
    p = p * r + 0.041668227298695154;
    p = p * r + 0.1666641989775645;
    p = p * r + 0.4999999206663843;
    p = p * r + 1.0000000363831354;
    p = p * r + 1.000000000555395;
    /* k is bits(km) - bits(magic), and bits(magic) << 52 wraps to 0: k << 52 = bits(km) << 52 */
    return pl_double_b(pl_bits_d(p) + (pl_bits_d(km) << 52));
}

/* log1p(e)/e for e in [0, 1], relative error 7.43e-10 (2^-30.3): a degree-10
 * minimax polynomial (Remez exchange on the relative error, 50 digits in mpmath,
 * the coefficients as rounded here); no range reduction, no division. */
PL_INLINE double log1p_unit_q(double e)
{
    double q = 0.002030241483197623;
    q = q * e + -0.01340753071333232;
    q = q * e + 0.041478228500612405;
    q = q * e + -0.08244175420151097;
    q = q * e + 0.12418436197233167;
    q = q * e + -0.16105691574748748;
    q = q * e + 0.19890747727347766;
    q = q * e + -0.24987270865725986;
    q = q * e + 0.33332559624412633;
    q = q * e + -0.49999981433590424;
    return q * e + 0.9999999992568245;
}

/* 1/u for u in [1, 2], correctly rounded: one float64 division. (It replaced a
 * float division refined by a Newton step, within 2^-45, which took two
 * conversions, the division and two more operations: with the gradient, the
 * kernel on 4096 x 256 ran 2.06 -> 1.84 ms with hard labels and 2.34 -> 2.09 ms
 * with soft ones, AVX-512 on AMD Zen 4, one thread; a stand-alone copy of the
 * hard-label loop built for AVX2 and for the baseline ran 14% and 12% faster too.) */
PL_INLINE double recip_unit_short(double u)
{
    return 1.0 / u;
}

/* The order keys' minimum and maximum of v[0..n) (pl_order_f). */
PL_INLINE void order_key_bounds(const float *restrict v, Py_ssize_t n, int32_t *lo, int32_t *hi)
{
    int32_t klo = INT32_MAX, khi = INT32_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t k = pl_order_f(v[i]);
        klo = k < klo ? k : klo;
        khi = k > khi ? k : khi;
    }
    *lo = klo, *hi = khi;
}

/* The block's bounds, taken inside the short loops (focal_logits_block runs them
 * before it knows whether the block qualifies; bce_logits_ordinary_terms too):
 * x's order keys, and y's bits as signed integers, which are its order keys
 * wherever the sign bit is clear (two vector operations fewer per 16 labels),
 * into the loop's running minima and maxima ylo, yhi, xlo, xhi;
 * short_loop_bounds then takes y's keys proper for a block holding a label
 * with the sign bit set (a negative label, -0 or a NaN: a block the short
 * loops do not serve). */
#define FOCAL_SHORT_BOUNDS(i)                                                    \
    do {                                                                         \
        int32_t ky_ = (int32_t)pl_bits_f(y[i]), kx_ = pl_order_f(x[i]);          \
        ylo = ky_ < ylo ? ky_ : ylo;                                             \
        yhi = ky_ > yhi ? ky_ : yhi;                                             \
        xlo = kx_ < xlo ? kx_ : xlo;                                             \
        xhi = kx_ > xhi ? kx_ : xhi;                                             \
    } while (0)

PL_INLINE void short_loop_bounds(const float *restrict y, Py_ssize_t n, int32_t ylo, int32_t yhi, int32_t xlo,
                                  int32_t xhi, pl_bounds *restrict local)
{
    if (ylo < 0) order_key_bounds(y, n, &ylo, &yhi); /* a sign bit set: the keys proper */
    local->ymin = ylo, local->ymax = yhi, local->xmin = xlo, local->xmax = xhi;
}

/* The terms (and, with_grad, the gradient) of the focal loss from logits with
 * the short pieces above. `mode` (0, 1, 2: gamma), `with_grad` and `balance`
 * (apply_class_balancing) are constants in each copy, so that every copy
 * vectorises, and one without class balancing spends no operation on the
 * weight (a runtime flag cost 8 of the ~86 vector operations per 16 elements:
 * the weight and the masked products). */
PL_INLINE void focal_logits_short_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                       Py_ssize_t n, double *restrict terms, float *restrict grad,
                                       pl_bounds *restrict local, int *restrict soft, const int mode,
                                       const int with_grad, const int balance)
{
    const double alpha = P->p[2], scale = P->scale;
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        FOCAL_SHORT_BOUNDS(i);
        double xi = (double)x[i], yi = (double)y[i];
        double e = exp_neg_short(fabs(xi));
        double near_one = recip_unit_short(1.0 + e), near_zero = e * near_one;
        double sig = xi >= 0.0 ? near_one : near_zero;     /* sigmoid(x) */
        double sig_neg = xi >= 0.0 ? near_zero : near_one; /* sigmoid(-x) */
        double relu = xi > 0.0 ? xi : 0.0;
        double bce = e * log1p_unit_q(e) + (relu - yi * xi);
        double part = (1.0 - yi) * sig;
        double u = yi * sig_neg + part;    /* 1 - p_t */
        double power = mode == 0 ? 1.0 : (mode == 1 ? u : u * u);
        double weight = balance ? yi * alpha + (1.0 - yi) * (1.0 - alpha) : 1.0;
        terms[i] = balance ? weight * (power * bce) : power * bce;
        if (with_grad) {
            double dbce = part - yi * sig_neg; /* sigmoid(x) - y, no 1 - (1 - tiny) */
            /* gamma·du·bce, du = (1 - 2y)·sigmoid(x)·sigmoid(-x) */
            double gdu_bce = ((double)mode - 2.0 * mode * yi) * (sig * sig_neg) * bce;
            double g = mode == 0 ? dbce : (mode == 1 ? gdu_bce + u * dbce : u * (gdu_bce + u * dbce));
            grad[i] = (float)(g * (balance ? weight * scale : scale));
        }
    }
    short_loop_bounds(y, n, ylo, yhi, xlo, xhi, local);
    *soft = 1;
}

/* focal_logits_short_loop for hard labels (every y in the block 0 or 1, the
 * common case): with s = 1 - 2y (+1 or -1) and z = s·x (exact; formed as x with
 * its sign bit flipped where y = 1, and the gradient's factor s likewise applied
 * to the rounded float, so that the label takes integer operations on 16 float
 * lanes rather than float64 ones on 8, and no conversion), 1 - p_t =
 * sigmoid(z) = u and p_t = sigmoid(-z) = v are the two sigmoids formed from e
 * (near_one, near_zero; no 1 - (1 - tiny)), bce = log1p(e) + relu(z), and
 * d term / d x = s·u^gamma·(gamma·v·bce + u): about 10 vector operations fewer
 * than the soft-label formulas (measured 2.28 -> 2.00 ms with the gradient on
 * 4096 x 256 hard labels, AVX-512, one thread). The same pieces as the short
 * loop, each with the error bound given above, and every part non-negative: the
 * terms within 2^-27 (the short loop's bound), and the gradient is now within
 * ~2^-26.5 relative (u^2, the sum gamma·v·bce + u of non-negative parts, their
 * product) before its one rounding to float32. */
PL_INLINE void focal_logits_hard_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                      Py_ssize_t n, double *restrict terms, float *restrict grad,
                                      pl_bounds *restrict local, int *restrict soft, const int mode,
                                      const int with_grad, const int balance)
{
    const double alpha = P->p[2], scale = P->scale;
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    /* the largest y - y^2: 0 where every label is 0 or 1, positive where one in [0, 1]
     * is not (also with y^2 rounded, in the baseline build: RN(y^2) < y for y in
     * (0, 1)); two operations per 16 labels where two comparisons took four. A label
     * outside [0, 1] or NaN may go unnoticed here: its block fails the bounds test. */
    int32_t softest = 0; /* as the bits of a float: integers order non-negative floats, and vectorise */
    for (Py_ssize_t i = 0; i < n; i++) {
        FOCAL_SHORT_BOUNDS(i);
        const int32_t d = (int32_t)pl_bits_f(y[i] - y[i] * y[i]);
        softest = d > softest ? d : softest;
        /* s's sign bit: set for y = 1 (bits 0x3f800000, shifted left by 2), clear for 0 (and -0) */
        const uint32_t flip = (pl_bits_f(y[i]) << 2) & 0x80000000u;
        /* z = s·x enters as its sign (a float comparison on 16 lanes) and |z| = |x|
         * (taken in float, exactly), so that z itself is never widened */
        const int positive = pl_float_b(pl_bits_f(x[i]) ^ flip) >= 0.0f;
        double a = (double)fabsf(x[i]);
        double e = exp_neg_short(a);
        double near_one = recip_unit_short(1.0 + e), near_zero = e * near_one;
        double u = positive ? near_one : near_zero; /* 1 - p_t = sigmoid(z) */
        double v = positive ? near_zero : near_one; /* p_t = sigmoid(-z) */
        double relu = positive ? a : 0.0;           /* relu(z); z = -0 gives +0: the same bce */
        double bce = e * log1p_unit_q(e) + relu;
        double power = mode == 0 ? 1.0 : (mode == 1 ? u : u * u);
        double weight = balance ? (flip ? alpha : 1.0 - alpha) : 1.0;
        terms[i] = balance ? weight * (power * bce) : power * bce;
        if (with_grad) {
            double inner = mode == 0 ? u : ((double)mode * v) * bce + u;
            /* the factor s last, as a sign flip of the rounded float: exact, and the same
             * number as the product with s·scale (rounding is symmetric) */
            float g = (float)((power * inner) * (balance ? weight * scale : scale));
            grad[i] = pl_float_b(pl_bits_f(g) ^ flip);
        }
    }
    short_loop_bounds(y, n, ylo, yhi, xlo, xhi, local);
    *soft = softest > 0;
}

/* Whether every label of a block is 0 or 1 (its caller knows them to lie in [0, 1]:
 * -0.0 too compares equal to 0, and takes the hard loop's y = 0 branch). */
PL_INLINE int labels_hard(const float *restrict y, Py_ssize_t n)
{
    int soft = 0;
    for (Py_ssize_t i = 0; i < n; i++) soft |= (y[i] != 0.0f) & (y[i] != 1.0f);
    return !soft;
}

/* -(y·log(pc) + (1-y)·log1p(-pc)) of the clipped probability pc. `ordinary`:
 * pc in [lo, hi] with 0 < lo and hi < 1, so both logarithms are of positive
 * normal numbers. */
PL_INLINE double focal_probs_bce(double pc, double yi, const int ordinary)
{
    double log_p, log_q;
    if (ordinary) { /* pl_log(pc) and pl_log1p(-pc) without their special cases: the same values */
        double u = 1.0 - pc, c = -pc - (u - 1.0), kf, f;
        log_p = log_ordinary(pc);
        PL_SPLIT(u, kf, f);
        log_q = log_reduced7(f, kf, c / u);
    } else {
        log_p = pl_log(pc);
        log_q = pl_log1p(-pc);
    }
    return -(yi * log_p + (1.0 - yi) * log_q);
}

/* p clipped to [lo, hi] (float32 bounds) for the logs, unclipped for
 * 1 - p_t = y(1-p) + (1-y)p: the generic kernel's float64 probability formula. */
PL_INLINE void focal_probs_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                Py_ssize_t n, double *restrict terms, const int mode, const int ordinary)
{
    const double gamma = P->p[0], alpha = P->p[2], lo = P->p[4], hi = P->p[5];
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = (double)x[i], yi = (double)y[i];
        double pc = p < lo ? lo : p;
        pc = pc > hi ? hi : pc;
        double bce = focal_probs_bce(pc, yi, ordinary);
        double u = yi * (1.0 - p) + (1.0 - yi) * p;
        double focal = focal_power(u, mode, gamma) * bce;
        terms[i] = balance ? (yi * alpha + (1.0 - yi) * (1.0 - alpha)) * focal : focal;
    }
}

/* d term / d x of focal_probs_loop: the logs see p clipped (gradient inside [lo, hi]
 * only), 1 - p_t = y(1-p) + (1-y)p sees p unclipped. */
PL_INLINE void focal_probs_grad_loop(const params_t *P, const float *restrict y, const float *restrict x,
                                     Py_ssize_t n, double *restrict terms, float *restrict grad, const int mode,
                                     const int ordinary)
{
    const double gamma = P->p[0], alpha = P->p[2], lo = P->p[4], hi = P->p[5], scale = P->scale;
    const int balance = P->p[3] != 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = (double)x[i], yi = (double)y[i];
        double pc = p < lo ? lo : p;
        pc = pc > hi ? hi : pc;
        double bce = focal_probs_bce(pc, yi, ordinary);
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

/* One specialised copy per (gamma mode, ordinary) pair: every branch on them folds. */
#define FOCAL_DISPATCH(loop, ordinary)                                  \
    do {                                                                \
        switch ((int)P->p[1] + 4 * ((ordinary) != 0)) {                 \
        case 0: loop(P, y, x, n, terms, 0, 0); break;                   \
        case 1: loop(P, y, x, n, terms, 1, 0); break;                   \
        case 2: loop(P, y, x, n, terms, 2, 0); break;                   \
        case 4: loop(P, y, x, n, terms, 0, 1); break;                   \
        case 5: loop(P, y, x, n, terms, 1, 1); break;                   \
        case 6: loop(P, y, x, n, terms, 2, 1); break;                   \
        case 7: loop(P, y, x, n, terms, 3, 1); break;                   \
        default: loop(P, y, x, n, terms, 3, 0); break;                  \
        }                                                               \
    } while (0)

#define FOCAL_GRAD_DISPATCH(loop, ordinary)                             \
    do {                                                                \
        switch ((int)P->p[1] + 4 * ((ordinary) != 0)) {                 \
        case 0: loop(P, y, x, n, terms, grad, 0, 0); break;             \
        case 1: loop(P, y, x, n, terms, grad, 1, 0); break;             \
        case 2: loop(P, y, x, n, terms, grad, 2, 0); break;             \
        case 4: loop(P, y, x, n, terms, grad, 0, 1); break;             \
        case 5: loop(P, y, x, n, terms, grad, 1, 1); break;             \
        case 6: loop(P, y, x, n, terms, grad, 2, 1); break;             \
        case 7: loop(P, y, x, n, terms, grad, 3, 1); break;             \
        default: loop(P, y, x, n, terms, grad, 3, 0); break;            \
        }                                                               \
    } while (0)

/* The short loops' copies, one function each (FOCAL_SHORT_COPY): variant = mode +
 * 3·with_grad + 6·balance, all constants in each copy. Functions of their own, not
 * inlined into focal_logits_block: inlined there, beside the other loops, the hard
 * loop's copy ran 15-20% slower (its constants spilled to the stack and reloaded;
 * 2.12 -> 1.61 ms on 4096 x 256 with the gradient, AVX-512, one thread). */
typedef void (*focal_short_fn)(const params_t *P, const float *restrict y, const float *restrict x, Py_ssize_t n,
                               double *restrict terms, float *restrict grad, pl_bounds *restrict local,
                               int *restrict soft);

#define FOCAL_SHORT_COPY(loop, m, g, b)                                                                   \
    PL_BLOCK_ATTR PL_NOINLINE static void PL_NAME(loop##_##m##g##b)(                                   \
        const params_t *P, const float *restrict y, const float *restrict x, Py_ssize_t n,              \
        double *restrict terms, float *restrict grad, pl_bounds *restrict local, int *restrict soft)     \
    {                                                                                                   \
        loop(P, y, x, n, terms, (g) ? grad : NULL, local, soft, m, g, b);                               \
    }

/* The 12 copies of a short loop and their table, in variant order. */
#define FOCAL_SHORT_COPIES(loop)                                                                          \
    FOCAL_SHORT_COPY(loop, 0, 0, 0) FOCAL_SHORT_COPY(loop, 1, 0, 0) FOCAL_SHORT_COPY(loop, 2, 0, 0)       \
    FOCAL_SHORT_COPY(loop, 0, 1, 0) FOCAL_SHORT_COPY(loop, 1, 1, 0) FOCAL_SHORT_COPY(loop, 2, 1, 0)       \
    FOCAL_SHORT_COPY(loop, 0, 0, 1) FOCAL_SHORT_COPY(loop, 1, 0, 1) FOCAL_SHORT_COPY(loop, 2, 0, 1)       \
    FOCAL_SHORT_COPY(loop, 0, 1, 1) FOCAL_SHORT_COPY(loop, 1, 1, 1) FOCAL_SHORT_COPY(loop, 2, 1, 1)       \
    static const focal_short_fn PL_NAME(loop##_copies)[12] = {                                            \
        PL_NAME(loop##_000), PL_NAME(loop##_100), PL_NAME(loop##_200), PL_NAME(loop##_010),               \
        PL_NAME(loop##_110), PL_NAME(loop##_210), PL_NAME(loop##_001), PL_NAME(loop##_101),               \
        PL_NAME(loop##_201), PL_NAME(loop##_011), PL_NAME(loop##_111), PL_NAME(loop##_211),               \
    };

/* log(u) for u = p + eps of float32 numbers, in double (Poisson's general loop):
 * pl_log's special cases without its subnormal scaling (a sum of float32 numbers
 * is 0 or a normal double), log_reduced_2s elsewhere, so the same value as
 * log_short for every u > 0; 0 -> -inf, u < 0 -> NaN, inf -> inf, NaN -> NaN. */
PL_INLINE double log_of_float_sum(double u)
{
    double uu = u > 0.0 && u < (double)INFINITY ? u : 1.0;
    double kf, f;
    PL_SPLIT(uu, kf, f);
    double result = log_reduced_2s(f, kf);
    result = u == 0.0 ? -(double)INFINITY : result;
    result = u < 0.0 ? (double)NAN : result;
    result = u == (double)INFINITY ? u : result;
    return u != u ? u : result;
}

/* log(t/p) for t, p in [lo, 1] (positive normal doubles, or NaN): log1p((t - p)/p)
 * where 2t >= p (exact near t = p: t - p of two float32 numbers is exact in
 * double), log(t/p) below, as the generic kernel's log_ratio. One logarithm:
 * the branch only picks its argument (1 + r with the rounding error c of the
 * addition, or t/p with none). The general loop's. */
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
    double result = log_reduced7(f, kf, c / uu);
    return u != u ? u : result;
}

/* t·log(t/p) for float32 values t, p in [lo, 1], lo > 0 (the ordinary loop's): with
 * one division instead of kl_log_ratio's three, and no reciprocal. q = t/p rounded;
 * its exact remainder rho = t - q·p (representable, the classic property of a
 * correctly rounded quotient) is formed without an fma: q's top 26 bits (q_hi, a
 * bit mask) and the rest (q_lo = q - q_hi, exact) times p (24 bits) are exact
 * products, t - q_hi·p is exact (Sterbenz: both within a factor 2), and so is the
 * last subtraction (its result rho is representable). Then t/p = q·(1 + rho/(q·p))
 * and t·log(t/p) = t·log(q) + t·log1p(rho/(q·p)), whose second part is rho to a
 * relative 2^-52 (t/(q·p) = 1 + rho/(q·p), |rho/(q·p)| <= 2^-53): below 2^-105·t,
 * so the term is t·log(q) + rho, one addition of an exact rho. This needs no 1/t
 * (an earlier version formed log(q) + rho/t, 1/t from a float division refined by
 * a Newton step: two conversions, a division and three more operations per
 * element). Near t = p, where log(t/p) ~ (t - p)/p is small, the relative accuracy
 * is log1p((t - p)/p)'s: q - 1 is exact (Sterbenz), log(q) is accurate relative to
 * itself (log_reduced_2s), and q's rounding error is carried by rho.
 * fused (a constant in each copy): rho as one fused multiply-add t - q·p instead,
 * the same exact number (rounded once, and representable) in one operation
 * instead of four: only in the copies compiled for FMA hardware (kl_fused_block),
 * as elsewhere __builtin_fma would call libm's. */
PL_INLINE double kl_term_ordinary(double t, double p, double q, const int fused)
{
    double rho;
    if (fused) {
        rho = __builtin_fma(-q, p, t);
    } else {
        double q_hi = pl_double_b(pl_bits_d(q) & 0xfffffffff8000000ull);
        double q_lo = q - q_hi;
        rho = (t - q_hi * p) - q_lo * p;
    }
    double kf, f;
    PL_SPLIT(q, kf, f);
    return t * log_reduced_2s(f, kf) + rho;
}

/* One element's step of the running bounds of a loop that takes them on its way:
 * the bits of y and x as signed integers into their minima and maxima, four
 * int32 locals of the loop (a macro, so that they stay the vectoriser's
 * reductions). Where the sign bit is clear those integers are the order keys
 * (pl_order_f), so for the data these loops serve (rates, counts and
 * probabilities: non-negative) they are the bounds; a block holding a value with
 * its sign set (a negative value, -0 or a NaN) has a negative minimum, and
 * sign_clear_bounds takes that input's keys proper. Without the keys' own
 * transform (a shift and a ternary logic operation per 16 values and input)
 * Poisson's and KL's float64 loops run 1.7% faster (AVX-512, 1 and 2 threads,
 * results bit for bit the same). */
#define KEYS_STEP(ylo, yhi, xlo, xhi, yv, xv)                                      \
    do {                                                                           \
        int32_t ky_ = (int32_t)pl_bits_f(yv), kx_ = (int32_t)pl_bits_f(xv);        \
        (ylo) = ky_ < (ylo) ? ky_ : (ylo);                                         \
        (yhi) = ky_ > (yhi) ? ky_ : (yhi);                                         \
        (xlo) = kx_ < (xlo) ? kx_ : (xlo);                                         \
        (xhi) = kx_ > (xhi) ? kx_ : (xhi);                                         \
    } while (0)

/* The block's bounds from KEYS_STEP's running bit bounds: those of an input
 * whose minimum is negative (a sign bit set somewhere) are taken again as
 * order keys. */
PL_INLINE void sign_clear_bounds(const float *restrict y, const float *restrict x, Py_ssize_t n, int32_t ylo,
                                 int32_t yhi, int32_t xlo, int32_t xhi, pl_bounds *restrict local)
{
    if (ylo < 0) order_key_bounds(y, n, &ylo, &yhi);
    if (xlo < 0) order_key_bounds(x, n, &xlo, &xhi);
    local->ymin = ylo, local->ymax = yhi, local->xmin = xlo, local->xmax = xhi;
}

/* KL's clip of t and p to [lo, 1] in float (lof a float32 value; NaN stays NaN),
 * a macro like KEYS_STEP (an inline function changed the vectorised loops' code). */
#define KL_CLIP(tf, pf, tv, pv, lof)              \
    do {                                          \
        (tf) = (tv) < (lof) ? (lof) : (tv);       \
        (pf) = (pv) < (lof) ? (lof) : (pv);       \
        (tf) = (tf) > 1.0f ? 1.0f : (tf);         \
        (pf) = (pf) > 1.0f ? 1.0f : (pf);         \
    } while (0)

/* t·log(t/p) with t, p clipped to [lo, 1] (float32 bounds), in float64, for any
 * block (kl_log_ratio): the general loop. */
PL_INLINE void kl_general_terms(const float *restrict y, const float *restrict x, Py_ssize_t n, double lo,
                                double *restrict terms)
{
    const float lof = (float)lo; /* lo is a float32 value: the same clip in float */
    for (Py_ssize_t i = 0; i < n; i++) {
        float tf, pf;
        KL_CLIP(tf, pf, y[i], x[i], lof);
        double t = (double)tf, p = (double)pf;
        terms[i] = t * kl_log_ratio(t, p);
    }
}

/* KL's terms as if the block were ordinary (kl_term_ordinary) into terms[], its
 * bounds into *local, and with_grad (a constant in each copy) the gradient
 * -t/p·scale (times the clip's slope: 1 inside (lo, 1), 1/2 at a bound, 0
 * outside) into grad, from the same quotient q = t/p: one loop and one division
 * fewer than a gradient loop of its own. The gradient is rounded once from
 * float64, so it is the same for any block (NaN where t or p is NaN). */
PL_INLINE void kl_ordinary_terms(const float *restrict y, const float *restrict x, Py_ssize_t n, double lo,
                                 double scale, double *restrict terms, float *restrict grad, pl_bounds *local,
                                 const int with_grad, const int fused)
{
    const float lof = (float)lo; /* lo is a float32 value: the same clip in float */
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        float yi = y[i], xi = x[i];
        KEYS_STEP(ylo, yhi, xlo, xhi, yi, xi);
        float tf, pf;
        KL_CLIP(tf, pf, yi, xi, lof);
        double t = (double)tf, p = (double)pf;
        double q = t / p;
        terms[i] = kl_term_ordinary(t, p, q, fused);
        /* the clipped p keeps -t/p finite where the slope is 0 (p = 0 would give inf·0 = NaN) */
        if (with_grad) grad[i] = (float)((-q * scale) * clip_slope(xi, lof, 1.0f));
    }
    sign_clear_bounds(y, x, n, ylo, yhi, xlo, xhi, local);
}

/* ---- The pieces of binary CE from logits (bce_logits_block), in float.
 *
 * term = log1p(e) + w·x, e = exp(-|x|), w·x = y·relu(-x) + (1-y)·relu(x): 20
 * multiplications or fused multiply-adds per element (22 with the Taylor exp and
 * the Chebyshev-node log1p used before, whose errors are larger), which bound the loop where two FMA
 * pipes do every product (AMD Zen 4: ~1.6 cycles per element with AVX-512, the
 * sum in double included; 8% faster than before).
 *
 * exp_neg_f6: e^-a as pl_expf_neg's reduction a = k·ln2 - r (|r| <= ln2/2 plus
 * a rounding, r carries at most 2^-26 absolute error: the first step is exact,
 * the second rounds once) and e^r by a degree-6 polynomial whose constant and
 * linear coefficients are 1 exactly and whose others are a minimax fit of the
 * relative error on |r| <= 0.347 with the coefficients rounded to float one at a
 * time, lowest first, each later one refitted (linear programming on 4000
 * Chebyshev points; scripts/fit_bce_polys.py): relative error
 * 3.1e-9 (0.05 ulp) with exact arithmetic, below pl_expf_taylor's 5.2e-9 with
 * one product fewer. With the float evaluation's roundings: 0.90 ulp over every
 * float in [0, 87] (the Taylor exp: 0.94; baseline build 1.18 and 1.22).
 *
 * log1p_unit_f8(e) = log1p(e) for e in [0, 1]: e + e·(e·r(e)), r of degree 8, a
 * minimax fit of the relative error of log1p on [0, 1] (same method): 5.3e-9
 * (0.09 ulp) with exact arithmetic, where the former fit at Chebyshev nodes
 * (same degree and cost) had 3.1e-8; evaluated in float, 1.30 ulps over every
 * float in [0, 1] (the former: 1.55; baseline build 1.73 and 1.89). log1p(e) + w·x (w = step_minus_y)
 * then rounds once (a fused multiply-add). Both parts are non-negative for a
 * label in [0, 1], so no cancellation: over 6M logits in [-90, 90] (uniform and
 * log-uniform) and labels 0, 1, 0.1, 0.5, 0.9, 0.999 a float32 term is within
 * 2.01 ulps (AVX-512 build; 2.11 with the former pair); docs/accuracy.md
 * has the test grid's figures. */
PL_INLINE float exp_neg_f6_poly(float r)
{
    float p = 0.0013819607f;
    p = p * r + 0.008368694f;
    p = p * r + 0.04166828f;
    p = p * r + 0.16666521f;
    p = p * r + 0.49999994f;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

/* e^-a for a in [0, 87] (e^-a a normal float; outside: unspecified, finite or
 * not, never a trap): one scaling, 2^k added to the exponent field of p = e^r in
 * [0.70, 1.42] (k in [-126, 0]: the sum is a normal float exactly when p·2^k is one). */
PL_INLINE float exp_neg_f6(float a)
{
    float km;
    float r = pl_expf_reduce(-a, &km);
    return pl_expf_scale_normal(exp_neg_f6_poly(r), km);
}

/* e^-a for any a >= 0 (NaN: unspecified, finite): exp_neg_f6 with pl_expf_neg's
 * clamp and two-factor scaling, so that subnormal results come out right and a
 * large a gives 0; the same value as exp_neg_f6 where that one is defined
 * (p·2^k1·2^k2 = p·2^k exactly for a normal result). */
PL_INLINE float exp_neg_f6_any(float a)
{
    float km;
    float r = pl_expf_reduce(a < 110.0f ? -a : -110.0f, &km);
    return pl_expf_scale(exp_neg_f6_poly(r), km);
}

/* log1p(e) for e in [0, 1] (see above). */
PL_INLINE float log1p_unit_f8(float e)
{
    float r = -0.0032904686f;
    r = r * e + 0.020086242f;
    r = r * e + -0.05745723f;
    r = r * e + 0.10661128f;
    r = r * e + -0.1534488f;
    r = r * e + 0.19692102f;
    r = r * e + -0.24958019f;
    r = r * e + 0.33330464f;
    r = r * e + -0.4999993f;
    return e + e * (e * r);
}

/* The factor w = step(x) - y of x in relu(x) - y·x = y·relu(-x) + (1-y)·relu(x) =
 * w·x, step(x) = 1 where the sign bit is clear and 0 where it is set, made by
 * integer operations (which run beside the FMA pipes): 1 - y (exact for y in
 * [1/2, 1], within 2^-24 relative below) or -y (exact). The term is then
 * log1p(e) + w·x, one fused multiply-add: no cancellation for a label in [0, 1]
 * (relu(x) - y·x with y·x rounded first would cancel for soft labels near 1 in
 * the baseline build, which has no FMA). */
PL_INLINE float step_minus_y(float x, float y)
{
    int32_t bx = (int32_t)pl_bits_f(x);
    return pl_float_b((uint32_t)(~(bx >> 31) & 0x3f800000)) - y;
}

/* The terms of binary CE from logits as if the block were ordinary (see
 * bce_logits_block) into terms[], and with_bounds (a constant in each copy) the
 * block's bounds into *local; returns whether the block is ordinary: every
 * |x| <= 87 (false for an infinity or a NaN x; a NaN y gives NaN terms either
 * way, and the row is recomputed generically). Without bounds only max |x| is
 * taken. With them, y's minimum and maximum are taken as signed integers of its
 * bits, which are its order keys (pl_order_f) wherever the sign bit is clear:
 * a block whose smallest such integer is negative (a negative label, -0 or a NaN
 * with its sign set) takes its keys again (short_loop_bounds). */
PL_INLINE int bce_logits_ordinary_terms(const float *restrict y, const float *restrict x, Py_ssize_t n,
                                        float *restrict terms, pl_bounds *local, const int with_bounds)
{
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    int32_t amax = 0; /* max |x| as bits: integers order non-negative floats, and vectorise */
    for (Py_ssize_t i = 0; i < n; i++) {
        float xi = x[i], yi = y[i], a = fabsf(xi);
        if (with_bounds) {
            int32_t ky = (int32_t)pl_bits_f(yi), kx = pl_order_f(xi);
            ylo = ky < ylo ? ky : ylo;
            yhi = ky > yhi ? ky : yhi;
            xlo = kx < xlo ? kx : xlo;
            xhi = kx > xhi ? kx : xhi;
        } else {
            int32_t ka = (int32_t)pl_bits_f(a);
            amax = ka > amax ? ka : amax;
        }
        terms[i] = log1p_unit_f8(exp_neg_f6(a)) + step_minus_y(xi, yi) * xi;
    }
    if (!with_bounds) return amax <= (int32_t)pl_bits_f(87.0f); /* false for a NaN (bits beyond inf's) */
    short_loop_bounds(y, n, ylo, yhi, xlo, xhi, local);
    return keys_within(xlo, xhi, -87.0f, 87.0f);
}

/* Poisson's float32 gradient formula ((p - y) + eps)/(p + eps)·scale (poisson_block's mode 1). */
PL_INLINE float poisson_slope_f32(float y, float p, float epsf, float scalef)
{
    return (((p - y) + epsf) / (p + epsf)) * scalef;
}

/* Poisson's float64 gradient (1 - y/(p + eps))·scale, rounded once, by its own loop. */
PL_INLINE void poisson_grad_loop(const float *restrict y, const float *restrict x, Py_ssize_t n, double eps,
                                 double scale, float *restrict grad)
{
    for (Py_ssize_t i = 0; i < n; i++)
        grad[i] = (float)((1.0 - (double)y[i] / ((double)x[i] + eps)) * scale);
}

/* Poisson's terms p - y·log(p + eps) in float64 as if the block were ordinary
 * (see poisson_block) into terms[] and its bounds into *local: one loop (the
 * bounds in the integer lanes beside the float64 arithmetic, 2-4% faster than a
 * bounds pass of their own). */
PL_INLINE void poisson_ordinary_terms(const float *restrict y, const float *restrict x, Py_ssize_t n, double eps,
                                      double *restrict terms, pl_bounds *local)
{
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        float yi = y[i], xi = x[i];
        KEYS_STEP(ylo, yhi, xlo, xhi, yi, xi);
        double p = (double)xi;
        terms[i] = p - (double)yi * log_short(p + eps);
    }
    sign_clear_bounds(y, x, n, ylo, yhi, xlo, xhi, local);
}

/* Poisson's terms in float32 arithmetic (poisson_block's mode 1, for JAX without
 * float64) as if the block were ordinary (every u = p + eps rounded to float a
 * positive normal float, p finite), with its bounds and, with_grad, the float32
 * gradient formula. log(p + eps) = log(u) + c/u, c the exact rounding error of u
 * (Fast2Sum, ordered by magnitude; the dropped -(c/u)^2/2 is below 2^-49, as
 * |c/u| <= 2^-24), log(u) in float (pl_logf_reduced, 0.86 ulp, c/u added inside
 * it); then p - y·log in double (the product of two floats exact), rounded once:
 * each term within 0.86 float32 ulp of y·log(p + eps), plus y·2^-49 and a double
 * rounding, of its exact value. Without c, the float32 rounding of p + eps moves
 * y·log by up to y·2^-24 (Keras's float32 formula): over 4096 rows of 256 Poisson
 * counts the row means were within 1.16 ulps and 74% of them correctly rounded;
 * with it 0.60 ulp and 97%, the time 5% more, and 20% less than the float64 mode
 * (AVX-512, two threads, with the gradient). */
PL_INLINE void poisson_f32_terms(const float *restrict y, const float *restrict x, Py_ssize_t n, double eps,
                                 double scale, double *restrict terms, float *restrict grad, pl_bounds *local,
                                 const int with_grad)
{
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    const float epsf = (float)eps, scalef = (float)scale;
    for (Py_ssize_t i = 0; i < n; i++) {
        float yi = y[i], xi = x[i];
        KEYS_STEP(ylo, yhi, xlo, xhi, yi, xi);
        float u = xi + epsf;
        float c = xi > epsf ? epsf - (u - xi) : xi - (u - epsf);
        float kf, f;
        PL_SPLITF(u, kf, f);
        terms[i] = (double)xi - (double)yi * (double)pl_logf_reduced(f, kf, c / u);
        if (with_grad) grad[i] = poisson_slope_f32(yi, xi, epsf, scalef);
    }
    sign_clear_bounds(y, x, n, ylo, yhi, xlo, xhi, local);
}

/* KL's terms in float32 arithmetic (kl_block's mode 1, for JAX without float64),
 * as if the block were ordinary (lo a normal float, no NaN), with its bounds and,
 * with_grad, the gradient by JAX's float32 formula (-(t/p)·slope)·scale. The
 * formula is that of JAX's XLA path (probloss._backends._jax._kl_terms): q = t/p
 * rounded to float32, its exact remainder rho = t - q·p (exact in double: q·p has
 * 48 bits, and rho is a float32 number, the property of a correctly rounded
 * quotient), and t·log(t/p) = t·log(q) + rho (to a relative 2^-24 of rho, below
 * 2^-48·t), with log(q) in float (pl_logf_reduced, 0.86 ulp) and the rest in
 * double: each term within about an ulp of itself (float32), where XLA's float32
 * products and sums round twice more. */
PL_INLINE void kl_f32_terms(const float *restrict y, const float *restrict x, Py_ssize_t n, double lo,
                            double scale, double *restrict terms, float *restrict grad, pl_bounds *local,
                            const int with_grad)
{
    const float lof = (float)lo, scalef = (float)scale;
    int32_t ylo = INT32_MAX, yhi = INT32_MIN, xlo = INT32_MAX, xhi = INT32_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        float yi = y[i], xi = x[i];
        KEYS_STEP(ylo, yhi, xlo, xhi, yi, xi);
        float tf, pf;
        KL_CLIP(tf, pf, yi, xi, lof);
        float q = tf / pf;
        double t = (double)tf;
        double rho = t - (double)q * (double)pf;
        float kf, f;
        PL_SPLITF(q, kf, f);
        terms[i] = t * (double)pl_logf_reduced(f, kf, 0.0f) + rho;
        if (with_grad) grad[i] = (-q * (float)clip_slope(xi, lof, 1.0f)) * scalef;
    }
    sign_clear_bounds(y, x, n, ylo, yhi, xlo, xhi, local);
}

/* KL divergence: sum of t·log(t/p), t and p clipped to [lo, 1]. params: p[0] = lo.
 * Ordinary block: lo a normal float32 and no NaN in y or x (kl_term_ordinary);
 * one loop takes the bounds, the terms as if the block were ordinary and the
 * gradient; a block that is not has its terms recomputed by the general loop.
 * d/dp = -t/p inside (lo, 1), half of it at a bound, 0 outside (clip_slope).
 * Body of kl_block and of its fused copies (kl_fused_block). */
PL_INLINE void kl_block_body(const void *params, const float *restrict y, const float *restrict x, Py_ssize_t n,
                             double *acc, float *restrict grad, pl_bounds *b, const int fused)
{
    const params_t *P = (const params_t *)params;
    const double lo = P->p[0];
    double terms[PL_BLOCK];
    pl_bounds local;
    if (P->p[1] != 0.0) {
        if (grad)
            kl_f32_terms(y, x, n, lo, P->scale, terms, grad, &local, 1);
        else
            kl_f32_terms(y, x, n, lo, P->scale, terms, NULL, &local, 0);
    } else if (grad) {
        kl_ordinary_terms(y, x, n, lo, P->scale, terms, grad, &local, 1, fused);
    } else {
        kl_ordinary_terms(y, x, n, lo, P->scale, terms, NULL, &local, 0, fused);
    }
    /* lo >= the smallest normal float (t and p positive normal, their quotient
     * a positive normal double) */
    if (!(lo >= 1.17549435e-38 && keys_within(local.xmin, local.xmax, -INFINITY, INFINITY)
          && keys_within(local.ymin, local.ymax, -INFINITY, INFINITY)))
        kl_general_terms(y, x, n, lo, terms);
    pl_sum_lanes(terms, n, acc);
    pl_bounds_merge(b, &local);
}

/* KL's block with rho by a fused multiply-add (kl_term_ordinary's `fused`),
 * compiled for x86-64-v4 and for x86-64-v3, both of which have FMA: 5-7% faster
 * than the four-operation remainder (4096 x 256, AVX-512, 1 and 2 threads), the
 * same results bit for bit (rho is exact either way). binary.c runs the copy of
 * the CPU's level (kl_fused_block) in place of kl_block's load-time clones; the
 * baseline clone (a CPU without FMA) and the baseline build keep the portable
 * remainder. Where target_clones is not available (PL_HAVE_CLONES), nor is this. */
#if defined(PL_HAVE_CLONES) && (defined(__clang__) ? __clang_major__ >= 16 : __GNUC__ >= 12)
#define PL_KL_FUSED 1
#define KL_FUSED_COPY(name, isa)                                                                             \
    PL_NOINLINE __attribute__((target("arch=" isa))) static void name(                                      \
        const void *params, const float *restrict y, const float *restrict x, Py_ssize_t n, double *acc,    \
        float *restrict grad, pl_bounds *b)                                                                 \
    {                                                                                                        \
        kl_block_body(params, y, x, n, acc, grad, b, 1);                                                     \
    }
KL_FUSED_COPY(kl_block_fused_v4, "x86-64-v4")
KL_FUSED_COPY(kl_block_fused_v3, "x86-64-v3")

/* The fused copy for this CPU, or NULL below x86-64-v3 (the levels that
 * target_clones' resolver tests). */
static pl_block_fn kl_fused_block(void)
{
    static volatile int level = -1; /* a race writes the same value */
    if (level < 0) {
        __builtin_cpu_init();
        level = __builtin_cpu_supports("x86-64-v4") ? 4 : (__builtin_cpu_supports("x86-64-v3") ? 3 : 0);
    }
    return level == 4 ? kl_block_fused_v4 : (level == 3 ? kl_block_fused_v3 : NULL);
}
#endif

#endif /* PL_BINARY_HELPERS */

/* ------------------------------------------------------------ block functions */

/* term = log1p(e) + y·max(-x, 0) + (1-y)·max(x, 0), e = exp(-|x|): the generic
 * kernel's formula, in float (as the generic kernel on float32), summed in
 * double: e by exp_neg_f6, log1p(e) by log1p_unit_f8, plus w·x (step_minus_y)
 * in one fused multiply-add (see their comments for the error; the terms are
 * non-negative, so a sample keeps the terms' relative error). An infinite or NaN logit gives NaN (the x - x
 * term) and the row is recomputed generically.
 * Gradient: sigmoid(x) - y, without 1 - (1 - tiny).
 *
 * One loop takes the block's bounds and its terms as if the block were
 * ordinary (every |x| <= 87, so that e >= e^-87 is a normal float and x is
 * finite): e by exp_neg_f6 (one scaling, added to the exponent field), without
 * x - x. A block that turns out not to be ordinary (a rare |x| > 87, an
 * infinity, a NaN) has its terms recomputed by the general loop, whose e
 * (exp_neg_f6_any) is the same wherever the ordinary loop's is defined, so an
 * element's term does not depend on its neighbours.
 * params: p[0] = 1 when the caller does not want the bounds (validation off,
 * no observer): *b is then left as it is, and the loop takes only max |x|. */
PL_BLOCK_ATTR static void PL_NAME(bce_logits_block)(const void *params, const float *restrict y,
                                                    const float *restrict x, Py_ssize_t n, double *acc,
                                                    float *restrict grad, pl_bounds *b)
{
    float terms[PL_BLOCK]; /* all-float loop: 16 lanes per AVX-512 register, 8 per AVX2 one */
    pl_bounds local = pl_bounds_empty;
    int ordinary;
    if (((const params_t *)params)->p[0] != 0.0) { /* no bounds wanted: only max |x| */
        ordinary = bce_logits_ordinary_terms(y, x, n, terms, &local, 0);
    } else {
        ordinary = bce_logits_ordinary_terms(y, x, n, terms, &local, 1);
    }
    if (!ordinary) {
        for (Py_ssize_t i = 0; i < n; i++) {
            float xi = x[i], yi = y[i];
            /* + (x - x): NaN for an infinite x (its row is then recomputed), 0 otherwise */
            terms[i] = (log1p_unit_f8(exp_neg_f6_any(fabsf(xi))) + step_minus_y(xi, yi) * xi) + (xi - xi);
        }
    }
    pl_sum_lanes_f(terms, n, acc);
    pl_bounds_merge(b, &local);
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
PL_BLOCK_ATTR static void PL_NAME(bce_probs_block)(const void *params, const float *restrict y,
                                                   const float *restrict x, Py_ssize_t n, double *acc,
                                                   float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    const float lo = (float)P->p[0], hi = (float)P->p[1];
    float terms[PL_BLOCK]; /* all-float loop: 8 lanes per AVX2 register */
    pl_bounds local = block_bounds(y, x, n);
    /* Ordinary block: lo a normal float, hi < 1 and no NaN probability, so that
     * p = clip(x) is a normal float in (0, 1) and 1 - p a positive normal float:
     * pl_logf and pl_log1pf without their special cases (the same values). */
    if (lo >= 1.17549435e-38f && hi < 1.0f && keys_within(local.xmin, local.xmax, -INFINITY, INFINITY)) {
        for (Py_ssize_t i = 0; i < n; i++) {
            float p = x[i] < lo ? lo : x[i];
            p = p > hi ? hi : p;
            float yi = y[i];
            float kf, f, kq, fq;
            PL_SPLITF(p, kf, f);
            float u = 1.0f - p, c = -p - (u - 1.0f);
            PL_SPLITF(u, kq, fq);
            float log_p = pl_logf_reduced(f, kf, 0.0f), log_q = pl_logf_reduced(fq, kq, c / u);
            terms[i] = -fmaf(yi, log_p, (1.0f - yi) * log_q); /* as below */
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            float p = x[i] < lo ? lo : x[i];
            p = p > hi ? hi : p; /* NaN stays NaN */
            float yi = y[i];
            /* Both logs <= 0 and both weights >= 0 (valid data): no cancellation. y·log(p)
             * is exact inside the fma; log errors <= 0.87 ulp, (1 - y), its product and
             * the fma round once each (<= 0.5 ulp of a same-signed sum): <= 2.4 ulps. */
            terms[i] = -fmaf(yi, pl_logf(p), (1.0f - yi) * pl_log1pf(-p));
        }
    }
    pl_sum_lanes_f(terms, n, acc);
    pl_bounds_merge(b, &local);
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

FOCAL_SHORT_COPIES(focal_logits_hard_loop)
FOCAL_SHORT_COPIES(focal_logits_short_loop)

/* params: p[0] = gamma, p[1] = power mode (0: gamma 0, 1: gamma 1, 2: gamma 2,
 * 3: general), p[2] = alpha, p[3] = apply_class_balancing (0/1).
 * Ordinary block: every |x| <= 700 (no NaN, no infinity, e = exp(-|x|) normal);
 * with gamma 0, 1 or 2 and every label in [0, 1] it takes the short loop. */
PL_BLOCK_ATTR static void PL_NAME(focal_logits_block)(const void *params, const float *restrict y,
                                                      const float *restrict x, Py_ssize_t n, double *acc,
                                                      float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    double terms[PL_BLOCK];
    pl_bounds local;
    int ordinary, short_ok = 0;
    if ((int)P->p[1] <= 2) {
        /* The short loop (gamma 0, 1 or 2, every label in [0, 1]: focal_logits_short_loop),
         * or its hard-label form where every label is 0 or 1 (focal_logits_hard_loop), runs
         * before the block is known to qualify, and takes the block's bounds (the hard
         * loop: whether a label is soft too) on the way, so that they need no pass of
         * their own (which cost ~5% with the gradient, 4096 x 256, AVX-512). The first labels choose which
         * to try: a soft one among them rules the hard loop out. A block the loop that
         * ran does not suit is written again by the one it does, so that each
         * block's result depends on its own data only. */
        const int variant = (int)P->p[1] + 3 * (grad != NULL) + 6 * (P->p[3] != 0.0);
        const int try_hard = labels_hard(y, n < 16 ? n : 16);
        int soft;
        (try_hard ? PL_NAME(focal_logits_hard_loop_copies) : PL_NAME(focal_logits_short_loop_copies))[variant](
            P, y, x, n, terms, grad, &local, &soft);
        ordinary = keys_within(local.xmin, local.xmax, -700.0f, 700.0f);
        short_ok = ordinary && keys_within(local.ymin, local.ymax, 0.0f, 1.0f);
        if (short_ok && try_hard && soft) /* a soft label further on */
            PL_NAME(focal_logits_short_loop_copies)[variant](P, y, x, n, terms, grad, &local, &soft);
    } else {
        local = block_bounds(y, x, n);
        ordinary = keys_within(local.xmin, local.xmax, -700.0f, 700.0f);
    }
    if (!short_ok) {
        if (grad) /* the terms and the gradient in one loop */
            FOCAL_GRAD_DISPATCH(focal_logits_grad_loop, ordinary);
        else
            FOCAL_DISPATCH(focal_logits_loop, ordinary);
    }
    pl_sum_lanes(terms, n, acc);
    pl_bounds_merge(b, &local);
}

/* params: as focal_logits_block, and p[4] = lo, p[5] = hi.
 * Ordinary block: 0 < lo, hi < 1 and no NaN probability. */
PL_BLOCK_ATTR static void PL_NAME(focal_probs_block)(const void *params, const float *restrict y,
                                                     const float *restrict x, Py_ssize_t n, double *acc,
                                                     float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    double terms[PL_BLOCK];
    pl_bounds local = block_bounds(y, x, n);
    const int ordinary = P->p[4] > 0.0 && P->p[5] < 1.0
                         && keys_within(local.xmin, local.xmax, -INFINITY, INFINITY);
    if (grad) /* the terms and the gradient in one loop */
        FOCAL_GRAD_DISPATCH(focal_probs_grad_loop, ordinary);
    else
        FOCAL_DISPATCH(focal_probs_loop, ordinary);
    pl_sum_lanes(terms, n, acc);
    pl_bounds_merge(b, &local);
}

/* Keras's p - y·log(p + eps). params: p[0] = eps (float32 value), p[1] = the
 * arithmetic: 0 for float64 (the terms, and the gradient 1 - y/(p + eps) rounded
 * once), 1 for float32, JAX's without float64 (poisson_f32_terms; the gradient
 * ((p - y) + eps)/(p + eps)·scale in float32, the scale rounded to float32: the
 * formula of probloss._backends._jax, its numbers where the scale is a power of 2).
 * Ordinary block: every p finite with p + eps > 0 (a sum of two float32 numbers:
 * then a positive normal finite double), and in float32 a normal float. One loop
 * takes the block's bounds and its terms as if it were ordinary (the logarithms
 * give some number on anything else, never a trap); a block that is not has its
 * terms recomputed by the float64 general loop, whose logarithm is log_short's
 * wherever that one is defined. The float32 gradient, a formula of y and p alone,
 * is written by the same loop (13% over the loss alone, AVX-512, one thread, where
 * its own loop costs 30%, as the float64 one does in either place: its division). */
PL_BLOCK_ATTR static void PL_NAME(poisson_block)(const void *params, const float *restrict y,
                                                 const float *restrict x, Py_ssize_t n, double *acc,
                                                 float *restrict grad, pl_bounds *b)
{
    const params_t *P = (const params_t *)params;
    const double eps = P->p[0], scale = P->scale;
    const int float32 = P->p[1] != 0.0;
    double terms[PL_BLOCK];
    pl_bounds local;
    int ordinary;
    if (float32) {
        if (grad)
            poisson_f32_terms(y, x, n, eps, scale, terms, grad, &local, 1);
        else
            poisson_f32_terms(y, x, n, eps, scale, terms, NULL, &local, 0);
        ordinary = pl_unorder_f(local.xmin) + (float)eps >= 1.17549435e-38f && pl_unorder_f(local.xmax) < INFINITY;
    } else {
        poisson_ordinary_terms(y, x, n, eps, terms, &local);
        ordinary = (double)pl_unorder_f(local.xmin) + eps > 0.0 && pl_unorder_f(local.xmax) < INFINITY;
        if (grad) poisson_grad_loop(y, x, n, eps, scale, grad);
    }
    if (!ordinary) { /* also for a NaN bound */
        for (Py_ssize_t i = 0; i < n; i++) {
            double p = (double)x[i];
            terms[i] = p - (double)y[i] * log_of_float_sum(p + eps);
        }
    }
    pl_sum_lanes(terms, n, acc);
    pl_bounds_merge(b, &local);
}

/* KL divergence: kl_block_body's portable copy (see there). */
PL_BLOCK_ATTR static void PL_NAME(kl_block)(const void *params, const float *restrict y,
                                            const float *restrict x, Py_ssize_t n, double *acc,
                                            float *restrict grad, pl_bounds *b)
{
    kl_block_body(params, y, x, n, acc, grad, b, 0);
}

static const pl_block_fn PL_NAME(blocks)[KIND_COUNT] = {
    PL_NAME(bce_logits_block), PL_NAME(bce_probs_block), PL_NAME(focal_logits_block),
    PL_NAME(focal_probs_block), PL_NAME(poisson_block), PL_NAME(kl_block),
};

#undef PL_NAME
#undef PL_BLOCK_ATTR
