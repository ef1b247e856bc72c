/* pl_math.h: branch-free exp, log and log1p that gcc auto-vectorises at -O3.
 *
 * Why our own: libm's scalar exp/log stop the vectoriser (glibc's vector
 * versions are declared only under -ffast-math and its vector log1p needs
 * glibc >= 2.35, newer than manylinux allows). Every function here is a
 * `static inline` of plain arithmetic, integer bit tricks (through memcpy,
 * which compiles to a register move) and ternaries that become blends, so a
 * loop over contiguous arrays that calls them vectorises (check with
 * -fopt-info-vec). They never set errno and never trap.
 *
 * C API (x is the argument; "ulps" are of the function's own type, measured
 * against glibc's double (for the float functions) or long double (for the
 * double ones) over the sweeps in scripts/native_math_ulps.c, which prints
 * these figures; rerun it after any change here):
 *
 *   float  pl_expf(float x)     e^x. Max error 0.94 ulp over every float in
 *                               [-110, 89] (exhaustive, subnormal results
 *                               included); 0 below -110, +inf above 88.73,
 *                               NaN -> NaN.
 *   float  pl_log1pf(float x)   log(1 + x) for x >= -1. Max error 0.87 ulp over
 *                               every float in [-1, 2^40] (exhaustive);
 *                               -1 -> -inf, x < -1 -> NaN, +inf -> +inf.
 *   float  pl_logf(float x)     log(x) for x >= 0. Max error 0.86 ulp over every
 *                               positive float, subnormals included (exhaustive);
 *                               0 -> -inf, x < 0 -> NaN, +inf -> +inf.
 *   double pl_exp(double x)     e^x. Max error 0.85 ulp measured (2.5e6 random
 *                               points in [-745, 709.7]); 0 below -746.
 *   double pl_log1p(double x)   log(1 + x), x >= -1. Max error 0.79 ulp measured
 *                               (2e6 random points, log-uniform magnitudes).
 *   double pl_log(double x)     log(x), x >= 0. Max error 0.81 ulp measured (2e6
 *                               random points, subnormal to 2^1000).
 *
 * Method (the same in both precisions, so one proof covers both):
 *   exp:  x = k·ln2 + r with k = round(x/ln2) (by the 1.5·2^p "magic number"
 *         addition, which needs no float->int conversion), ln2 split so that
 *         k·ln2_hi is exact, |r| <= ln2/2; e^r by its Taylor polynomial, whose
 *         truncation error is below r^(n+1)/(n+1)! (n = 7 in float: 5.2e-9,
 *         0.09 ulp; n = 13 in double: 4e-18, 0.04 ulp); scaled by 2^k as two
 *         factors 2^(k/2)·2^(k-k/2) so that subnormal results come out right.
 *   log1p: u = 1 + x rounded, c = the exact rounding error (Fast2Sum), u =
 *         2^k·f with f in [sqrt(2)/2, sqrt(2)); log f = 2·atanh(s) with
 *         s = (f-1)/(f+1), |s| <= 0.1716, evaluated as fdlibm does
 *         (t - (hfsq - s·(hfsq + R))) with R the Taylor series of
 *         2·atanh(s)/s - 2 cut after N terms: relative truncation error below
 *         s^(2N+2)/(2N+3)/(1-s^2): N = 4 in float (2e-9), N = 10 in double
 *         (6e-19); plus c/u, the first-order correction for the rounding of u.
 *   log:  the same with c = 0.
 *
 * The float functions compute in float (16 lanes per AVX-512 register, 8 per
 * AVX2); use the double ones where the loss needs float64 (focal, Poisson, KL).
 * With FMA contraction (-ffp-contract=fast, gcc's default in GNU C mode, set
 * explicitly by setup.py) the AVX2/AVX-512 clones and the baseline clone may
 * differ in the last bit; within one machine every result is deterministic.
 */
#ifndef PL_MATH_H
#define PL_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#ifndef restrict
#define restrict __restrict
#endif
#define PL_INLINE static __inline
#define PL_NOINLINE __declspec(noinline)
#else
#define PL_INLINE static inline __attribute__((always_inline))
#define PL_NOINLINE __attribute__((noinline))
#endif

PL_INLINE uint32_t pl_bits_f(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
PL_INLINE float pl_float_b(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
PL_INLINE uint64_t pl_bits_d(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
PL_INLINE double pl_double_b(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

/* ------------------------------------------------------------------ float */

/* e^r for the reduced argument r of the float exps below (|r| <= ln2/2 plus a
 * rounding): the Taylor polynomial of degree 7 by Horner's scheme, shared so
 * that every float exp gives the same value at the same r. */
PL_INLINE float pl_expf_taylor(float r)
{
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p;
}

PL_INLINE float pl_expf(float x)
{
    /* Clamp so that k stays in [-160, 129]; NaN passes through (comparisons false). */
    float xc = x != x ? 0.0f : x;
    xc = xc < -110.0f ? -110.0f : xc;
    xc = xc > 89.0f ? 89.0f : xc;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float kf = (xc * 1.44269504088896341f + magic) - magic;
    /* ln2 = hi + lo, hi with 9 significant bits: kf * hi is exact for |k| < 2^15. */
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = pl_expf_taylor(r);
    int32_t k = (int32_t)kf; /* exact: kf is an integer in [-160, 129] (NaN: any value) */
    int32_t k1 = k / 2;
    int32_t k2 = k - k1;
    float s1 = pl_float_b((uint32_t)(k1 + 127) << 23);
    float s2 = pl_float_b((uint32_t)(k2 + 127) << 23);
    float result = (p * s1) * s2;
    return x != x ? x : result;
}

/* log(f) for f = 1 + t in [sqrt(2)/2, sqrt(2)), plus the small term `extra`
 * (k*ln2_lo + c/u) and k*ln2_hi, in fdlibm's order of summation. */
PL_INLINE float pl_logf_reduced(float f, float kf, float extra)
{
    float t = f - 1.0f;
    float s = t / (2.0f + t);
    float z = s * s;
    float R = 2.0f / 9.0f;
    R = R * z + 2.0f / 7.0f;
    R = R * z + 2.0f / 5.0f;
    R = R * z + 2.0f / 3.0f;
    R = R * z;
    float hfsq = 0.5f * t * t;
    return kf * 6.9313812256e-01f - ((hfsq - (s * (hfsq + R) + (kf * 9.0580006145e-06f + extra))) - t);
}

/* Split a positive normal float u into (k, f): u = 2^k f, f in [sqrt(2)/2, sqrt(2)). */
#define PL_SPLITF(u, kf, f)                                                      \
    do {                                                                         \
        uint32_t iu_ = pl_bits_f(u) + (0x3f800000u - 0x3f3504f3u);               \
        (kf) = (float)((int32_t)(iu_ >> 23) - 127);                              \
        (f) = pl_float_b((iu_ & 0x007fffffu) + 0x3f3504f3u);                     \
    } while (0)

PL_INLINE float pl_log1pf(float x)
{
    float u = 1.0f + x;
    /* The exact error of 1 + x (Fast2Sum, ordered by magnitude). */
    float c = x > 1.0f ? 1.0f - (u - x) : x - (u - 1.0f);
    float uu = u > 0.0f && u < INFINITY ? u : 1.0f; /* keep the bit tricks on a positive normal */
    float kf, f;
    PL_SPLITF(uu, kf, f);
    float result = pl_logf_reduced(f, kf, c / uu);
    result = x == -1.0f ? -INFINITY : result;
    result = x < -1.0f ? NAN : result;
    result = x == INFINITY ? x : result;
    return x != x ? x : result;
}

PL_INLINE float pl_logf(float x)
{
    int sub = x < 1.17549435e-38f; /* subnormal (or 0, negative): scale up by 2^25 */
    float xs = sub ? x * 33554432.0f : x;
    float xx = xs > 0.0f && xs < INFINITY ? xs : 1.0f;
    float kf, f;
    PL_SPLITF(xx, kf, f);
    kf = sub ? kf - 25.0f : kf;
    float result = pl_logf_reduced(f, kf, 0.0f);
    result = x == 0.0f ? -INFINITY : result;
    result = x < 0.0f ? NAN : result;
    result = x == INFINITY ? x : result;
    return x != x ? x : result;
}

/* The pieces of e^xc (xc <= 0) shared by the exps that differ only in e^r's
 * polynomial (pl_expf_taylor here, binary_impl.h's degree-6 fit): the reduction
 * xc = k·ln2 + r (|r| <= ln2/2 plus a rounding; the first step is exact, ln2's
 * high part has 9 bits), returning r and km = xc·log2(e) + 1.5·2^23, whose low
 * mantissa bits hold k. */
PL_INLINE float pl_expf_reduce(float xc, float *km_out)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float km = xc * 1.44269504088896341f + magic;
    float kf = km - magic;
    float r = xc - kf * 0.693359375f;
    *km_out = km;
    return r - kf * -2.12194440e-4f;
}

/* p·2^k for k in [-159, 0] (from pl_expf_reduce's km) in two normal steps, so that
 * a subnormal result comes out right. */
PL_INLINE float pl_expf_scale(float p, float km)
{
    int32_t k = (int32_t)(pl_bits_f(km) - 0x4B400000u); /* no conversion */
    int32_t k1 = k > -126 ? k : -126;                  /* 2^k1 normal, 2^(k-k1) in [2^-33, 1] */
    float s1 = pl_float_b((uint32_t)(k1 + 127) << 23);
    float s2 = pl_float_b((uint32_t)(k - k1 + 127) << 23);
    return (p * s1) * s2;
}

/* p·2^k for p in [0.70, 1.42] and k in [-126, 0]: k added to p's exponent field,
 * exact when p·2^k is a normal float (k is bits(km) - bits(magic), and
 * bits(magic) << 23 wraps to 0: k << 23 = bits(km) << 23). */
PL_INLINE float pl_expf_scale_normal(float p, float km)
{
    return pl_float_b(pl_bits_f(p) + (pl_bits_f(km) << 23));
}

/* e^-a for a >= 0 (NaN: unspecified, finite): pl_expf without the overflow and
 * NaN handling, for the e = exp(-|x|) of the logit losses. Same error as pl_expf. */
PL_INLINE float pl_expf_neg(float a)
{
    float km;
    float r = pl_expf_reduce(a < 110.0f ? -a : -110.0f, &km); /* k in [-159, 0] */
    return pl_expf_scale(pl_expf_taylor(r), km);
}

/* ----------------------------------------------------------------- double */

/* 2^k for an integer-valued double k in [-1022, 1023], without float->int conversion. */
PL_INLINE double pl_pow2_d(double k)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    uint64_t bits = pl_bits_d(k + magic) - pl_bits_d(magic); /* k, two's complement */
    return pl_double_b((bits + 1023u) << 52);
}

PL_INLINE double pl_exp(double x)
{
    double xc = x != x ? 0.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    xc = xc > 710.0 ? 710.0 : xc;
    const double magic = 6755399441055744.0;
    double kf = (xc * 1.4426950408889634 + magic) - magic;
    /* ln2 = hi + lo, hi with 32 significant bits: kf * hi is exact for |k| < 2^20. */
    double r = xc - kf * 6.93147180369123816490e-01;
    r = r - kf * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;                /* 1/13! */
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
    double k1 = (kf * 0.5 + magic) - magic; /* any split into two in-range halves */
    double k2 = kf - k1;
    double result = (p * pl_pow2_d(k1)) * pl_pow2_d(k2);
    return x != x ? x : result;
}

PL_INLINE double pl_log_reduced(double f, double kf, double extra)
{
    double t = f - 1.0;
    double s = t / (2.0 + t);
    double z = s * s;
    double R = 2.0 / 23.0;
    R = R * z + 2.0 / 21.0;
    R = R * z + 2.0 / 19.0;
    R = R * z + 2.0 / 17.0;
    R = R * z + 2.0 / 15.0;
    R = R * z + 2.0 / 13.0;
    R = R * z + 2.0 / 11.0;
    R = R * z + 2.0 / 9.0;
    R = R * z + 2.0 / 7.0;
    R = R * z + 2.0 / 5.0;
    R = R * z + 2.0 / 3.0;
    R = R * z;
    double hfsq = 0.5 * t * t;
    return kf * 6.93147180369123816490e-01
           - ((hfsq - (s * (hfsq + R) + (kf * 1.90821492927058770002e-10 + extra))) - t);
}

/* Split a positive normal double u into (k, f): u = 2^k f, f in [sqrt(2)/2, sqrt(2)).
 * k is made a double through the exponent field of 2^52 (no int64->double conversion). */
#define PL_SPLIT(u, kf, f)                                                                   \
    do {                                                                                     \
        uint64_t iu_ = pl_bits_d(u) + (0x3ff0000000000000ull - 0x3fe6a09e667f3bcdull);       \
        (kf) = pl_double_b(0x4330000000000000ull | (iu_ >> 52)) - (4503599627370496.0 + 1023.0); \
        (f) = pl_double_b((iu_ & 0x000fffffffffffffull) + 0x3fe6a09e667f3bcdull);           \
    } while (0)

PL_INLINE double pl_log1p(double x)
{
    double u = 1.0 + x;
    double c = x > 1.0 ? 1.0 - (u - x) : x - (u - 1.0);
    double uu = u > 0.0 && u < (double)INFINITY ? u : 1.0;
    double kf, f;
    PL_SPLIT(uu, kf, f);
    double result = pl_log_reduced(f, kf, c / uu);
    result = x == -1.0 ? -(double)INFINITY : result;
    result = x < -1.0 ? (double)NAN : result;
    result = x == (double)INFINITY ? x : result;
    return x != x ? x : result;
}

PL_INLINE double pl_log(double x)
{
    int sub = x < 2.2250738585072014e-308;
    double xs = sub ? x * 18014398509481984.0 : x; /* 2^54 */
    double xx = xs > 0.0 && xs < (double)INFINITY ? xs : 1.0;
    double kf, f;
    PL_SPLIT(xx, kf, f);
    kf = sub ? kf - 54.0 : kf;
    double result = pl_log_reduced(f, kf, 0.0);
    result = x == 0.0 ? -(double)INFINITY : result;
    result = x < 0.0 ? (double)NAN : result;
    result = x == (double)INFINITY ? x : result;
    return x != x ? x : result;
}

#endif /* PL_MATH_H */
