/* pl_parallel.h: fixed-block multi-threading and CPU dispatch for the kernels.
 *
 * Determinism rule: work is cut into tasks that depend on the data's shape only
 * (never on the thread count), each task writes its own result slot, and slots
 * are combined afterwards by one thread in a fixed order. So every result is
 * bit-identical for 1, 2, 3 or 64 threads.
 *
 * C API:
 *
 *   PL_CLONES            put before a function definition holding a hot loop:
 *                        gcc (and clang >= 14) on x86-64 ELF compile it three
 *                        times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA)
 *                        and the baseline, and pick one at load time (ifunc,
 *                        so glibc only); elsewhere it expands to nothing (one
 *                        portable baseline build).
 *
 *   PL_PARALLEL_FOR(nthreads, work, ntasks, i) { body using i }
 *                        runs body for i = 0 .. ntasks-1 (i is declared by the
 *                        macro, type Py_ssize_t-compatible long long), shared
 *                        dynamically (one task at a time, to whichever thread is
 *                        free) among at most `nthreads` OpenMP threads, and
 *                        serially when `work` (elements in all) is below
 *                        PL_MIN_PARALLEL_WORK or OpenMP is unavailable. The body
 *                        must not touch Python objects: call it between
 *                        Py_BEGIN_ALLOW_THREADS / Py_END_ALLOW_THREADS.
 *
 *   pl_openmp_available()  1 when compiled with OpenMP.
 *
 * Why OpenMP (docs/design.md has the measurements): it is in gcc, clang (with
 * libomp) and MSVC; its parallel region costs a few microseconds; a compiler
 * without it builds a serial extension from the same source. Fork: GNU libgomp's
 * thread pool does not survive fork(); a child that enters a parallel region
 * after its parent used one hangs (GCC bug 52303). The Python layer therefore
 * passes nthreads = 1 in a child forked after parallel use (probloss._native.
 * threads(), tested in tests/test_native.py); a serial call (the `if` clause
 * false) does not touch the pool.
 */
#ifndef PL_PARALLEL_H
#define PL_PARALLEL_H

#include <stdlib.h> /* defines __GLIBC__ on glibc */

#ifdef _OPENMP
#include <omp.h>
#endif

/* target_clones needs ifunc: glibc on x86-64 ELF (not musl, macOS or Windows). */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && !defined(__INTEL_COMPILER) && \
    (defined(__clang__) ? (__clang_major__ >= 14) : defined(__GNUC__))
#define PL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define PL_HAVE_CLONES 1
#else
#define PL_CLONES
#endif

/* Why dynamic scheduling: with a static split, a call lasts as long as its
 * slowest thread, so one core taken by another process (or by another
 * library's spinning thread pool, as XLA's right after a call) doubles the
 * time of a 2-thread call; handed out one at a time, the tasks go to the
 * threads that run. A task is thousands of elements, so the shared counter
 * costs nothing measurable, and results do not change: each task writes its
 * own slot whichever thread runs it (the determinism rule above). */

/* Below this many elements a call runs on the calling thread only: waking the
 * pool costs more than the work. */
#define PL_MIN_PARALLEL_WORK 32768

#ifdef _OPENMP
#ifdef _MSC_VER
#define PL_PRAGMA(x) __pragma(x)
#else
#define PL_PRAGMA(x) _Pragma(#x)
#endif
#define PL_PARALLEL_FOR(nthreads, work, ntasks, i)                                          \
    PL_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(nthreads)                \
              if ((nthreads) > 1 && (work) >= PL_MIN_PARALLEL_WORK && (ntasks) > 1))     \
    for (long long i = 0; i < (long long)(ntasks); i++)
static int pl_openmp_available(void) { return 1; }
#else
#define PL_PARALLEL_FOR(nthreads, work, ntasks, i) \
    for (long long i = 0; i < (long long)(ntasks); i++)
static int pl_openmp_available(void) { return 0; }
#endif

#endif /* PL_PARALLEL_H */
