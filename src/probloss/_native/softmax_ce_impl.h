/* The softmax-family kernels, compiled once per instruction set.
 *
 * Included by softmax_ce_base.c (the baseline: SSE2 on x86-64, NEON, ...) and
 * softmax_ce_avx2.c (AVX2 + FMA), each defining PL_NAME to suffix the entry
 * points; softmax_ce.c picks one at run time. The arithmetic is written once
 * with GCC/Clang vector extensions; AVX intrinsics replace the few operations
 * that GCC lowers poorly (float32 -> float64 widening, max, blend).
 * See softmax_ce.c for the math and its error bounds.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "softmax_ce.h"

#if defined(__GNUC__) && !defined(__clang__)
/* The vector helpers below are always inlined, so the ABI note GCC gives for
 * passing 32-byte vectors in the baseline build does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PL_AVX2 1
#endif

#define W 8 /* float32 lanes per vector */

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

#define INLINE static inline __attribute__((always_inline))

static const double TWO_M100 = 0x1p-100; /* the exps are scaled by 2^100 */

INLINE v8f splat(float v) { return (v8f){v, v, v, v, v, v, v, v}; }
INLINE v8i splati(int32_t v) { return (v8i){v, v, v, v, v, v, v, v}; }
INLINE v8f load(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
INLINE void store(float *p, v8f v) { memcpy(p, &v, sizeof v); }

#ifdef PL_AVX2
INLINE v8f select_f(v8i mask, v8f a, v8f b) { return (v8f)_mm256_blendv_ps((__m256)b, (__m256)a, (__m256)mask); }
INLINE v8i select_i(v8i mask, v8i a, v8i b) {
    return (v8i)_mm256_blendv_ps((__m256)b, (__m256)a, (__m256)mask);
}
/* max(a, b) for b not NaN (maxps returns its second operand when one is NaN) */
INLINE v8f max_f(v8f a, v8f b) { return (v8f)_mm256_max_ps((__m256)a, (__m256)b); }
INLINE v4d half_lo(v8f v) { return (v4d)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v)); }
INLINE v4d half_hi(v8f v) { return (v4d)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1)); }
#else
INLINE v8f select_f(v8i mask, v8f a, v8f b) { return (v8f)((mask & (v8i)a) | (~mask & (v8i)b)); }
INLINE v8i select_i(v8i mask, v8i a, v8i b) { return (mask & a) | (~mask & b); }
INLINE v8f max_f(v8f a, v8f b) { return select_f(a > b, a, b); }
INLINE v4d half_lo(v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d); }
INLINE v4d half_hi(v8f v) { return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d); }
#endif

/* Float64 sums of float32 vectors, as two 4-lane halves. */
typedef struct {
    v4d lo, hi;
} Acc;

INLINE void add_to(Acc *acc, v8f v) {
    acc->lo += half_lo(v);
    acc->hi += half_hi(v);
}

INLINE double total(Acc acc) {
    v4d s = acc.lo + acc.hi;
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* ---- float64 exp and log on 4 lanes, for the focal and probability paths,
 * where a term's float32 rounding would count against the 4-ulp budget. Both
 * are accurate to ~2^-42 relative, far below what a float32 result shows. */
typedef int64_t v4l __attribute__((vector_size(32)));
typedef uint64_t v4u __attribute__((vector_size(32)));

INLINE v4d splat_d(double v) { return (v4d){v, v, v, v}; }
INLINE v4d select_d(v4l mask, v4d a, v4d b) { return (v4d)((mask & (v4l)a) | (~mask & (v4l)b)); }

/* e^d for d in [-700, 0]: k = round(d/ln 2) (magic-number rounding), Cody-Waite
 * r = d - k ln2 with |r| <= 0.35, Taylor to degree 10 (truncation < 2^-42). */
INLINE v4d exp_pd(v4d d) {
    const double magic = 6755399441055744.0; /* 1.5·2^52 */
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    v4d shifted = d * 1.4426950408889634 + magic;
    v4d kf = shifted - magic;
    v4d r = (d - kf * ln2_hi) - kf * ln2_lo;
    v4d p = splat_d(1.0 / 3628800.0);
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
    v4l k = (v4l)shifted - (v4l)splat_d(magic); /* the integer k, from the low bits */
    return p * (v4d)((k + 1023) << 52);
}

/* log(p) for positive normal p: p = 2^e·f, f in [sqrt(1/2), sqrt(2)),
 * log f = 2 atanh(s) with s = (f-1)/(f+1), |s| <= 0.1716, to s^15 (< 2^-45). */
INLINE v4d log_pd(v4d p) {
    const v4u bits = (v4u)p;
    v4l e = (v4l)(bits >> 52) - 1023; /* p > 0: no sign bit */
    v4d f = (v4d)((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    v4l big = f > 1.4142135623730951;
    f = select_d(big, f * 0.5, f);
    e -= big; /* big is -1 where true */
    v4d ed = (v4d)(e + 0x4338000000000000LL) - 6755399441055744.0;
    v4d s = (f - 1.0) / (f + 1.0);
    v4d s2 = s * s;
    v4d q = splat_d(2.0 / 15.0);
    q = q * s2 + 2.0 / 13.0;
    q = q * s2 + 2.0 / 11.0;
    q = q * s2 + 2.0 / 9.0;
    q = q * s2 + 2.0 / 7.0;
    q = q * s2 + 2.0 / 5.0;
    q = q * s2 + 2.0 / 3.0;
    return ed * 0.6931471805599453 + (2.0 * s + s * s2 * q);
}

INLINE v4d sqrt_pd(v4d v) {
#ifdef PL_AVX2
    return (v4d)_mm256_sqrt_pd((__m256d)v);
#else
    for (int l = 0; l < 4; l++) v[l] = sqrt(v[l]);
    return v;
#endif
}

/* base^gamma for base in [1/2, 1] (1 - p off the maximum) */
INLINE v4d power_pd(v4d base, double gamma) {
    if (gamma == 2.0) return base * base;
    if (gamma == 1.0) return base;
    if (gamma == 0.0) return splat_d(1.0);
    if (gamma == 0.5) return sqrt_pd(base);
    return exp_pd(gamma * log_pd(base)); /* gamma·log(base) in [-0.7·gamma, 0] */
}

INLINE v8i lane_index(void) { return (v8i){0, 1, 2, 3, 4, 5, 6, 7}; }

typedef uint32_t v8u __attribute__((vector_size(32)));

#ifdef PL_AVX2
INLINE v8f min_f(v8f a, v8f b) { return (v8f)_mm256_min_ps((__m256)a, (__m256)b); }
/* lanes where a or b is NaN */
INLINE v8i unordered(v8f a, v8f b) { return (v8i)_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_UNORD_Q); }
INLINE v8u umin(v8u a, v8u b) { return (v8u)_mm256_min_epu32((__m256i)a, (__m256i)b); }
INLINE v8u umax(v8u a, v8u b) { return (v8u)_mm256_max_epu32((__m256i)a, (__m256i)b); }
/* whether any bit of v is set (-0.0 counts as set) */
INLINE int any_bits(v8f v) { return !_mm256_testz_si256((__m256i)v, (__m256i)v); }
INLINE int any_lane(v8i mask) { return _mm256_movemask_ps((__m256)mask) != 0; }
/* bit l set where lane l of the mask is */
INLINE unsigned lane_bits(v8i mask) { return (unsigned)_mm256_movemask_ps((__m256)mask); }
#else
INLINE v8f min_f(v8f a, v8f b) { return select_f(a < b, a, b); }
INLINE v8i unordered(v8f a, v8f b) { return (a != a) | (b != b); }
INLINE v8u umin(v8u a, v8u b) { return (v8u)select_i((v8i)(a < b), (v8i)a, (v8i)b); }
INLINE v8u umax(v8u a, v8u b) { return (v8u)select_i((v8i)(a > b), (v8i)a, (v8i)b); }
INLINE int any_bits(v8f v) {
    uint64_t w[4];
    memcpy(w, &v, sizeof w);
    return (w[0] | w[1] | w[2] | w[3]) != 0;
}
INLINE int any_lane(v8i mask) { return any_bits((v8f)mask); }
INLINE unsigned lane_bits(v8i mask) {
    unsigned bits = 0;
    for (int l = 0; l < W; l++) bits |= (unsigned)(mask[l] & 1) << l;
    return bits;
}
#endif

/* The range of a row of non-negative values, tracked on their bit patterns: for
 * non-negative floats the unsigned order of the bits is the numeric order, and a
 * negative number (-0.0 included), NaN or inf has bits above those of every
 * finite non-negative number. So two integer operations per vector give the
 * minimum and maximum of a valid row, and prove it valid (for the data checks). */
typedef struct {
    v8u lo, hi;
    int zeros; /* a vector of +0.0s was seen (and not added: its range is known) */
} Range;

#define FINITE_LIMIT 0x7f800000u /* the bits of +inf */

INLINE Range range_start(void) {
    Range r = {{UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX},
               {0, 0, 0, 0, 0, 0, 0, 0}, 0};
    return r;
}
INLINE void range_add(Range *r, v8f v) {
    r->lo = umin(r->lo, (v8u)v);
    r->hi = umax(r->hi, (v8u)v);
}
INLINE uint32_t range_high(Range r) {
    uint32_t hi = 0;
    for (int l = 0; l < W; l++) hi = r.hi[l] > hi ? r.hi[l] : hi;
    return hi;
}
/* out[0], out[1] <- the minimum and maximum, or NaN, NaN where some value is
 * not a finite non-negative number (or is -0.0): "not known" to the caller. */
INLINE void range_put(float *out, Range r) {
    uint32_t lo = UINT32_MAX, hi = range_high(r);
    for (int l = 0; l < W; l++) lo = r.lo[l] < lo ? r.lo[l] : lo;
    if (r.zeros) lo = 0;
    if (hi < FINITE_LIMIT) {
        memcpy(&out[0], &lo, 4);
        memcpy(&out[1], &hi, 4);
    } else {
        out[0] = out[1] = NAN;
    }
}

/* Load up to W entries of p (n < W) into a vector filled with `fill`. */
INLINE v8f load_partial(const float *p, int64_t n, float fill) {
    float buf[W];
    for (int i = 0; i < W; i++) buf[i] = fill;
    memcpy(buf, p, (size_t)n * sizeof(float));
    return load(buf);
}

INLINE void store_partial(float *p, v8f v, int64_t n) {
    float buf[W];
    store(buf, v);
    memcpy(p, buf, (size_t)n * sizeof(float));
}

/* exp(r) for |r| <= 0.36 by the degree-6 polynomial described below, times
 * 2^j where `shifted` holds j in its low mantissa bits (the magic-number
 * rounding of both callers): the integer addition to the exponent field. */
INLINE v8f exp_poly_times_pow2(v8f r, v8f shifted) {
    v8f p = splat(0x1.69fd9cp-10f);
    p = p * r + 0x1.125132p-7f;
    p = p * r + 0x1.555988p-5f;
    p = p * r + 0x1.555472p-3f;
    p = p * r + 0x1.fffffap-2f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* bits(shifted) = 0x4b400000 + j, and 0x4b400000 << 23 wraps to 0 */
    return (v8f)((v8i)p + ((v8i)shifted << 23));
}

/* 2^100 · exp(d + err) for d in [-151, 0], |err| <= 2^-24·|d| (see the top).
 * k = round(d/ln 2) comes from the magic-number addition, whose low mantissa
 * bits then hold k + 100 (the magic number carries the 100); exp(r) is a
 * degree-6 polynomial, 1 + r + r^2 q(r), q fitted for the least maximum
 * relative error on |r| <= 0.36 (2^-27.5, below the degree-7 Taylor
 * polynomial's 2^-26.6 there; float32 Horner evaluation adds ~1 u: measured
 * 1.06 u at most over 2e5 points, u = 2^-24); and 2^(k + 100) is added to the
 * exponent field of exp(r) in [0.69, 1.44] as an integer: the result stays a
 * normal number (exponent >= -1 - 218 + 100), the same bits as multiplying. */
INLINE v8f exp_scaled(v8f d, v8f err) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;      /* 15 significant bits */
    const float ln2_lo = 1.428606765330187045e-06f;
    const float round_magic = 12582912.0f + 100.0f; /* 1.5·2^23 (+100): adding it rounds to an integer */
    v8f shifted = d * log2e + round_magic;
    v8f kf = shifted - round_magic;
    v8f r = d - kf * ln2_hi;
    r = r - kf * ln2_lo;
    r = r + err;
    return exp_poly_times_pow2(r, shifted);
}

/* The exact rounding error of fl(x - m) (Knuth's TwoSum on x + (-m)). */
INLINE v8f difference_error(v8f x, v8f m, v8f d) {
    v8f from_x = d + m;
    v8f from_m = d - from_x;
    return (x - (d - from_m)) - (m + from_m);
}

typedef struct {
    float max;       /* m */
    int64_t argmax;  /* a: the first index of m (set by pass 2, scaled_rest) */
    int bad;         /* a NaN or +inf entry, or no finite maximum */
    float min;       /* the row's minimum, NaN where the row holds a NaN (for the data checks) */
    double scale;    /* exp(x_j - m) = 2^-100 · scale · (the stored exp of x_j) (set by row_rest) */
} RowMax;

/* Pass 1: the maximum and minimum, and whether the row has a softmax. Three
 * vector operations per vector (max, min, unordered compare), two vectors per
 * iteration with their own accumulators; the first index of the maximum is
 * found by pass 2 (scaled_rest) as it goes. */
INLINE RowMax row_max(const float *x, int64_t k) {
    v8f mx0 = splat(-INFINITY), mx1 = mx0, mn0 = splat(INFINITY), mn1 = mn0;
    v8i nan = splati(0);
    int64_t i = 0;
    for (; i + 2 * W <= k; i += 2 * W) {
        v8f a = load(x + i), b = load(x + i + W);
        mx0 = max_f(a, mx0); /* a NaN in a keeps the old maximum; it is counted in nan */
        mx1 = max_f(b, mx1);
        mn0 = min_f(a, mn0);
        mn1 = min_f(b, mn1);
        nan |= unordered(a, b);
    }
    for (; i + W <= k; i += W) {
        v8f a = load(x + i);
        mx0 = max_f(a, mx0);
        mn0 = min_f(a, mn0);
        nan |= unordered(a, a);
    }
    mx0 = max_f(mx1, mx0);
    mn0 = min_f(mn1, mn0);
    RowMax out = {-INFINITY, 0, 0, INFINITY, 1.0};
    for (int l = 0; l < W; l++) {
        if (mx0[l] > out.max) out.max = mx0[l];
        if (mn0[l] < out.min) out.min = mn0[l];
    }
    int any_nan = any_lane(nan);
    for (; i < k; i++) {
        float v = x[i];
        any_nan |= v != v;
        if (v < out.min) out.min = v;
        if (v > out.max) out.max = v;
    }
    out.bad = any_nan || !(out.max < INFINITY) || !(out.max > -INFINITY);
    if (any_nan) out.min = NAN;
    return out;
}

/* The exps of one vector of x (scaled by 2^100). Entries more than ~150 below
 * the maximum (-inf included) are taken at x = x_floor, where exp is ~1e-65: no
 * float32 result can show it, and the exp above needs d >= -151. Clamping x
 * rather than d keeps TwoSum's inputs finite. x_floor = fl(m - 150) is within
 * 2^-5 of m - 150 for |m| <= 2^20 (exps_wide below covers larger maxima).
 * `clamp` = 0 where the row's minimum is known to be >= x_floor (the clamp
 * would change nothing: one vector operation of ~13 saved). */
INLINE v8f exps(v8f v, v8f m, v8f x_floor, int clamp) {
    v8f xc = clamp ? max_f(v, x_floor) : v;
    v8f d = xc - m;
    return exp_scaled(d, difference_error(xc, m, d));
}

/* exps for |m| > 2^20, where m - 150 is not representable closely: d itself is
 * clamped at -150, and the TwoSum error of clamped entries (meaningless, NaN
 * for -inf) dropped. */
INLINE v8f exps_wide(v8f v, v8f m) {
    const v8f floor = splat(-150.0f);
    v8f d = v - m;
    v8i near = d > floor;
    v8f err = (v8f)(near & (v8i)difference_error(v, m, d));
    return exp_scaled(max_f(d, floor), err);
}

#define NARROW_MAX 0x1p20f

/* 2^(100 - km) · exp(x) for x in [-279, 129] and an integer km with
 * k - km in [-219, 1] for every lane's k = round(x / ln 2), without the
 * subtraction x - m (and so without its rounding error, which exps above
 * must recover with TwoSum): `magic` = 1.5·2^23 + 100 - km, whose addition
 * rounds x·log2(e) to the integer k and leaves k + 100 - km in the low
 * mantissa bits. r = x - k ln2_hi is exact (|k| <= 402 < 2^9 and ln2_hi has
 * 15 significant bits, so k ln2_hi has at most 24; x and k ln2_hi are within
 * a factor of 2 of each other, or k = 0: Sterbenz), r - k ln2_lo rounds once
 * (<= 2^-26 absolute, |r| <= 0.35); then the polynomial of exp_scaled, and
 * 2^(k + 100 - km) added to the exponent field (a normal result: exponent
 * >= -1 - 219 + 100). The caller multiplies by exp(km ln2 - m) once per row. */
INLINE v8f exp_direct(v8f x, v8f magic) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187045e-06f;
    v8f shifted = x * log2e + magic;
    v8f kf = shifted - magic;
    v8f r = x - kf * ln2_hi;
    r = r - kf * ln2_lo;
    return exp_poly_times_pow2(r, shifted);
}

/* exp_direct of one vector, entries below x_floor = fl(m - 150) taken there
 * (as in exps: -inf included). For |m| <= DIRECT_MAX. */
INLINE v8f exps_direct(v8f v, v8f x_floor, v8f magic, int clamp) {
    return exp_direct(clamp ? max_f(v, x_floor) : v, magic);
}

/* Rows whose maximum is at most this in magnitude use exps_direct: every
 * clamped x is then in [-279, 128] (|k| <= 402). */
#define DIRECT_MAX 128.0f

/* How scaled_rest computes the exps: relative to m with TwoSum (exps), for
 * |m| > 2^20 (exps_wide), or directly (exps_direct). */
enum { EXPS_WIDE, EXPS_NARROW, EXPS_DIRECT };

/* The label side of the categorical kernels, summed during pass 2:
 * sum_j t_j (m - x_j) and sum_j t_j in float64 (where t_j = 0 the gap is taken
 * as 0, x_j replaced by m, so 0·inf never forms; a vector of zero labels, most
 * of a one-hot row, is skipped), and the labels' Range (for the data checks).
 * `nonzero` counts the vectors added to the range; scaled_rest sets
 * range.zeros from it once per row (a vector of +0.0s needs no vector work:
 * setting a flag on each one, most of a one-hot row, cost ~4% of the
 * kernel's instructions at 1000 classes, measured with callgrind). */
typedef struct {
    Acc gap, mass;
    Range range;
    int64_t nonzero;
} LabelSums;

INLINE void label_terms(LabelSums *ls, v8f xv, v8f tv, v8f m, v4d m64, int track) {
    if (any_bits(tv)) {
        if (track) {
            range_add(&ls->range, tv);
            ls->nonzero++;
        }
        xv = select_f(tv == 0.0f, m, xv);
        ls->gap.lo += half_lo(tv) * (m64 - half_lo(xv)); /* m - x is exact in float64 */
        ls->gap.hi += half_hi(tv) * (m64 - half_hi(xv));
        add_to(&ls->mass, tv);
    }
}

/* Pass 2: 2^100·S' in float64, and rm->argmax, the first index of the row's
 * maximum, whose term S' leaves out: found in this pass, by comparing each pair
 * of vectors with m until it turns up (a scan of its own ahead of the pass
 * cost 10% of a 1000-class row, measured: mostly the mispredicted exit of its
 * loop, on the row's critical path); with `e_out`, the scaled exps are stored there
 * (the maximum's own entry included); with labels `t`, their LabelSums (the
 * labels' range too where `track`). The next row (if any) is prefetched, and
 * with `next_t` the next row's labels (categorical rows of 1000 classes: 11%
 * faster, measured; the labels are read once, by this pass, and the hardware
 * prefetcher starts over at each page, about a row).
 * `mode`: how the exps are computed (EXPS_*); `km`: exps_direct's integer
 * (2^100 e^(x - m) is then stored as 2^(100 - km) e^x); `clamp`: as exps's. */
INLINE double scaled_rest(const float *x, int64_t k, RowMax *rm, float *e_out, const float *next,
                          const float *next_t, const float *t,
                          LabelSums *ls, int track, int mode, float km, int clamp) {
    const v8f m = splat(rm->max);
    const v8f x_floor = splat((float)((double)rm->max - 150.0));
    const v8f magic = splat(12582912.0f + (100.0f - km));
    const v4d m64 = half_lo(m);
    int64_t argmax = -1; /* not found yet (a row that is not bad holds m) */
    Acc acc = {{0}, {0}};
    int64_t i = 0;
    int64_t next_line = 0;
    int64_t pairs = 0;
    for (; i + 2 * W <= k; i += 2 * W) {
        v8f x0 = load(x + i), x1 = load(x + i + W);
        v8f e0 = mode == EXPS_DIRECT ? exps_direct(x0, x_floor, magic, clamp)
                 : mode == EXPS_NARROW ? exps(x0, m, x_floor, clamp) : exps_wide(x0, m);
        v8f e1 = mode == EXPS_DIRECT ? exps_direct(x1, x_floor, magic, clamp)
                 : mode == EXPS_NARROW ? exps(x1, m, x_floor, clamp) : exps_wide(x1, m);
        if (e_out) {
            store(e_out + i, e0);
            store(e_out + i + W, e1);
        }
        if (t) {
            label_terms(ls, x0, load(t + i), m, m64, track);
            label_terms(ls, x1, load(t + i + W), m, m64, track);
        }
        if (next && next_line < k) {
            __builtin_prefetch(next + next_line, 0, 3);
            if (next_t) __builtin_prefetch(next_t + next_line, 0, 3);
            next_line += 16;
        }
        if (argmax < 0) {
            unsigned hit = lane_bits(x0 == m) | lane_bits(x1 == m) << W;
            if (hit) {
                int lane = __builtin_ctz(hit);
                argmax = i + lane;
                if (lane < W) e0 = select_f(lane_index() == lane, splat(0.0f), e0);
                else e1 = select_f(lane_index() == lane - W, splat(0.0f), e1);
            }
        }
        /* pairs summed in float32 first: positive terms, so the pair's rounding
         * adds at most u = 2^-24 to S''s relative error, and it saves a third of
         * the pass's float64 work */
        add_to(&acc, e0 + e1);
        pairs++;
    }
    /* a vector of the pairs' that was all +0.0 (not added to the range) */
    if (t && track && ls->nonzero < 2 * pairs) ls->range.zeros = 1;
    for (; i < k; i += W) {
        int64_t n = k - i < W ? k - i : W;
        /* a whole vector (k = 1000: 62 pairs and one vector) needs no buffer */
        v8f xv = n == W ? load(x + i) : load_partial(x + i, n, rm->max);
        v8f e = mode == EXPS_DIRECT ? exps_direct(xv, x_floor, magic, clamp)
                : mode == EXPS_NARROW ? exps(xv, m, x_floor, clamp) : exps_wide(xv, m);
        if (e_out) store_partial(e_out + i, e, n);
        if (t) {
            v8f tv = n == W ? load(t + i) : load_partial(t + i, n, 0.0f);
            if (track) range_add(&ls->range, n == W ? tv : load_partial(t + i, n, t[i])); /* filled with a real entry */
            label_terms(ls, xv, tv, m, m64, 0);
        }
        v8i drop = lane_index() >= (int32_t)n;
        if (argmax < 0) {
            unsigned hit = lane_bits((xv == m) & ~drop); /* the filled lanes hold m too */
            if (hit) {
                argmax = i + __builtin_ctz(hit);
                drop |= lane_index() == (int32_t)(argmax - i);
            }
        }
        add_to(&acc, select_f(drop, splat(0.0f), e));
    }
    rm->argmax = argmax;
    if (next)
        for (; next_line < k; next_line += 16) {
            __builtin_prefetch(next + next_line, 0, 3);
            if (next_t) __builtin_prefetch(next_t + next_line, 0, 3);
        }
    return total(acc);
}

/* 2^100·S': scaled_rest with the exps for the row's maximum (which sets
 * rm->argmax), and rm->scale set (the stored exps, where e_out, are 2^100
 * e^(x - m) / rm->scale). */
INLINE double row_rest(const float *x, int64_t k, RowMax *rm, float *e_out, const float *next,
                       const float *next_t, const float *t,
                       LabelSums *ls, int track) {
    /* The loss alone: exps_direct. With a gradient, the TwoSum path: its exps of
     * entries near the maximum are e^d, d in [-0.35, 0], in [0.7, 1] where a
     * float32 rounds them to 2^-25 (exps_direct's can land in [1, 1.42], 2^-24),
     * which the maximum's entry of a soft-label gradient, a difference of two
     * nearly equal terms, would amplify. */
    /* Rows whose every entry is within 150 of the maximum (most) need no clamp:
     * the loops are compiled for both cases. */
    const int clamp = !(rm->min >= (float)((double)rm->max - 150.0));
    if (!e_out && fabsf(rm->max) <= DIRECT_MAX) {
        /* km = round(m·log2 e); the exps carry 2^(100 - km) e^x = 2^100 e^(x - m) / exp(km ln2 - m) */
        float km = rintf(rm->max * 1.44269504088896341f);
        rm->scale = exp((double)km * 0.6931471805599453 - (double)rm->max);
        double rest = clamp ? scaled_rest(x, k, rm, e_out, next, next_t, t, ls, track, EXPS_DIRECT, km, 1)
                            : scaled_rest(x, k, rm, e_out, next, next_t, t, ls, track, EXPS_DIRECT, km, 0);
        return rest * rm->scale;
    }
    /* The next row's labels (next_t) are prefetched on the path above only: with a
     * gradient the prefetch measured 4-8% slower (the gradient's own stream of
     * stores is then the one that needs the memory), and rows with |m| > 128 are rare. */
    (void)next_t;
    rm->scale = 1.0;
    if (fabsf(rm->max) <= NARROW_MAX)
        return clamp ? scaled_rest(x, k, rm, e_out, next, NULL, t, ls, track, EXPS_NARROW, 0.0f, 1)
                     : scaled_rest(x, k, rm, e_out, next, NULL, t, ls, track, EXPS_NARROW, 0.0f, 0);
    return scaled_rest(x, k, rm, e_out, next, NULL, t, ls, track, EXPS_WIDE, 0.0f, 1);
}

/* bounds[2r], bounds[2r + 1] <- the row's minimum (NaN if it holds a NaN) and maximum */
INLINE void put_bounds(float *bounds, int64_t r, RowMax rm) {
    if (bounds) {
        bounds[2 * r] = rm.min;
        bounds[2 * r + 1] = rm.max;
    }
}

INLINE void fill_nan(float *g, int64_t k) {
    for (int64_t j = 0; j < k; j++) g[j] = NAN;
}

/* Pass 3: g <- c·2^-100·g - t·t_scale (t may be NULL: no label term). The
 * factor is applied as (c·2^-50)·2^-50, so that a small c (a mean over many
 * rows) stays a normal float32 number. */
INLINE void scale_exps(float *g, int64_t k, double c, const float *t, float t_scale) {
    const float c1 = (float)(c * 0x1p-50), c2 = 0x1p-50f;
    const v8f cv = splat(c1), ts = splat(t_scale);
    int64_t i = 0;
    if (t) {
        for (; i + W <= k; i += W) store(g + i, (load(g + i) * cv) * c2 - load(t + i) * ts);
        for (; i < k; i++) g[i] = (g[i] * c1) * c2 - t[i] * t_scale;
    } else {
        for (; i + W <= k; i += W) store(g + i, (load(g + i) * cv) * c2);
        for (; i < k; i++) g[i] = (g[i] * c1) * c2;
    }
}

void PL_NAME(pl_sparse_softmax_ce_rows)(const float *logits, int64_t k, const int64_t *labels, float *loss,
                                       float *grad, const float *row_scale, double scale, float *bounds,
                                       int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *x = logits + r * k;
        float *g = grad ? grad + r * k : NULL;
        int64_t label = labels[r];
        RowMax rm = row_max(x, k);
        put_bounds(bounds, r, rm);
        if (rm.bad || label < 0 || label >= k) {
            loss[r] = NAN;
            if (g) fill_nan(g, k);
            continue;
        }
        const float *next = r + 1 < row_end ? x + k : NULL;
        double rest = row_rest(x, k, &rm, g, next, NULL, NULL, NULL, 0) * TWO_M100;
        double gap = (double)rm.max - (double)x[label];
        loss[r] = (float)(gap + log1p(rest));
        if (g) {
            double s = scale * (row_scale ? (double)row_scale[r] : 1.0);
            double inv = s / (1.0 + rest);
            double e_label = (double)g[label] * rm.scale;
            scale_exps(g, k, inv * rm.scale, NULL, 0.0f);
            if (label == rm.argmax) {
                g[label] = (float)(-rest * inv); /* p - 1 = -S'/(1 + S'), no cancellation */
            } else {
                g[rm.argmax] = (float)inv;
                g[label] = (float)(e_label * TWO_M100 * inv - s); /* p <= 1/2 here */
            }
        }
    }
}

/* The labels' range over a whole row (as Range; see range_put). */
INLINE void put_row_range(float *out, const float *t, int64_t k) {
    Range range = range_start();
    int64_t i = 0;
    for (; i + W <= k; i += W) range_add(&range, load(t + i));
    if (i < k) range_add(&range, load_partial(t + i, k - i, t[i]));
    range_put(out, range);
}

/* Dense labels: loss = sum_j t_j (m - x_j) + T log1p(S'), T = sum_j t_j (a zero
 * label on a -inf logit adds 0), the label sums taken in pass 2. Gradient:
 * s (T p_j - t_j), with p_j = e_j / (1 + S') and, at the maximum,
 * T p_a - t_a = (T - t_a) - T S'/(1 + S').
 * label_bounds (may be NULL; 2 floats per row): each row's label range (range_put). */
void PL_NAME(pl_softmax_ce_rows)(const float *logits, const float *labels, int64_t k, float *loss, float *grad,
                                const float *row_scale, double scale, float *bounds, float *label_bounds,
                                int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *x = logits + r * k;
        const float *t = labels + r * k;
        float *g = grad ? grad + r * k : NULL;
        RowMax rm = row_max(x, k);
        put_bounds(bounds, r, rm);
        if (rm.bad) {
            loss[r] = NAN;
            if (g) fill_nan(g, k);
            if (label_bounds) put_row_range(label_bounds + 2 * r, t, k);
            continue;
        }
        const float *next = r + 1 < row_end ? x + k : NULL, *next_t = next ? t + k : NULL;
        LabelSums ls = {{{0}, {0}}, {{0}, {0}}, range_start()};
        double rest = (label_bounds ? row_rest(x, k, &rm, g, next, next_t, t, &ls, 1)
                                    : row_rest(x, k, &rm, g, next, next_t, t, &ls, 0)) * TWO_M100;
        if (label_bounds) range_put(label_bounds + 2 * r, ls.range);
        double gap = total(ls.gap), mass = total(ls.mass);
        loss[r] = (float)(gap + mass * log1p(rest));
        if (g) {
            double s = scale * (row_scale ? (double)row_scale[r] : 1.0);
            double inv = s / (1.0 + rest);
            scale_exps(g, k, inv * mass * rm.scale, t, (float)s);
            int64_t a = rm.argmax;
            g[a] = (float)(s * (mass - (double)t[a]) - mass * rest * inv);
        }
    }
}

INLINE double power(double base, double gamma) {
    if (gamma == 2.0) return base * base;
    if (gamma == 1.0) return base;
    if (gamma == 0.0) return 1.0;
    if (gamma == 0.5) return sqrt(base);
    return pow(base, gamma);
}

/* Adds alpha_j (1 - p_j)^gamma t_j (-log p_j) of 8 entries off the maximum to acc,
 * in float64: -log p_j = lse - (x_j - m) and p_j = e^(x_j - m) / total. `alpha`
 * holds the 8 per-class weights, or is NULL for the single weight `alpha0`. A zero
 * label adds 0 (also on a -inf logit, where -log p is inf). */
INLINE void focal_block(Acc *acc, v8f xv, v8f tv, const double *alpha, double alpha0, v4d m64, v4d lse64,
                        v4d inv_total, double gamma) {
    const v4d floor = splat_d(-700.0);
    v4d halves[2];
    for (int h = 0; h < 2; h++) {
        v4d x64 = h ? half_hi(xv) : half_lo(xv), t64 = h ? half_hi(tv) : half_lo(tv);
        v4d a64 = splat_d(alpha0);
        if (alpha) memcpy(&a64, alpha + 4 * h, sizeof a64);
        v4d d = x64 - m64; /* exact: a difference of two float32 numbers */
        v4d nll = lse64 - d;
        v4d e = exp_pd(select_d(d > floor, d, floor));
        v4d w = power_pd(1.0 - e * inv_total, gamma);
        halves[h] = select_d(t64 != 0.0, a64 * w * t64 * nll, splat_d(0.0));
    }
    acc->lo += halves[0];
    acc->hi += halves[1];
}

/* Categorical focal cross-entropy from logits:
 * sum_j alpha_j (1 - p_j)^gamma t_j (-log p_j), in float64 per nonzero label:
 * -log p_j = (m - x_j) + log1p(S'), and 1 - p_j = 1 - e_j/(1 + S') (p_j <= 1/2
 * off the maximum) or S'/(1 + S') at the maximum: no 1 - (something near 1).
 * `alpha` is one value (n_alpha = 1) or one per class (n_alpha = k). */
void PL_NAME(pl_focal_softmax_ce_rows)(const float *logits, const float *labels, int64_t k, const double *alpha,
                                      int64_t n_alpha, double gamma, float *loss, float *bounds,
                                      float *label_bounds, int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *x = logits + r * k;
        const float *t = labels + r * k;
        RowMax rm = row_max(x, k);
        put_bounds(bounds, r, rm);
        if (label_bounds) put_row_range(label_bounds + 2 * r, t, k);
        if (rm.bad) {
            loss[r] = NAN;
            continue;
        }
        const float *next = r + 1 < row_end ? x + k : NULL;
        double rest = row_rest(x, k, &rm, NULL, next, next ? t + k : NULL, NULL, NULL, 0) * TWO_M100;
        double lse = log1p(rest), denominator = 1.0 + rest, m = (double)rm.max;
        /* Vector lanes: every entry but the maximum's, whose 1 - p = S'/(1 + S')
         * (no cancellation) is added on its own. */
        const v4d m64 = splat_d(m), lse64 = splat_d(lse), inv_total = splat_d(1.0 / denominator);
        Acc acc = {{0}, {0}};
        const int64_t a_block = rm.argmax - rm.argmax % W;
        for (int64_t i = 0; i < k; i += W) {
            int64_t n = k - i < W ? k - i : W;
            if (n == W && i != a_block) {
                v8f tv = load(t + i);
                /* A vector of zero labels (most of a one-hot row) would add +0.0 in every
                 * lane: skipped, which leaves the same sum (NaN labels compare unequal). */
                if (!any_lane(tv != splat(0.0f))) continue;
                const double *a = n_alpha == 1 ? NULL : alpha + i;
                focal_block(&acc, load(x + i), tv, a, alpha[0], m64, lse64, inv_total, gamma);
                continue;
            }
            /* the tail, or the maximum's block: through buffers, the maximum left out */
            float xb[W], tb[W];
            double ab[W];
            for (int l = 0; l < W; l++) {
                int64_t j = i + l;
                int keep = l < n && j != rm.argmax;
                xb[l] = keep ? x[j] : rm.max;
                tb[l] = keep ? t[j] : 0.0f;
                ab[l] = keep ? alpha[n_alpha == 1 ? 0 : j] : 0.0;
            }
            focal_block(&acc, load(xb), load(tb), ab, 0.0, m64, lse64, inv_total, gamma);
        }
        double sum = total(acc);
        double t_top = (double)t[rm.argmax];
        if (t_top != 0.0)
            sum += alpha[n_alpha == 1 ? 0 : rm.argmax] * power(rest / denominator, gamma) * t_top * lse;
        loss[r] = (float)sum;
    }
}

/* Clip -log p to [-log hi, -log lo] as Keras clips p to [lo, hi]; NaN stays NaN. */
INLINE double clip_nll(double v, double nll_hi, double nll_lo) {
    if (v < nll_hi) return nll_hi;
    if (v > nll_lo) return nll_lo;
    return v;
}

/* Sparse cross-entropy from probabilities (probloss._numerics.neg_log_picked):
 * picked = y_l and rest = the sum without it (float64, not sum - picked);
 * p >= 1/2: log1p(rest/picked), else -log(clip(picked/(picked + rest))).
 * bounds (may be NULL; 2 floats per row): each row's range of y (range_put). */
void PL_NAME(pl_sparse_normalized_ce_rows)(const float *probs, int64_t k, const int64_t *labels, double lo, double hi,
                                           float *loss, float *bounds, int64_t row_begin, int64_t row_end) {
    const double nll_hi = -log1p(-(1.0 - hi)), nll_lo = -log(lo);
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *y = probs + r * k;
        int64_t label = labels[r];
        if (label < 0 || label >= k) {
            loss[r] = NAN;
            if (bounds) put_row_range(bounds + 2 * r, y, k);
            continue;
        }
        const int64_t l_block = label - label % W;
        Acc acc0 = {{0}, {0}}, acc1 = {{0}, {0}};
        Range range = range_start();
        int64_t i = 0;
        for (; i + 2 * W <= k; i += 2 * W) {
            v8f v0 = load(y + i), v1 = load(y + i + W);
            if (bounds) {
                range_add(&range, v0);
                range_add(&range, v1);
            }
            if (i == l_block) v0 = select_f(lane_index() == (int32_t)(label - i), splat(0.0f), v0);
            if (i + W == l_block) v1 = select_f(lane_index() == (int32_t)(label - i - W), splat(0.0f), v1);
            add_to(&acc0, v0);
            add_to(&acc1, v1);
        }
        for (; i < k; i += W) {
            int64_t n = k - i < W ? k - i : W;
            if (bounds) range_add(&range, load_partial(y + i, n, y[i]));
            v8f v = load_partial(y + i, n, 0.0f);
            if (i == l_block) v = select_f(lane_index() == (int32_t)(label - i), splat(0.0f), v);
            add_to(&acc0, v);
        }
        if (bounds) range_put(bounds + 2 * r, range);
        double rest = total(acc0) + total(acc1);
        double picked = (double)y[label];
        double v;
        if (picked >= rest) {
            v = clip_nll(log1p(rest / picked), nll_hi, nll_lo);
        } else {
            double p = picked / (picked + rest);
            v = -log(p < lo ? lo : (p > hi ? hi : p));
        }
        loss[r] = (float)v;
    }
}

/* A probability row's sum (the pairwise float32 lanes, then float64) and its range of bits. */
INLINE double sum_and_range(const float *y, int64_t k, Range *range) {
    Acc sum_acc = {{0}, {0}};
    *range = range_start();
    int64_t i = 0;
    for (; i + W <= k; i += W) {
        v8f v = load(y + i);
        range_add(range, v);
        add_to(&sum_acc, v);
    }
    if (i < k) {
        range_add(range, load_partial(y + i, k - i, y[i]));
        add_to(&sum_acc, load_partial(y + i, k - i, 0.0f));
    }
    return total(sum_acc);
}

/* Categorical cross-entropy from probabilities (probloss._numerics.neg_log_normalized):
 * sum_j t_j -log(clip(y_j / total, lo, hi)), all in float64. The generic kernel
 * takes -log p of a probability near 1 as log1p(rest / max) because float32
 * cannot resolve it; in float64 -log p has an absolute error ~2^-53 while the
 * clipped loss is >= -log(hi) ~ 2^-23: 2^-30 relative, invisible in float32.
 * Pass 1: the total (float64) and the row's Range, which also tells whether the
 * row holds a negative (-0.0 included), NaN or infinite entry; such rows, and
 * rows summing to 0, are left NaN for the caller. Pass 2 (from cache): the sum,
 * skipping vectors of zero labels (most of a one-hot row), and the labels' range.
 * bounds, label_bounds (may be NULL; 2 floats per row): the rows' ranges of y
 * and t (range_put). */
void PL_NAME(pl_normalized_ce_rows)(const float *probs, const float *labels, int64_t k, double lo, double hi,
                                    float *loss, float *bounds, float *label_bounds, int64_t row_begin,
                                    int64_t row_end) {
    const v4d lo64 = splat_d(lo), hi64 = splat_d(hi);
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *y = probs + r * k;
        const float *t = labels + r * k;
        Range range;
        double sum = sum_and_range(y, k, &range);
        int64_t i;
        if (bounds) range_put(bounds + 2 * r, range);
        if (range_high(range) >= FINITE_LIMIT || !(sum > 0.0)) { /* a zero row has no distribution */
            loss[r] = NAN;
            if (label_bounds) put_row_range(label_bounds + 2 * r, t, k);
            continue;
        }
        const v4d inv = splat_d(1.0 / sum);
        Acc acc = {{0}, {0}};
        Range t_range = range_start();
        for (i = 0; i < k; i += W) {
            int64_t n = k - i < W ? k - i : W;
            v8f tv = n == W ? load(t + i) : load_partial(t + i, n, 0.0f);
            if (!any_bits(tv)) { /* zero labels add nothing, and their range is known */
                t_range.zeros = 1;
                continue;
            }
            if (label_bounds) range_add(&t_range, n == W ? tv : load_partial(t + i, n, t[i]));
            v8f v = n == W ? load(y + i) : load_partial(y + i, n, 1.0f);
            for (int h = 0; h < 2; h++) {
                v4d p = (h ? half_hi(v) : half_lo(v)) * inv;
                p = select_d(p < lo64, lo64, select_d(p > hi64, hi64, p));
                v4d term = (h ? half_hi(tv) : half_lo(tv)) * log_pd(p);
                if (h) acc.hi -= term; else acc.lo -= term;
            }
        }
        if (label_bounds) range_put(label_bounds + 2 * r, t_range);
        loss[r] = (float)total(acc);
    }
}

/* The slope of clip(p, lo, hi) as JAX's autodiff of minimum(maximum(p, lo), hi)
 * takes it (the generic kernel's clip): 1 inside, 1/2 at a bound, 0 outside. */
INLINE v4d clip_slope_pd(v4d p, v4d lo, v4d hi) {
    const v4d one = splat_d(1.0), half = splat_d(0.5), zero = splat_d(0.0);
    v4d above = select_d(p > lo, one, select_d(p == lo, half, zero));
    v4d below = select_d(p < hi, one, select_d(p == hi, half, zero));
    return above * below;
}

INLINE v8f join_halves(v4d lo, v4d hi) {
    v4f a = __builtin_convertvector(lo, v4f), b = __builtin_convertvector(hi, v4f);
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7);
}

/* pl_normalized_ce_rows's loss (the same operations, so the same bits) and its
 * gradient with respect to the probabilities, for JAX's CPU path:
 *
 *   d loss / d y_k = M/S - w_k/y_k,  w = t·slope(clip at p = y/S), M = sum_j w_j,
 *
 * in float64 and rounded once (w_k = 0 gives M/S, also where y_k = 0). At a
 * maximum m above half the sum (a unique one, y_a = m) the generic kernel takes
 * -log p_a as log1p(rest/m), rest the sum of the other entries, whose slope
 * there is (M - w_a)/S - w_a·rest/(m·S), the same number without the
 * cancellation of M/S - w_a/m when p_a is near 1: rest is summed on its own
 * (S - m would carry S's rounding, relative to rest). Pass 1 and 2 are those
 * of pl_normalized_ce_rows (M taken with the loss, from the vectors of non-zero
 * labels); pass 3 writes the gradient, a splat of M/S for a vector of zero
 * labels (most of a one-hot row). Rows left to the caller (NaN loss) get a
 * NaN gradient. */
void PL_NAME(pl_normalized_ce_grad_rows)(const float *probs, const float *labels, int64_t k, double lo, double hi,
                                         float *loss, float *grad, int64_t row_begin, int64_t row_end) {
    const v4d lo64 = splat_d(lo), hi64 = splat_d(hi);
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *y = probs + r * k;
        const float *t = labels + r * k;
        float *g = grad + r * k;
        Range range;
        double sum = sum_and_range(y, k, &range);
        int64_t i;
        uint32_t top_bits = range_high(range);
        if (top_bits >= FINITE_LIMIT || !(sum > 0.0)) {
            loss[r] = NAN;
            for (i = 0; i < k; i++) g[i] = NAN;
            continue;
        }
        const double inv = 1.0 / sum;
        Acc acc = {{0}, {0}}, m_acc = {{0}, {0}};
        for (i = 0; i < k; i += W) {
            int64_t n = k - i < W ? k - i : W;
            v8f tv = n == W ? load(t + i) : load_partial(t + i, n, 0.0f);
            if (!any_bits(tv)) continue;
            v8f v = n == W ? load(y + i) : load_partial(y + i, n, 1.0f);
            for (int h = 0; h < 2; h++) {
                v4d p = (h ? half_hi(v) : half_lo(v)) * inv;
                v4d th = h ? half_hi(tv) : half_lo(tv);
                v4d w = th * clip_slope_pd(p, lo64, hi64);
                p = select_d(p < lo64, lo64, select_d(p > hi64, hi64, p));
                v4d term = th * log_pd(p);
                if (h) {
                    acc.hi -= term;
                    m_acc.hi += w;
                } else {
                    acc.lo -= term;
                    m_acc.lo += w;
                }
            }
        }
        loss[r] = (float)total(acc);
        const double big_m = total(m_acc);
        const double base = big_m * inv;
        const v4d base64 = splat_d(base);
        const v8f base32 = splat((float)base);
        for (i = 0; i < k; i += W) {
            int64_t n = k - i < W ? k - i : W;
            v8f tv = n == W ? load(t + i) : load_partial(t + i, n, 0.0f);
            v8f out = base32;
            if (any_bits(tv)) {
                v8f v = n == W ? load(y + i) : load_partial(y + i, n, 1.0f);
                v4d gh[2];
                for (int h = 0; h < 2; h++) {
                    v4d yh = h ? half_hi(v) : half_lo(v);
                    v4d w = (h ? half_hi(tv) : half_lo(tv)) * clip_slope_pd(yh * inv, lo64, hi64);
                    v4d q = select_d(w == 0.0, splat_d(0.0), w / yh); /* 0/0 where y = 0 (then w = 0) */
                    gh[h] = base64 - q;
                }
                out = join_halves(gh[0], gh[1]);
            }
            if (n == W)
                store(g + i, out);
            else
                store_partial(g + i, out, n);
        }
        float m;
        memcpy(&m, &top_bits, sizeof m);
        if (!(2.0 * (double)m > sum)) continue;
        /* a unique maximum above half the sum: its entry from rest (see above) */
        int64_t a = 0;
        while (y[a] != m) a++;
        const double p_a = (double)m * inv;
        const double slope = (p_a > lo ? 1.0 : (p_a == lo ? 0.5 : 0.0)) * (p_a < hi ? 1.0 : (p_a == hi ? 0.5 : 0.0));
        const double w_a = (double)t[a] * slope;
        if (w_a == 0.0) continue; /* then M/S, as written */
        Acc rest_acc = {{0}, {0}};
        const int64_t a_block = a - a % W;
        for (i = 0; i + W <= k; i += W) {
            v8f v = load(y + i);
            if (i == a_block) v = select_f(lane_index() == (int32_t)(a - i), splat(0.0f), v);
            add_to(&rest_acc, v);
        }
        if (i < k) {
            v8f v = load_partial(y + i, k - i, 0.0f);
            if (i == a_block) v = select_f(lane_index() == (int32_t)(a - i), splat(0.0f), v);
            add_to(&rest_acc, v);
        }
        const double rest = total(rest_acc);
        g[a] = (float)(((big_m - w_a) - w_a * (rest / (double)m)) * inv);
    }
}
