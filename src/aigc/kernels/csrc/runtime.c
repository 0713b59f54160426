/* Runtime: ISA dispatch, the thread pool, matmul over quantized weights and the whole-model forward.
 *
 * Compiled without ISA flags: everything vector-width specific lives in kernels_isa.c, reached
 * through the `isa_kernels` table chosen once at load (best the CPU has, or AIGC_KERNEL_ISA).
 *
 * Threads: a small pool of pthreads that spin briefly between parallel regions (a decode step is
 * ~10 regions per layer, so a sleeping wake-up per region would cost more than the work) and then
 * sleep on a condition variable, so an idle server burns no CPU.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "aigc_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Integer-format products with at least this many activation rows quantize the activations to int8
 * blocks (llama.cpp's way: int8 dot products are ~4x denser); fewer rows keep int16 blocks or
 * panels (below). Off by default: on SmolLM2-135M int8 activations
 * changed greedy answers (KL ~0.006 nats per token against float activations), so speed is opt-in
 * with AIGC_INT8_ACTIVATIONS=1 (or aigc_set_int8_min_rows). */
static int64_t int8_min_rows = INT64_MAX;
/* Below that, activations go to int16 blocks where the ISA has the kernel (error below float16
 * rounding; AIGC_EXACT_ACTIVATIONS=1 keeps them float32). */
static int use_q16 = 1;
/* Products with at least this many rows go through dequantized panels (see gemm_locked): 12 where
 * int16 panels apply (integer formats on VNNI), else 20 (measured crossovers on Zen 4 for SmolLM2's
 * and a 0.5B model's shapes). AIGC_GEMM_MIN_ROWS / aigc_set_gemm_min_rows set one value for both. */
static int64_t gemm_min_rows = 0; /* 0: the measured defaults */

void aigc_set_activation_mode(int int16) { use_q16 = int16 != 0; }

/* ---- ISA dispatch ------------------------------------------------------------------------------- */

static const isa_kernels *K = &kernels_portable;

static const isa_kernels *best_isa(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return &kernels_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return &kernels_avx2;
#endif
    return &kernels_portable;
}

static int isa_allowed(const isa_kernels *k) {
    const isa_kernels *best = best_isa();
    if (k == &kernels_portable || k == best) return 1;
#if defined(__x86_64__)
    if (k == &kernels_avx2 && best == &kernels_avx512) return 1;
#endif
    return 0;
}

int aigc_set_isa(const char *name) {
    const isa_kernels *all[] = {
        &kernels_portable,
#if defined(__x86_64__)
        &kernels_avx2, &kernels_avx512,
#endif
    };
    if (name == NULL || !*name || !strcmp(name, "auto") || !strcmp(name, "best")) {
        K = best_isa();
        return 0;
    }
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (!strcmp(all[i]->name, name)) {
            if (!isa_allowed(all[i])) return -2; /* this CPU cannot run it */
            K = all[i];
            return 0;
        }
    }
    return -1;
}

const char *aigc_isa_name(void) { return K->name; }

#ifndef AIGC_SOURCE_HASH
#define AIGC_SOURCE_HASH "unknown"
#endif
/* hash of the sources this library was built from: the loader rebuilds a stale build */
const char *aigc_source_hash(void) { return AIGC_SOURCE_HASH; }

__attribute__((constructor)) static void init_isa(void) {
    const char *env = getenv("AIGC_KERNEL_ISA");
    if (aigc_set_isa(env) != 0) K = best_isa(); /* unknown or unsupported name: the loader reports it */
    const char *exact = getenv("AIGC_EXACT_ACTIVATIONS");
    if (exact && *exact && strcmp(exact, "0") != 0) use_q16 = 0;
    const char *int8 = getenv("AIGC_INT8_ACTIVATIONS");
    if (int8 && *int8 && strcmp(int8, "0") != 0) int8_min_rows = 8;
    const char *gemm = getenv("AIGC_GEMM_MIN_ROWS");
    if (gemm && *gemm) gemm_min_rows = atoll(gemm) < 0 ? 0 : atoll(gemm);
}

/* ---- thread pool -------------------------------------------------------------------------------- */

typedef void (*task_fn)(void *ctx, int64_t begin, int64_t end, int tid);

#define MAX_THREADS 64

static struct {
    int n; /* threads including the caller */
    pthread_t th[MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int generation;
    atomic_int sleepers;
    atomic_int busy; /* workers still inside the current region */
    atomic_llong next;
    int64_t total, chunk;
    task_fn fn;
    void *ctx;
    int started;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static pthread_mutex_t pool_setup = PTHREAD_MUTEX_INITIALIZER;

/* Spinning, but every ~1024 pauses let another runnable thread have this core. Without it, when a
 * third thread (a server's event loop) took a core, a worker preempted in the middle of a region
 * waited for the scheduler's tick (~4 ms) while the threads waiting for it spun: the server's
 * single stream decoded 88 tok/s where the engine alone did 120. */
static inline void relax(int spins) {
    if ((spins & 1023) == 0) sched_yield();
    else CPU_RELAX();
}
static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER; /* one parallel region at a time */

static void run_chunks(int tid) {
    for (;;) {
        int64_t b = atomic_fetch_add(&pool.next, pool.chunk);
        if (b >= pool.total) break;
        int64_t e = b + pool.chunk < pool.total ? b + pool.chunk : pool.total;
        pool.fn(pool.ctx, b, e, tid);
    }
}

#define SPIN_ITERS 200000 /* roughly 0.1-1 ms of spinning before sleeping */

static int start_generation[MAX_THREADS]; /* the generation a worker was spawned in */

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    int seen = start_generation[tid];
    for (;;) {
        if (tid >= pool.n) { /* not needed at this thread count: sleep until the count grows */
            pthread_mutex_lock(&pool.mu);
            while (tid >= pool.n) pthread_cond_wait(&pool.cv, &pool.mu);
            seen = atomic_load(&pool.generation);
            pthread_mutex_unlock(&pool.mu);
            continue;
        }
        int spins = 0;
        while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
            if (++spins < SPIN_ITERS) {
                relax(spins);
                continue;
            }
            pthread_mutex_lock(&pool.mu);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.mu);
        }
        seen = atomic_load(&pool.generation);
        run_chunks(tid);
        atomic_fetch_sub_explicit(&pool.busy, 1, memory_order_release);
    }
    return NULL;
}

static int default_threads(void) {
    const char *env = getenv("AIGC_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env) > MAX_THREADS ? MAX_THREADS : atoi(env);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        return n < 1 ? 1 : (n > MAX_THREADS ? MAX_THREADS : n);
    }
    return 1;
}

static int spawned = 1; /* threads that exist, including the caller */

static void ensure_pool(int want) {
    pthread_mutex_lock(&pool_setup);
    if (!pool.started) {
        pool.n = want > 0 ? want : default_threads();
        pool.started = 1;
    }
    while (spawned < pool.n) {
        start_generation[spawned] = atomic_load(&pool.generation);
        pthread_create(&pool.th[spawned], NULL, worker, (void *)(intptr_t)spawned);
        pthread_detach(pool.th[spawned]);
        spawned++;
    }
    pthread_mutex_unlock(&pool_setup);
}

int aigc_num_threads(void) {
    ensure_pool(0);
    return pool.n;
}

void aigc_set_num_threads(int n) {
    pthread_mutex_lock(&call_lock);
    if (n < 1) n = default_threads();
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&pool_setup);
    pool.started = 1;
    pthread_mutex_lock(&pool.mu); /* workers read pool.n under it when they park or unpark */
    pool.n = n;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool_setup);
    ensure_pool(n);
    pthread_mutex_unlock(&call_lock);
}

/* run fn over [0, total) in chunks on every thread; returns when all are done.
 * Callers hold call_lock (aigc_matmul / aigc_forward take it once per call). */
static void parallel_for(task_fn fn, void *ctx, int64_t total, int64_t chunk) {
    if (total <= 0) return;
    if (chunk < 1) chunk = 1;
    if (pool.n <= 1 || total <= chunk) {
        fn(ctx, 0, total, 0);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.total = total;
    pool.chunk = chunk;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.busy, pool.n - 1); /* only threads below the current count take part */
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    run_chunks(0);
    for (int spins = 1; atomic_load_explicit(&pool.busy, memory_order_acquire) > 0; spins++) relax(spins);
}

/* ---- formats ------------------------------------------------------------------------------------ */

int64_t aigc_row_bytes(int type, int64_t cols) {
    switch (type) {
    case T_F32: return cols * 4;
    case T_F16: case T_BF16: return cols * 2;
    case T_Q4_0: return cols % QK ? 0 : cols / QK * 18;
    case T_Q4_1: return cols % QK ? 0 : cols / QK * 20;
    case T_Q5_0: return cols % QK ? 0 : cols / QK * 22;
    case T_Q5_1: return cols % QK ? 0 : cols / QK * 24;
    case T_Q8_0: return cols % QK ? 0 : cols / QK * 34;
    case T_Q4_K: return cols % QK_K ? 0 : cols / QK_K * 144;
    case T_Q5_K: return cols % QK_K ? 0 : cols / QK_K * 176;
    case T_Q6_K: return cols % QK_K ? 0 : cols / QK_K * 210;
    default: return 0;
    }
}

static int is_float_type(int type) { return type == T_F32 || type == T_F16 || type == T_BF16; }
static int is_k_type(int type) { return type == T_Q4_K || type == T_Q5_K || type == T_Q6_K; }

/* ---- matmul: y[m, :] (+)= x[m, :] @ W^T for weights given as row-stacked parts ---------------- */



void aigc_set_int8_min_rows(int64_t rows) { int8_min_rows = rows < 1 ? 1 : rows; }

typedef struct {
    const aigc_weight *parts;
    int n_parts;
    int64_t N, K, M, ldy;
    const float *x;
    const float *xsum; /* [M, K/32] block sums, when integer parts take float activations */
    act_q16 *x16;      /* per activation row, when integer parts take int16 activations */
    act_q16k *x16k;    /* the same per super-block, for K-format parts (NULL if none) */
    act_q8 *xq; /* per activation row, when integer parts take int8 activations */
    float *y;
    const float *bias;
    int accumulate;
} matmul_ctx;

static void matmul_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const matmul_ctx *c = (const matmul_ctx *)p;
    /* which part holds global row `begin`; then walk forward */
    int64_t row = begin;
    int pi = 0;
    while (row >= c->parts[pi].rows) row -= c->parts[pi++].rows;
    int64_t row_bytes = aigc_row_bytes(c->parts[pi].type, c->K);
    for (int64_t n = begin; n < end; n++, row++) {
        if (row >= c->parts[pi].rows) {
            row = 0;
            pi++;
            row_bytes = aigc_row_bytes(c->parts[pi].type, c->K);
        }
        const aigc_weight *w = &c->parts[pi];
        const uint8_t *wr = (const uint8_t *)w->data + row * row_bytes;
        const float b = c->bias ? c->bias[n] : 0.0f;
        for (int64_t m = 0; m < c->M; m += 4) {
            int R = c->M - m < 4 ? (int)(c->M - m) : 4;
            float out[4];
            if (is_k_type(w->type) && c->x16k) {
                K->dot_rows_k16(w->type, wr, c->K, c->x16k + m, R, out);
            } else if (!is_float_type(w->type) && c->x16) {
                K->dot_rows_q16(w->type, wr, c->K, c->x16 + m, R, out);
            } else if (is_float_type(w->type) || c->xsum) {
                const float *xs[4], *sums[4];
                for (int r = 0; r < R; r++) {
                    xs[r] = c->x + (m + r) * c->K;
                    sums[r] = c->xsum ? c->xsum + (m + r) * (c->K / QK) : NULL;
                }
                if (is_float_type(w->type)) K->dot_rows(w->type, wr, c->K, xs, R, out);
                else K->dot_rows_fx(w->type, wr, c->K, xs, sums, R, out);
            } else {
                K->dot_rows(w->type, wr, c->K, c->xq + m, R, out);
            }
            for (int r = 0; r < R; r++) {
                float *dst = c->y + (m + r) * c->ldy + n;
                *dst = (c->accumulate ? *dst : 0.0f) + out[r] + b;
            }
        }
    }
}

typedef struct {
    const float *x;
    int64_t K;
    act_q8 *xq;
    int8_t *q;
    float *d, *s;
} quant_ctx;

static void quant_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    quant_ctx *c = (quant_ctx *)p;
    int64_t nb = c->K / QK;
    for (int64_t m = begin; m < end; m++) {
        K->quantize_act(c->x + m * c->K, c->K, c->q + m * c->K, c->d + m * nb, c->s + m * nb);
        c->xq[m].q = c->q + m * c->K;
        c->xq[m].d = c->d + m * nb;
        c->xq[m].s = c->s + m * nb;
    }
}

/* scratch that lives across calls (grown, never shrunk); only used under call_lock */
typedef struct {
    void *p;
    size_t n;
} scratch;

static void *grow(scratch *s, size_t n) {
    if (n > s->n) {
        free(s->p);
        s->p = aligned_alloc(64, (n + 63) / 64 * 64);
        s->n = s->p ? n : 0;
    }
    return s->p;
}

static scratch q_scratch, act_scratch, qk_scratch, actk_scratch;

/* activation rows to int16 blocks of 32, |q| <= levels (in q_scratch / act_scratch); NULL if out of memory */
static act_q16 *quantize_rows16(const float *x, int64_t M, int64_t Kd, int levels, scratch *qs, scratch *as) {
    const int64_t nb = Kd / QK;
    uint8_t *buf = (uint8_t *)grow(qs, (size_t)M * Kd * 2 + (size_t)M * nb * 8 + 64);
    act_q16 *x16 = (act_q16 *)grow(as, (size_t)M * sizeof(act_q16));
    if (!buf || !x16) return NULL;
    float *d = (float *)buf, *s = d + M * nb;
    int16_t *q = (int16_t *)(s + M * nb);
    for (int64_t r = 0; r < M; r++) {
        K->quantize_act16(x + r * Kd, Kd, levels, q + r * Kd, d + r * nb, s + r * nb);
        x16[r].q = q + r * Kd;
        x16[r].d = d + r * nb;
        x16[r].s = s + r * nb;
    }
    return x16;
}

static int64_t row_chunk(int64_t N, int64_t M) {
    /* enough chunks per thread for balance; bigger chunks when each row is dotted with many tokens */
    int64_t c = N / (pool.n * 8);
    if (M >= 16) c = N / (pool.n * 4);
    return c < 1 ? 1 : c;
}

/* ---- many activation rows: dequantized float panels (kernels_isa.c, gemm_*) ---------------------
 * From this many rows on, a weight row is used often enough that dequantizing it once to floats and
 * running a register-tiled float product beats unpacking it per group of four rows (measured on
 * Zen 4 AVX-512 and AVX2 builds: the panel path is faster from about 20 rows; below, products are bound
 * by reading the weights, where the packed-block kernels win). */
void aigc_set_gemm_min_rows(int64_t rows) { gemm_min_rows = rows < 0 ? 0 : rows; }

typedef struct {
    const matmul_ctx *dot; /* the leading rows, by the packed-block kernels (dot->M may be 0) */
    const aigc_weight *parts;
    int n_parts;
    int64_t N, K, M, ldy;
    const float *x;
    const act_q16 *x16; /* int16 panels: the activations as int16 blocks (else NULL: float panels) */
    float *y;
    const float *bias;
    int accumulate;
} gemm_ctx;

static scratch gemm_scratch[MAX_THREADS]; /* per thread: dequantized rows, panel, output tile */

static void gemm_task(void *p, int64_t begin, int64_t end, int tid) {
    const gemm_ctx *c = (const gemm_ctx *)p;
    const int nc = K->gemm_nc;
    const int64_t Kd = c->K;
    float *rows = (float *)grow(&gemm_scratch[tid], ((size_t)2 * nc * Kd + (size_t)c->M * nc) * sizeof(float));
    if (!rows) return; /* matmul_locked checked the first allocation; see there */
    float *panel = rows + (size_t)nc * Kd, *tile = panel + (size_t)nc * Kd;
    for (int64_t pi = begin; pi < end; pi++) {
        const int64_t n0 = pi * nc;
        const int width = c->N - n0 < nc ? (int)(c->N - n0) : nc;
        int part = 0;
        int64_t row = n0;
        while (row >= c->parts[part].rows) row -= c->parts[part++].rows;
        for (int j = 0; j < nc; j++) {
            if (j >= width) {
                memset(rows + (size_t)j * Kd, 0, (size_t)Kd * sizeof(float));
                continue;
            }
            if (row >= c->parts[part].rows) row -= c->parts[part++].rows;
            const aigc_weight *w = &c->parts[part];
            K->dequant_row(w->type, (const uint8_t *)w->data + row * aigc_row_bytes(w->type, Kd), Kd,
                           rows + (size_t)j * Kd);
            row++;
        }
        if (c->x16) { /* the int16 panel and its scales fit where the float panel would go */
            int16_t *p16 = (int16_t *)panel;
            float *scales = (float *)(p16 + (size_t)nc * Kd);
            K->gemm_pack16(rows, Kd, p16, scales);
            K->gemm_panel16(p16, scales, Kd, c->x16, c->M, tile);
        } else {
            K->gemm_pack(rows, Kd, panel);
            K->gemm_panel(panel, Kd, c->x, c->M, tile);
        }
        for (int64_t m = 0; m < c->M; m++) {
            float *dst = c->y + m * c->ldy + n0;
            const float *src = tile + m * nc;
            for (int j = 0; j < width; j++)
                dst[j] = (c->accumulate ? dst[j] : 0.0f) + src[j] + (c->bias ? c->bias[n0 + j] : 0.0f);
        }
        /* the leading rows meet the same weight rows while they are still in cache */
        if (c->dot->M > 0) matmul_task((void *)c->dot, n0, n0 + width, tid);
    }
}

static scratch panel_q_scratch, panel_act_scratch; /* the panel rows' int16 activations */

/* Panels for rows x[0:M) (into y), and dot->M leading rows by the packed-block kernels. */
static int gemm_locked(const matmul_ctx *dot, const float *x, int64_t M, float *y, int int16_panels) {
    const int nc = K->gemm_nc;
    const int64_t Kd = dot->K, N = dot->N;
    const act_q16 *x16 = NULL;
    if (int16_panels) {
        x16 = quantize_rows16(x, M, Kd, K->gemm16_levels, &panel_q_scratch, &panel_act_scratch);
        if (!x16) return -3;
    }
    for (int t = 0; t < pool.n; t++) /* allocate up front, so a failure is an error code, not a gap */
        if (!grow(&gemm_scratch[t], ((size_t)2 * nc * Kd + (size_t)M * nc) * sizeof(float))) return -3;
    gemm_ctx c = {dot, dot->parts, dot->n_parts, N, Kd, M, dot->ldy, x, x16, y, dot->bias, dot->accumulate};
    parallel_for(gemm_task, &c, (N + nc - 1) / nc, 1);
    return 0;
}

/* The activations the packed-block kernels take for rows x[0:c->M), by the formats of c->parts. */
static int prepare_dot(matmul_ctx *c, int any_int, int any_k) {
    const int64_t M = c->M, Kd = c->K, nb = Kd / QK;
    const float *x = c->x;
    if (M == 0 || !any_int) return 0;
    if (M < int8_min_rows && K->dot_rows_q16 && use_q16) {
        act_q16 *x16 = quantize_rows16(x, M, Kd, 32767, &q_scratch, &act_scratch);
        if (!x16) return -3;
        c->x16 = x16;
        if (any_k && K->dot_rows_k16) {
            const int64_t nsb = Kd / QK_K;
            size_t kbytes = (size_t)M * Kd * 2 + (size_t)M * nsb * 4 + (size_t)M * nb * 4 + 64;
            uint8_t *kbuf = (uint8_t *)grow(&qk_scratch, kbytes);
            act_q16k *x16k = (act_q16k *)grow(&actk_scratch, (size_t)M * sizeof(act_q16k));
            if (!kbuf || !x16k) return -3;
            float *kd = (float *)kbuf;
            int32_t *bs = (int32_t *)(kd + M * nsb);
            int16_t *kq = (int16_t *)(bs + M * nb);
            for (int64_t r = 0; r < M; r++) {
                K->quantize_act16k(x + r * Kd, Kd, kq + r * Kd, kd + r * nsb, bs + r * nb);
                x16k[r].q = kq + r * Kd;
                x16k[r].d = kd + r * nsb;
                x16k[r].bsum = bs + r * nb;
            }
            c->x16k = x16k;
        }
    } else if (M < int8_min_rows) {
        float *sums = (float *)grow(&q_scratch, (size_t)M * nb * sizeof(float) + 64);
        if (!sums) return -3;
        for (int64_t r = 0; r < M; r++)
            for (int64_t b = 0; b < nb; b++) {
                float s = 0.0f;
                for (int i = 0; i < QK; i++) s += x[r * Kd + b * QK + i];
                sums[r * nb + b] = s;
            }
        c->xsum = sums;
    } else {
        size_t bytes = (size_t)M * Kd + (size_t)M * nb * 8 + 64;
        uint8_t *buf = (uint8_t *)grow(&q_scratch, bytes);
        act_q8 *xq = (act_q8 *)grow(&act_scratch, (size_t)M * sizeof(act_q8));
        if (!buf || !xq) return -3;
        float *d = (float *)buf, *s = d + M * nb;
        quant_ctx qc = {x, Kd, xq, (int8_t *)(s + M * nb), d, s};
        parallel_for(quant_task, &qc, M, M >= 8 ? (M + pool.n - 1) / pool.n : M);
        c->xq = xq;
    }
    return 0;
}

/* y[m] (+)= x[m] @ W^T. The first `dot_rows` rows (decode tokens, LM-head rows) always take the
 * packed-block kernels, whose result for a row does not depend on the other rows; the rest (a
 * prefill chunk) take panels when there are enough of them. So a stream's tokens are the same
 * whether or not other requests share its steps (greedy output does not change with load). */
static int matmul_locked(const aigc_weight *parts, int n_parts, const float *x, int64_t M, float *y,
                         int64_t ldy, const float *bias, int accumulate, int64_t dot_rows) {
    int64_t N = 0, Kd = parts[0].cols;
    int any_int = 0, any_k = 0, all_int = 1;
    for (int i = 0; i < n_parts; i++) {
        if (parts[i].cols != Kd || aigc_row_bytes(parts[i].type, Kd) == 0) return -1;
        N += parts[i].rows;
        any_int |= !is_float_type(parts[i].type);
        all_int &= !is_float_type(parts[i].type);
        any_k |= is_k_type(parts[i].type);
    }
    dot_rows = dot_rows < 0 ? 0 : (dot_rows > M ? M : dot_rows);
    const int int16_panels = all_int && use_q16 && K->gemm_panel16 && Kd % QK == 0;
    const int64_t panel_rows = gemm_min_rows > 0 ? gemm_min_rows : (int16_panels ? 12 : 20);
    matmul_ctx c = {parts, n_parts, N, Kd, M, ldy, x, NULL, NULL, NULL, NULL, y, bias, accumulate};
    if (M - dot_rows >= panel_rows && M < int8_min_rows && K->gemm_panel) {
        c.M = dot_rows;
        if (prepare_dot(&c, any_int, any_k) != 0) return -3;
        return gemm_locked(&c, x + dot_rows * Kd, M - dot_rows, y + dot_rows * ldy, int16_panels);
    }
    if (prepare_dot(&c, any_int, any_k) != 0) return -3;
    parallel_for(matmul_task, &c, N, row_chunk(N, M));
    return 0;
}

void aigc_argmax_lse(const float *x, int64_t rows, int64_t n, int64_t *out_ids, float *out_lse) {
    for (int64_t r = 0; r < rows; r++) out_ids[r] = K->argmax_lse(x + r * n, n, out_lse + r);
}

int aigc_matmul(const aigc_weight *parts, int n_parts, const float *x, int64_t M, float *y,
                const float *bias, int accumulate) {
    ensure_pool(0);
    int64_t N = 0;
    for (int i = 0; i < n_parts; i++) N += parts[i].rows;
    pthread_mutex_lock(&call_lock);
    int rc = matmul_locked(parts, n_parts, x, M, y, N, bias, accumulate, 0);
    pthread_mutex_unlock(&call_lock);
    return rc;
}

int aigc_dequantize(const aigc_weight *w, float *out) {
    int64_t rb = aigc_row_bytes(w->type, w->cols);
    if (rb == 0) return -1;
    for (int64_t r = 0; r < w->rows; r++)
        K->dequant_row(w->type, (const uint8_t *)w->data + r * rb, w->cols, out + r * w->cols);
    return 0;
}

/* ---- the whole forward of a Llama-family model ---------------------------------------------------
 * n tokens of any mix of sequences (decode tokens of running requests and prompt chunks): token t
 * sits at position pos[t] of KV slot slot[t] and attends to that slot's positions 0..pos[t]. Each
 * layer first writes every token's keys/values, then attends, so tokens of one prompt chunk see
 * each other causally. Logits (or final hidden states) come back for the tokens in out_idx. */

typedef struct {
    const aigc_model *m;
    const aigc_layer *L;
    int64_t n;
    const int32_t *pos, *slot;
    float *x, *xn, *qkv, *att, *cos_t, *sin_t, *cos_l, *sin_l, *scores;
    int64_t scores_stride;
    int64_t qkv_dim;
    int att_heads; /* query heads per attention task: the kv group, or 1 */
} fwd_ctx;

static void rope_kv_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    fwd_ctx *c = (fwd_ctx *)p;
    const aigc_model *m = c->m;
    const int hd = m->head_dim, half = hd / 2, H = m->n_heads, KV = m->n_kv;
    const size_t es = m->kv_f16 ? 2 : 4;
    const aigc_layer *L = c->L;
    for (int64_t t = begin; t < end; t++) {
        float *row = c->qkv + t * c->qkv_dim;
        const float *cs = (L->local_rope ? c->cos_l : c->cos_t) + t * half;
        const float *sn = (L->local_rope ? c->sin_l : c->sin_t) + t * half;
        if (L->q_norm) /* per-head norms before the rotation (Qwen3, Gemma 3); in place is safe */
            for (int h = 0; h < H + KV; h++) K->rmsnorm(row + h * hd, h < H ? L->q_norm : L->k_norm, hd, m->eps, row + h * hd);
        for (int h = 0; h < H + KV; h++) { /* rotate q and k heads (half-split pairs, as HF) */
            float *v = row + h * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        }
        for (int h = 0; h < KV; h++) {
            int64_t off = (int64_t)c->slot[t] * m->kv_slot_stride + h * m->kv_head_stride + (int64_t)c->pos[t] * hd;
            K->store_kv(row + (H + h) * hd, (uint8_t *)c->L->k_cache + off * es, m->kv_f16, hd);
            K->store_kv(row + (H + KV + h) * hd, (uint8_t *)c->L->v_cache + off * es, m->kv_f16, hd);
        }
    }
}

/* One task = one token's query heads that share a kv head (read once for all of them), or one
 * query head when there are too few tokens to keep every thread busy with groups (decode). */
static void attention_task(void *p, int64_t begin, int64_t end, int tid) {
    fwd_ctx *c = (fwd_ctx *)p;
    const aigc_model *m = c->m;
    const int hd = m->head_dim, H = m->n_heads, group = m->n_heads / m->n_kv, nq = c->att_heads;
    const int per_token = H / nq;
    const size_t es = m->kv_f16 ? 2 : 4;
    const float scale = m->attn_scale != 0.0f ? m->attn_scale : 1.0f / sqrtf((float)hd);
    const int64_t window = c->L->window;
    float *scores = c->scores + tid * c->scores_stride * group;
    for (int64_t i = begin; i < end; i++) {
        int64_t t = i / per_token;
        int h = (int)(i % per_token) * nq, kvh = h / group;
        /* a sliding layer sees positions pos-window+1 .. pos */
        int64_t first = window > 0 && c->pos[t] + 1 > window ? c->pos[t] + 1 - window : 0;
        int64_t off = (int64_t)c->slot[t] * m->kv_slot_stride + kvh * m->kv_head_stride + first * hd;
        K->attention(c->qkv + t * c->qkv_dim + h * hd, nq, (const uint8_t *)c->L->k_cache + off * es,
                     (const uint8_t *)c->L->v_cache + off * es, m->kv_f16, hd, (int64_t)c->pos[t] + 1 - first, hd,
                     scale, m->attn_softcap, scores, c->att + t * H * hd + h * hd);
    }
}

typedef struct {
    const float *x;
    const float *w;
    float *out;
    int64_t dim;
    float eps;
    const float *g; /* silu_mul: gate/up rows of 2*dim */
    int64_t g_stride;
} rowwise_ctx;

static void rmsnorm_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    rowwise_ctx *c = (rowwise_ctx *)p;
    for (int64_t t = begin; t < end; t++) K->rmsnorm(c->x + t * c->dim, c->w, c->dim, c->eps, c->out + t * c->dim);
}

static void silu_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    rowwise_ctx *c = (rowwise_ctx *)p;
    for (int64_t t = begin; t < end; t++)
        K->silu_mul(c->g + t * c->g_stride, c->g + t * c->g_stride + c->dim, c->dim, c->out + t * c->dim);
}

static void gelu_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    rowwise_ctx *c = (rowwise_ctx *)p;
    for (int64_t t = begin; t < end; t++)
        K->gelu_mul(c->g + t * c->g_stride, c->g + t * c->g_stride + c->dim, c->dim, c->out + t * c->dim);
}

/* x += norm(y) row by row: a sandwich norm's output joins the residual stream */
static void add_norm_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    rowwise_ctx *c = (rowwise_ctx *)p;
    for (int64_t t = begin; t < end; t++) {
        float *y = (float *)c->x + t * c->dim, *x = c->out + t * c->dim;
        K->rmsnorm(y, c->w, c->dim, c->eps, y);
        for (int64_t i = 0; i < c->dim; i++) x[i] += y[i];
    }
}

static void rowwise(task_fn fn, rowwise_ctx *c, int64_t n) { parallel_for(fn, c, n, n >= 16 ? 4 : n); }

static scratch fwd_scratch;

int aigc_forward(const aigc_model *m, int64_t n, int64_t n_decode, const int32_t *ids, const int32_t *pos,
                 const int32_t *slot, int64_t n_out, const int32_t *out_idx, float *logits,
                 float *hidden_out) {
    ensure_pool(0);
    const int64_t D = m->hidden, hd = m->head_dim, H = m->n_heads, KV = m->n_kv, F = m->inter;
    const int64_t qkv_dim = (H + 2 * KV) * hd, half = hd / 2;
    for (int64_t t = 0; t < n; t++) {
        if (ids[t] < 0 || ids[t] >= m->vocab || pos[t] < 0 || pos[t] >= m->kv_capacity) return -4;
    }
    int64_t max_len = 0;
    for (int64_t t = 0; t < n; t++) max_len = pos[t] + 1 > max_len ? pos[t] + 1 : max_len;
    pthread_mutex_lock(&call_lock);
    const int64_t scores_stride = (max_len + 15) / 16 * 16;
    size_t floats = (size_t)n * (2 * D + qkv_dim + H * hd + 2 * F + F + 4 * half) +
                    (size_t)pool.n * scores_stride * (H / KV) + (size_t)n_out * D * 2 + 64;
    float *buf = (float *)grow(&fwd_scratch, floats * sizeof(float));
    if (!buf) {
        pthread_mutex_unlock(&call_lock);
        return -3;
    }
    fwd_ctx c = {0};
    c.m = m;
    c.n = n;
    c.pos = pos;
    c.slot = slot;
    c.qkv_dim = qkv_dim;
    c.x = buf;
    c.xn = c.x + n * D;
    c.qkv = c.xn + n * D;
    c.att = c.qkv + n * qkv_dim;
    float *gu = c.att + n * H * hd, *act = gu + n * 2 * F;
    c.cos_t = act + n * F;
    c.sin_t = c.cos_t + n * half;
    c.cos_l = c.sin_t + n * half;
    c.sin_l = c.cos_l + n * half;
    c.scores = c.sin_l + n * half;
    c.scores_stride = scores_stride;
    float *sel = c.scores + pool.n * scores_stride * (H / KV), *seln = sel + n_out * D;
    c.att_heads = n * KV >= 4 * pool.n ? (int)(H / KV) : 1;

    int64_t eb = aigc_row_bytes(m->embed.type, D);
    for (int64_t t = 0; t < n; t++) {
        K->dequant_row(m->embed.type, (const uint8_t *)m->embed.data + (int64_t)ids[t] * eb, D, c.x + t * D);
        if (m->embed_scale != 0.0f)
            for (int64_t i = 0; i < D; i++) c.x[t * D + i] *= m->embed_scale;
        for (int64_t i = 0; i < half; i++) {
            float a = (float)pos[t] * m->inv_freq[i];
            c.cos_t[t * half + i] = cosf(a);
            c.sin_t[t * half + i] = sinf(a);
            if (m->inv_freq_local) {
                a = (float)pos[t] * m->inv_freq_local[i];
                c.cos_l[t * half + i] = cosf(a);
                c.sin_l[t * half + i] = sinf(a);
            }
        }
    }
    int rc = 0;
    rowwise_ctx rw = {0};
    rw.dim = D;
    rw.eps = m->eps;
    for (int l = 0; l < m->n_layers && rc == 0; l++) {
        const aigc_layer *L = &m->layers[l];
        c.L = L;
        rw.x = c.x; rw.w = L->attn_norm; rw.out = c.xn; rw.dim = D;
        rowwise(rmsnorm_task, &rw, n);
        rc |= matmul_locked(L->qkv, L->n_qkv, c.xn, n, c.qkv, qkv_dim, L->qkv_bias, 0, n_decode);
        parallel_for(rope_kv_task, &c, n, n >= 16 ? 4 : n);
        parallel_for(attention_task, &c, n * H / c.att_heads, 1);
        if (L->post_attn_norm) { /* Gemma: the output is normalised before it joins the residual */
            rc |= matmul_locked(&L->o, 1, c.att, n, c.xn, D, L->o_bias, 0, n_decode);
            rw.x = c.xn; rw.w = L->post_attn_norm; rw.out = c.x; rw.dim = D;
            rowwise(add_norm_task, &rw, n);
        } else {
            rc |= matmul_locked(&L->o, 1, c.att, n, c.x, D, L->o_bias, 1, n_decode);
        }
        rw.x = c.x; rw.w = L->mlp_norm; rw.out = c.xn; rw.dim = D;
        rowwise(rmsnorm_task, &rw, n);
        rc |= matmul_locked(L->gate_up, L->n_gate_up, c.xn, n, gu, 2 * F, L->gate_up_bias, 0, n_decode);
        rw.g = gu; rw.g_stride = 2 * F; rw.out = act; rw.dim = F;
        rowwise(m->act == 1 ? gelu_task : silu_task, &rw, n);
        if (L->post_mlp_norm) {
            rc |= matmul_locked(&L->down, 1, act, n, c.xn, D, L->down_bias, 0, n_decode);
            rw.x = c.xn; rw.w = L->post_mlp_norm; rw.out = c.x; rw.dim = D;
            rowwise(add_norm_task, &rw, n);
        } else {
            rc |= matmul_locked(&L->down, 1, act, n, c.x, D, L->down_bias, 1, n_decode);
        }
    }
    if (rc == 0 && n_out > 0) {
        for (int64_t i = 0; i < n_out; i++) memcpy(sel + i * D, c.x + (int64_t)out_idx[i] * D, D * sizeof(float));
        rw.x = sel; rw.w = m->final_norm; rw.out = hidden_out ? hidden_out : seln; rw.dim = D;
        rowwise(rmsnorm_task, &rw, n_out);
        if (!hidden_out) rc |= matmul_locked(&m->lm_head, 1, seln, n_out, logits, m->vocab, NULL, 0, n_out);
        if (!hidden_out && rc == 0 && m->final_softcap > 0.0f) {
            const float cap = m->final_softcap;
            for (int64_t i = 0; i < n_out * m->vocab; i++) logits[i] = cap * tanhf(logits[i] / cap);
        }
    }
    pthread_mutex_unlock(&call_lock);
    return rc;
}
