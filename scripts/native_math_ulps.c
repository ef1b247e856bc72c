/* Measure the error of src/probloss/_native/pl_math.h in ulps.
 *
 * Float functions: every float in the stated ranges, against glibc's double
 * functions (correct to < 1 double ulp, so exact at float resolution).
 * Double functions: random points (10^8 by default; the figures in pl_math.h are from `ulps 2000000`) against glibc's long double ones.
 *
 *   gcc -O2 -fno-math-errno -Isrc/probloss/_native scripts/native_math_ulps.c -lm -o /tmp/ulps && /tmp/ulps
 *
 * The figures it prints are the ones stated in pl_math.h's header comment.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pl_math.h"

static double ulp_f(double ref)
{
    float r = (float)fabs(ref);
    if (r == 0.0f || r < 0x1p-126f) return 0x1p-149;
    int e;
    frexpf(r, &e);
    return ldexp(1.0, e - 24);
}

static long double ulp_d(long double ref)
{
    double r = fabs((double)ref);
    if (r < 0x1p-1022) return 0x1p-1074L;
    int e;
    frexp(r, &e);
    return ldexpl(1.0L, e - 53);
}

typedef float (*ff)(float);
typedef double (*dd)(double);

static void sweep_f(const char *name, ff fn, dd ref, float lo, float hi)
{
    double worst = 0.0;
    float at = lo;
    uint64_t count = 0;
    for (float x = lo; x <= hi; x = nextafterf(x, INFINITY)) {
        double r = ref((double)x);
        float got = fn(x);
        if (isinf(r) || isnan(r)) {
            if (!(got == (float)r || (isnan(r) && isnan(got)))) { printf("%s(%a): %a, want %a\n", name, x, got, r); }
        } else {
            double err = fabs((double)got - r) / ulp_f(r);
            if (fabs(r) > 3.4028234663852886e38) err = isinf(got) ? 0 : 99;
            if (err > worst) { worst = err; at = x; }
        }
        count++;
        if (x == hi) break;
    }
    printf("%-10s [%g, %g] every float (%llu): max %.3f ulp at %a\n", name, lo, hi, (unsigned long long)count, worst, at);
}

static float neg_expf(float a) { return pl_expf_neg(a); }
static double neg_exp(double a) { return exp(-a); }

static double rnd(void) { return (double)random() / 2147483648.0; }

static void sweep_d(const char *name, dd fn, long double (*ref)(long double), double (*gen)(void), long n)
{
    double worst = 0.0, at = 0.0;
    for (long i = 0; i < n; i++) {
        double x = gen();
        long double r = ref(x);
        double got = fn(x);
        if (isinf((double)r)) continue;
        double err = (double)(fabsl((long double)got - r) / ulp_d(r));
        if (err > worst) { worst = err; at = x; }
    }
    printf("%-10s %ld random points: max %.3f ulp at %a\n", name, n, worst, at);
}

static double gen_exp(void) { return -745.0 + rnd() * (709.7 + 745.0); }
static double gen_exp_small(void) { return -40.0 + rnd() * 80.0; }
static double gen_log1p(void) { double m = ldexp(1.0, -(int)(rnd() * 60)) * (1 + rnd()); return rnd() < 0.5 ? -fmin(m, 1.0) * rnd() : m * 1e6 * rnd(); }
static double gen_log(void) { return ldexp(1.0 + rnd(), (int)(rnd() * 2000) - 1000); }
static double gen_log_near1(void) { return 0.5 + rnd() * 1.5; }

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000000L;
    if (argc > 2) { /* quick: e^-a only */
        sweep_f("pl_expf_neg", neg_expf, neg_exp, 0.0f, 110.0f);
        return 0;
    }
    sweep_f("pl_expf", pl_expf, exp, -110.0f, 89.0f);
    sweep_f("pl_log1pf", pl_log1pf, log1p, -1.0f, 0x1p40f);
    sweep_f("pl_logf", pl_logf, log, 0x1p-149f, 3.4028234663852886e38f);
    sweep_f("pl_expf_neg", neg_expf, neg_exp, 0.0f, 110.0f);
    sweep_d("pl_exp", pl_exp, expl, gen_exp, n);
    sweep_d("pl_exp", pl_exp, expl, gen_exp_small, n / 4);
    sweep_d("pl_log1p", pl_log1p, log1pl, gen_log1p, n);
    sweep_d("pl_log", pl_log, logl, gen_log, n / 2);
    sweep_d("pl_log", pl_log, logl, gen_log_near1, n / 2);
    /* special values */
    printf("specials: expf(-inf)=%g expf(inf)=%g expf(nan)=%g log1pf(-1)=%g log1pf(inf)=%g logf(0)=%g logf(-1)=%g\n",
           pl_expf(-INFINITY), pl_expf(INFINITY), pl_expf(NAN), pl_log1pf(-1.0f), pl_log1pf(INFINITY), pl_logf(0.0f), pl_logf(-1.0f));
    printf("specials: exp(-inf)=%g exp(inf)=%g exp(nan)=%g log1p(-1)=%g log1p(inf)=%g log(0)=%g log(-1)=%g log(5e-324)=%.17g\n",
           pl_exp(-INFINITY), pl_exp(INFINITY), pl_exp(NAN), pl_log1p(-1.0), pl_log1p(INFINITY), pl_log(0.0), pl_log(-1.0), pl_log(5e-324));
    return 0;
}
