/* pl_pool.h: a task pool whose caller never waits for a thread that has not started.
 *
 * Why not an OpenMP parallel region: a region ends with a barrier that every
 * thread of the team must reach, including one the OS has not scheduled yet.
 * On a machine whose other cores are busy (other processes, or the thread pools
 * of XLA and PyTorch spinning right after their own calls), the calling thread
 * finishes every task itself and then waits for a time slice of a worker that
 * does nothing: a 1M-element Poisson loss measured 5.6-7.9 ms with 2 OpenMP
 * threads against 2.6 ms with 1 on the loaded 2-core machine
 * (benchmarks/results/2026-12-02-npsmall). Here the caller takes tasks like any
 * worker and, once none is left, waits only for the tasks that workers have
 * claimed and are running (one task is ~16K elements, tens of microseconds); a
 * worker that wakes up late finds nothing to do. So a call costs at most about
 * what one thread costs, and less wherever another core is free.
 *
 * Determinism is unchanged: tasks depend on the data's shape only and each
 * writes its own result slot (pl_parallel.h's rule), whichever thread runs it.
 *
 * C API:
 *
 *   typedef void (*pl_task_fn)(void *ctx, long long task);
 *
 *   void pl_run_tasks(int nthreads, long long work, long long ntasks, pl_task_fn fn, void *ctx)
 *       fn(ctx, t) for t = 0 .. ntasks-1, on at most `nthreads` threads (the
 *       caller included); serially below PL_MIN_PARALLEL_WORK elements of work,
 *       with one task, with nthreads = 1, when another call is using the pool
 *       (calls from several Python threads at once), and where the pool is not
 *       built. Call it with the GIL released; fn must not touch Python objects.
 *
 * Built with POSIX threads and C11 atomics (Linux, macOS, BSD; PL_HAVE_POOL);
 * elsewhere (MSVC) pl_run_tasks runs PL_PARALLEL_FOR (OpenMP, or serial).
 *
 * fork(): the workers do not exist in a child; its calls run every task on the
 * calling thread (no wait: nothing was claimed by anyone else), and an at-fork
 * handler resets the pool's lock and counters so that the child can start its
 * own workers. Workers are detached threads started on first use and kept for
 * the life of the process, asleep on a condition variable between calls after
 * polling for the next job for PL_POOL_SPIN_NS (0.2 ms), so that back-to-back
 * calls do not pay a wake-up each.
 */
#ifndef PL_POOL_H
#define PL_POOL_H

#include "pl_parallel.h"

typedef void (*pl_task_fn)(void *ctx, long long task);

#if !defined(_WIN32) && !defined(__STDC_NO_ATOMICS__) && !defined(PL_NO_POOL)
#define PL_HAVE_POOL 1
#endif

#ifdef PL_HAVE_POOL
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>

#define PL_POOL_MAX_WORKERS 255
/* How long an idle worker polls for the next job before it sleeps: a wake-up
 * through the condition variable costs tens of microseconds (more in a VM whose
 * idle vCPU halts), so back-to-back calls find their workers awake; libgomp
 * polls for milliseconds by default (GOMP_SPINCOUNT), which takes a core from
 * whatever runs next. */
#define PL_POOL_SPIN_NS 200000

/* The claim word: job generation (24 bits) | number of claims (20 bits) | next
 * claim (20 bits). One compare-and-swap claims a task of one job only, so a
 * worker that read a previous job's word can never run a task of the next one
 * with the previous one's count. More than 2^20 - 1 tasks are claimed in
 * groups of consecutive tasks (the results do not depend on who runs what). */
#define PL_CLAIM_BITS 20
#define PL_CLAIM_MASK ((UINT64_C(1) << PL_CLAIM_BITS) - 1)

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int started;                 /* workers started (under lock) */
    unsigned long long posted;   /* jobs posted (under lock); workers wake when it changes */
    _Atomic int busy;            /* 1 while a call owns the pool */
    _Atomic uint64_t claim;      /* see above */
    _Atomic int inflight;        /* workers inside a job (claiming or running a task) */
    _Atomic int seats;           /* workers still allowed to join the current job */
    _Atomic unsigned long long posted_seen; /* `posted`, readable without the lock (spinning workers) */
    /* the current job: written by its caller before the claim word is published */
    pl_task_fn fn;
    void *ctx;
    long long ntasks, group;
    uint64_t gen;
} pl_pool_t;

static pl_pool_t pl_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
static pthread_once_t pl_pool_once = PTHREAD_ONCE_INIT;

static void pl_pool_after_fork_child(void)
{
    /* Only the forking thread exists in the child: no worker, no call in progress. */
    pthread_mutex_init(&pl_pool.lock, NULL);
    pthread_cond_init(&pl_pool.wake, NULL);
    pl_pool.started = 0;
    atomic_store(&pl_pool.busy, 0);
    atomic_store(&pl_pool.inflight, 0);
}

static void pl_pool_init_once(void) { pthread_atfork(NULL, NULL, pl_pool_after_fork_child); }

static inline void pl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline long long pl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Claim and run tasks of the current job until none is left. The caller of
 * pl_run_tasks and the workers all run this. */
static void pl_pool_work(void)
{
    uint64_t word = atomic_load_explicit(&pl_pool.claim, memory_order_acquire);
    for (;;) {
        uint64_t count = (word >> PL_CLAIM_BITS) & PL_CLAIM_MASK, next = word & PL_CLAIM_MASK;
        if (next >= count) return;
        if (!atomic_compare_exchange_weak_explicit(&pl_pool.claim, &word, word + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* word now holds the current value */
        /* Claimed: the job's fields were written before its word was published. */
        long long first = (long long)next * pl_pool.group, last = first + pl_pool.group;
        if (last > pl_pool.ntasks) last = pl_pool.ntasks;
        for (long long t = first; t < last; t++) pl_pool.fn(pl_pool.ctx, t);
        word = atomic_load_explicit(&pl_pool.claim, memory_order_acquire);
    }
}

static void *pl_pool_worker(void *unused)
{
    (void)unused;
    unsigned long long seen;
    pthread_mutex_lock(&pl_pool.lock);
    seen = pl_pool.posted - 1; /* started for a job that is posted right after */
    pthread_mutex_unlock(&pl_pool.lock);
    for (;;) {
        /* poll briefly, then sleep until a job is posted */
        const long long until = pl_now_ns() + PL_POOL_SPIN_NS;
        for (int spins = 1; atomic_load_explicit(&pl_pool.posted_seen, memory_order_acquire) == seen; spins++) {
            pl_cpu_relax();
            if (spins % 64 == 0 && pl_now_ns() > until) break;
        }
        pthread_mutex_lock(&pl_pool.lock);
        while (pl_pool.posted == seen) pthread_cond_wait(&pl_pool.wake, &pl_pool.lock);
        seen = pl_pool.posted;
        pthread_mutex_unlock(&pl_pool.lock);
        /* Count ourselves in before looking at the job: its caller waits for
         * inflight to drop to 0 before it returns. */
        atomic_fetch_add_explicit(&pl_pool.inflight, 1, memory_order_seq_cst);
        if (atomic_fetch_sub_explicit(&pl_pool.seats, 1, memory_order_acq_rel) > 0) pl_pool_work();
        atomic_fetch_sub_explicit(&pl_pool.inflight, 1, memory_order_release);
    }
    return NULL;
}

/* Start workers up to `wanted` (under the lock). Returns how many exist. */
static int pl_pool_grow(int wanted)
{
    if (wanted > PL_POOL_MAX_WORKERS) wanted = PL_POOL_MAX_WORKERS;
    while (pl_pool.started < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, pl_pool_worker, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* run with the workers we have */
        pl_pool.started++;
    }
    return pl_pool.started;
}

static void pl_run_tasks(int nthreads, long long work, long long ntasks, pl_task_fn fn, void *ctx)
{
    int expected = 0;
    if (nthreads <= 1 || ntasks <= 1 || work < PL_MIN_PARALLEL_WORK
        || !atomic_compare_exchange_strong(&pl_pool.busy, &expected, 1)) {
        for (long long t = 0; t < ntasks; t++) fn(ctx, t);
        return;
    }
    pthread_once(&pl_pool_once, pl_pool_init_once);
    long long group = 1;
    while ((ntasks + group - 1) / group > (long long)PL_CLAIM_MASK) group *= 2;
    const uint64_t count = (uint64_t)((ntasks + group - 1) / group);
    /* No worker can be inside a job here (the previous caller waited for them),
     * and none will read these fields before a claim of the new word succeeds. */
    pl_pool.fn = fn;
    pl_pool.ctx = ctx;
    pl_pool.ntasks = ntasks;
    pl_pool.group = group;
    pl_pool.gen = (pl_pool.gen + 1) & ((UINT64_C(1) << (64 - 2 * PL_CLAIM_BITS)) - 1);
    atomic_store_explicit(&pl_pool.seats, nthreads - 1, memory_order_relaxed);
    atomic_store_explicit(&pl_pool.claim, (pl_pool.gen << (2 * PL_CLAIM_BITS)) | (count << PL_CLAIM_BITS),
                          memory_order_release);
    pthread_mutex_lock(&pl_pool.lock);
    pl_pool_grow(nthreads - 1);
    pl_pool.posted++;
    atomic_store_explicit(&pl_pool.posted_seen, pl_pool.posted, memory_order_release);
    pthread_cond_broadcast(&pl_pool.wake);
    pthread_mutex_unlock(&pl_pool.lock);
    pl_pool_work();
    /* Every task is claimed; wait for those that workers are still running. A
     * worker that has not counted itself in yet finds nothing left to claim. */
    int spins = 0;
    while (atomic_load_explicit(&pl_pool.inflight, memory_order_acquire) != 0) {
        pl_cpu_relax();
        if (++spins == 4096) { /* a worker was preempted mid-task: let it run */
            sched_yield();
            spins = 0;
        }
    }
    atomic_store_explicit(&pl_pool.busy, 0, memory_order_release);
}

#else /* no pool: OpenMP (pl_parallel.h), or serial */

static void pl_run_tasks(int nthreads, long long work, long long ntasks, pl_task_fn fn, void *ctx)
{
    PL_PARALLEL_FOR(nthreads, work, ntasks, t) { fn(ctx, t); }
}

#endif /* PL_HAVE_POOL */

#endif /* PL_POOL_H */
