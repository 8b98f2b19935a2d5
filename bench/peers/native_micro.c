/*
 * native_micro.c: the micro benchmark workloads of bench/micro.js in C, the
 * native reference for the ratios.
 *
 *   gcc -O2 -pthread -DUSE_MIMALLOC native_micro.c -lmimalloc  -> mi_malloc/mi_free
 *   gcc -O2 -pthread               native_micro.c              -> glibc malloc/free
 *
 * Usage: native_micro [key=value ...]   (keys: see `struct params` below;
 * bench/micro.js passes every one of them so both sides share one set of
 * parameters). Prints one JSON object on stdout.
 *
 * Workloads: (a) churn, (b) random replacement in a large live set, (c) (a)
 * in two threads, (d) realloc-grow (only when asked for: workloads=d).
 *
 * The PRNG (xorshift32), the seeds and the order in which the size, slot
 * and step tables are generated are the same as in bench/lib/workload.js, so the C
 * and JavaScript runs see identical request sequences.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef USE_MIMALLOC
#include <mimalloc.h>
#define ALLOC_NAME "native-mimalloc"
#define MALLOC(n) mi_malloc(n)
#define FREE(p) mi_free(p)
#define REALLOC(p, n) mi_realloc(p, n)
#else
#define ALLOC_NAME "native-glibc"
#define MALLOC(n) malloc(n)
#define FREE(p) free(p)
#define REALLOC(p, n) realloc(p, n)
#endif

struct params {
  uint32_t a_blocks, a_tables, size_min, size_span;
  uint32_t b_live, b_table;
  uint32_t seed_a, seed_b_fill, seed_b_steps;
  uint32_t d_buffers, d_start, d_step_min, d_step_span, d_max, d_table, seed_d;
  uint32_t reps, warmup, c_reps;
  double target_ms, c_target_ms, warmup_ms;
  char workloads[16];
};

static struct params P = {
  .a_blocks = 1000, .a_tables = 8, .size_min = 8, .size_span = 200,
  .b_live = 100000, .b_table = 1u << 20,
  .seed_a = 0x12345678u, .seed_b_fill = 0x9E3779B9u, .seed_b_steps = 0x85EBCA6Bu,
  .d_buffers = 64, .d_start = 16, .d_step_min = 16, .d_step_span = 49, .d_max = 65536,
  .d_table = 1u << 16, .seed_d = 0xC2B2AE35u,
  .reps = 11, .warmup = 2, .c_reps = 8,
  .target_ms = 60, .c_target_ms = 100, .warmup_ms = 250,
  .workloads = "abc",
};

static uint32_t xs_state;
static uint32_t xs_next(void) {
  uint32_t x = xs_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return xs_state = x;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n) {
  double *t = malloc(n * sizeof *t);
  memcpy(t, v, n * sizeof *t);
  qsort(t, n, sizeof *t, cmp_double);
  double m = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
  free(t);
  return m;
}

static void print_array(const char *key, double *v, uint32_t n) {
  printf("\"%s\":[", key);
  for (uint32_t i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", v[i]);
  printf("]");
}

static void die(const char *msg) {
  fprintf(stderr, "native_micro: %s\n", msg);
  exit(1);
}

/* ---- workload (a) ------------------------------------------------------ */

static uint32_t *a_sizes;

/* `rounds` x (allocate a_blocks, free them in allocation order); ms */
static double run_a(uint32_t rounds, void **ptrs) {
  const uint32_t nb = P.a_blocks;
  double t0 = now_ms();
  for (uint32_t r = 0; r < rounds; r++) {
    const uint32_t *sz = a_sizes + (r % P.a_tables) * nb;
    for (uint32_t i = 0; i < nb; i++) {
      void *p = MALLOC(sz[i]);
      if (p == NULL) die("malloc returned NULL");
      ptrs[i] = p;
    }
    for (uint32_t i = 0; i < nb; i++) FREE(ptrs[i]);
  }
  return now_ms() - t0;
}

/* Grow the count until one run takes >= target/8, then scale to target. */
static uint32_t calibrate(double (*run)(uint32_t, void *), void *ctx, uint32_t start,
                          double target) {
  uint32_t n = start;
  double t;
  for (;;) {
    t = run(n, ctx);
    if (t >= target / 8 || n >= (1u << 28)) break;
    n *= t < target / 64 ? 8 : 2;
  }
  double k = n * target / (t > 1e-3 ? t : 1e-3);
  return k < 1 ? 1 : (uint32_t)k;
}

static double run_a_ctx(uint32_t n, void *ctx) { return run_a(n, ctx); }

/* At least P.warmup runs and at least P.warmup_ms of running. */
static void warm_up(double (*run)(uint32_t, void *), void *ctx, uint32_t n) {
  double t0 = now_ms();
  for (uint32_t i = 0; i < P.warmup || now_ms() - t0 < P.warmup_ms; i++) run(n, ctx);
}

/* After warm-up: one more run of n, rescaled to the target (as in worker.js). */
static uint32_t recalibrate(double (*run)(uint32_t, void *), void *ctx, uint32_t n, double target) {
  double t = run(n, ctx);
  double k = n * target / (t > 1e-3 ? t : 1e-3);
  return k < 1 ? 1 : (uint32_t)k;
}

static void workload_a(void) {
  void **ptrs = calloc(P.a_blocks, sizeof *ptrs);
  uint32_t rounds = calibrate(run_a_ctx, ptrs, 1, P.target_ms);
  warm_up(run_a_ctx, ptrs, rounds);
  rounds = recalibrate(run_a_ctx, ptrs, rounds, P.target_ms);
  double *ns = calloc(P.reps, sizeof *ns);
  double ops = 2.0 * P.a_blocks * rounds;
  for (uint32_t i = 0; i < P.reps; i++) ns[i] = run_a(rounds, ptrs) * 1e6 / ops;
  printf("\"a\":{\"rounds\":%u,\"ops_per_rep\":%.0f,\"ns_per_op\":%.4f,", rounds, ops,
         median(ns, P.reps));
  print_array("samples", ns, P.reps);
  printf("}");
  free(ns);
  free(ptrs);
}

/* ---- workload (b) ------------------------------------------------------ */

struct bstate {
  void **live;
  uint32_t *slot, *size;
  uint32_t cursor;
};

static double run_b(uint32_t steps, void *ctx) {
  struct bstate *s = ctx;
  const uint32_t mask = P.b_table - 1;
  uint32_t c = s->cursor;
  double t0 = now_ms();
  for (uint32_t i = 0; i < steps; i++) {
    uint32_t k = c & mask, j = s->slot[k];
    FREE(s->live[j]);
    void *p = MALLOC(s->size[k]);
    if (p == NULL) die("malloc returned NULL");
    s->live[j] = p;
    c++;
  }
  double t = now_ms() - t0;
  s->cursor = c;
  return t;
}

static void workload_b(void) {
  struct bstate s = {0};
  s.live = calloc(P.b_live, sizeof *s.live);
  s.slot = calloc(P.b_table, sizeof *s.slot);
  s.size = calloc(P.b_table, sizeof *s.size);
  xs_state = P.seed_b_fill;
  uint32_t *fill = calloc(P.b_live, sizeof *fill);
  for (uint32_t i = 0; i < P.b_live; i++) fill[i] = P.size_min + xs_next() % P.size_span;
  xs_state = P.seed_b_steps;
  for (uint32_t i = 0; i < P.b_table; i++) {
    s.slot[i] = xs_next() % P.b_live;
    s.size[i] = P.size_min + xs_next() % P.size_span;
  }
  double t0 = now_ms();
  for (uint32_t i = 0; i < P.b_live; i++) {
    s.live[i] = MALLOC(fill[i]);
    if (s.live[i] == NULL) die("malloc returned NULL");
  }
  double fill_ms = now_ms() - t0;
  uint32_t steps = calibrate(run_b, &s, 1000, P.target_ms);
  warm_up(run_b, &s, steps);
  steps = recalibrate(run_b, &s, steps, P.target_ms);
  double *ns = calloc(P.reps, sizeof *ns);
  for (uint32_t i = 0; i < P.reps; i++) ns[i] = run_b(steps, &s) * 1e6 / (2.0 * steps);
  printf("\"b\":{\"live\":%u,\"steps\":%u,\"ops_per_rep\":%u,\"fill_ms\":%.3f,\"ns_per_op\":%.4f,",
         P.b_live, steps, 2 * steps, fill_ms, median(ns, P.reps));
  print_array("samples", ns, P.reps);
  printf("}");
  for (uint32_t i = 0; i < P.b_live; i++) FREE(s.live[i]);
  free(ns);
  free(fill);
  free(s.live);
  free(s.slot);
  free(s.size);
}

/* ---- workload (d) ------------------------------------------------------ */

/*
 * realloc-grow (bench/lib/workload.js initD/runD): d_buffers buffers advanced
 * round-robin; each step grows the next buffer by the next step size from a
 * pre-generated table with realloc, or, when that would pass d_max, frees it
 * and starts it again with malloc(d_start); then the buffer's first and last
 * 8 bytes are written. Initially buffer k is grown (untimed) until it holds
 * >= k * d_max / d_buffers bytes.
 */
struct dstate {
  uint8_t *inc;
  void **ptr;
  uint32_t *size;
  uint32_t cursor, slot;
  uint64_t reallocs, restarts, moved; /* of the last run_d call */
};

static inline void write_ends(void *q, uint32_t n, uint32_t c) {
  double v = c;
  memcpy(q, &v, 8);
  memcpy((char *)q + n - 8, &v, 8);
  __asm__ volatile("" : : "r"(q) : "memory"); /* the stores stay */
}

static double run_d(uint32_t steps, void *ctx) {
  struct dstate *s = ctx;
  const uint32_t K = P.d_buffers, mask = P.d_table - 1, max = P.d_max, start = P.d_start;
  uint32_t c = s->cursor, j = s->slot;
  uint64_t reallocs = 0, restarts = 0, moved = 0;
  double t0 = now_ms();
  for (uint32_t i = 0; i < steps; i++) {
    void *p0 = s->ptr[j], *q;
    uint32_t n = s->size[j] + s->inc[c & mask];
    if (n > max) {
      FREE(p0);
      n = start;
      q = MALLOC(n);
      restarts++;
    } else {
      q = REALLOC(p0, n);
      reallocs++;
      moved += q != p0;
    }
    if (q == NULL) die("(d): malloc/realloc returned NULL");
    s->ptr[j] = q;
    s->size[j] = n;
    write_ends(q, n, c);
    c++;
    if (++j == K) j = 0;
  }
  double t = now_ms() - t0;
  s->cursor = c;
  s->slot = j;
  s->reallocs = reallocs;
  s->restarts = restarts;
  s->moved = moved;
  return t;
}

static void workload_d(void) {
  if (P.d_table & (P.d_table - 1)) die("d_table must be a power of two");
  struct dstate s = {0};
  const uint32_t K = P.d_buffers, mask = P.d_table - 1;
  s.inc = calloc(P.d_table, 1);
  s.ptr = calloc(K, sizeof *s.ptr);
  s.size = calloc(K, sizeof *s.size);
  xs_state = P.seed_d;
  for (uint32_t i = 0; i < P.d_table; i++) s.inc[i] = (uint8_t)(P.d_step_min + xs_next() % P.d_step_span);
  uint32_t c = 0;
  for (uint32_t k = 0; k < K; k++) {
    uint32_t n = P.d_start;
    void *q = MALLOC(n);
    if (q == NULL) die("(d): malloc returned NULL");
    uint32_t target = (uint32_t)(((uint64_t)k * P.d_max) / K);
    for (;;) {
      write_ends(q, n, c);
      if (n >= target) break;
      n += s.inc[c++ & mask];
      q = REALLOC(q, n);
      if (q == NULL) die("(d): realloc returned NULL");
    }
    s.ptr[k] = q;
    s.size[k] = n;
  }
  s.cursor = c;
  uint32_t steps = calibrate(run_d, &s, 1000, P.target_ms);
  warm_up(run_d, &s, steps);
  steps = recalibrate(run_d, &s, steps, P.target_ms);
  double *ns = calloc(P.reps, sizeof *ns), *rs = calloc(P.reps, sizeof *rs),
         *rst = calloc(P.reps, sizeof *rst), *mv = calloc(P.reps, sizeof *mv);
  for (uint32_t i = 0; i < P.reps; i++) {
    double t = run_d(steps, &s);
    ns[i] = t * 1e6 / (double)(s.reallocs ? s.reallocs : 1);
    rs[i] = (double)s.reallocs;
    rst[i] = (double)s.restarts;
    mv[i] = (double)s.moved;
  }
  printf("\"d\":{\"buffers\":%u,\"steps\":%u,\"ops_per_rep\":%.0f,\"ns_per_op\":%.4f,", K, steps,
         median(rs, P.reps), median(ns, P.reps));
  print_array("samples", ns, P.reps);
  printf(",");
  print_array("reallocs", rs, P.reps);
  printf(",");
  print_array("restarts", rst, P.reps);
  printf(",");
  print_array("moved", mv, P.reps);
  printf("}");
  for (uint32_t k = 0; k < K; k++) FREE(s.ptr[k]);
  free(ns);
  free(rs);
  free(rst);
  free(mv);
  free(s.inc);
  free(s.ptr);
  free(s.size);
}

/* ---- workload (c) ------------------------------------------------------ */

/*
 * Two threads; on an 'S' rep only thread 0 runs (thread 1 waits at the
 * barrier), on a 'D' rep both run. Solo and duo reps alternate S D D S ...
 * within one run, as in bench/lib/workload.js scheduleC().
 */
static int duo_rep(uint32_t r) { return r % 4 == 1 || r % 4 == 2; }

struct cthread {
  pthread_t tid;
  pthread_barrier_t *bar;
  uint32_t idx, rounds;
  double *t0, *t1; /* per rep */
};

static void *c_thread(void *arg) {
  struct cthread *ct = arg;
  void **ptrs = calloc(P.a_blocks, sizeof *ptrs);
  warm_up(run_a_ctx, ptrs, ct->rounds);
  for (uint32_t r = 0; r < 2 * P.c_reps; r++) {
    pthread_barrier_wait(ct->bar);
    if (!duo_rep(r) && ct->idx != 0) continue;
    ct->t0[r] = now_ms();
    run_a(ct->rounds, ptrs);
    ct->t1[r] = now_ms();
  }
  free(ptrs);
  return NULL;
}

static void workload_c(void) {
  void **ptrs = calloc(P.a_blocks, sizeof *ptrs);
  uint32_t rounds = calibrate(run_a_ctx, ptrs, 1, P.c_target_ms);
  free(ptrs);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 2);
  struct cthread ct[2];
  for (uint32_t i = 0; i < 2; i++) {
    ct[i].bar = &bar;
    ct[i].idx = i;
    ct[i].rounds = rounds;
    ct[i].t0 = calloc(2 * P.c_reps, sizeof(double));
    ct[i].t1 = calloc(2 * P.c_reps, sizeof(double));
    pthread_create(&ct[i].tid, NULL, c_thread, &ct[i]);
  }
  for (uint32_t i = 0; i < 2; i++) pthread_join(ct[i].tid, NULL);
  pthread_barrier_destroy(&bar);

  double ops = 2.0 * P.a_blocks * rounds; /* per thread */
  double *m1 = calloc(P.c_reps, sizeof *m1), *m2 = calloc(P.c_reps, sizeof *m2);
  uint32_t n1 = 0, n2 = 0;
  for (uint32_t r = 0; r < 2 * P.c_reps; r++) {
    if (!duo_rep(r)) {
      m1[n1++] = ops / ((ct[0].t1[r] - ct[0].t0[r]) * 1e3);
    } else {
      double lo = ct[0].t0[r] < ct[1].t0[r] ? ct[0].t0[r] : ct[1].t0[r];
      double hi = ct[0].t1[r] > ct[1].t1[r] ? ct[0].t1[r] : ct[1].t1[r];
      m2[n2++] = 2 * ops / ((hi - lo) * 1e3);
    }
  }
  double one = median(m1, n1), two = median(m2, n2);
  printf("\"c\":{\"rounds_per_worker\":%u,\"ops_per_worker\":%.0f,", rounds, ops);
  printf("\"one_mops\":%.4f,\"two_mops\":%.4f,\"scaling\":%.4f,", one, two, two / one);
  print_array("one_samples", m1, n1);
  printf(",");
  print_array("two_samples", m2, n2);
  printf("}");
  for (uint32_t i = 0; i < 2; i++) {
    free(ct[i].t0);
    free(ct[i].t1);
  }
  free(m1);
  free(m2);
}

/* ---- main -------------------------------------------------------------- */

static void set_param(const char *kv) {
  const char *eq = strchr(kv, '=');
  if (!eq) die("arguments are key=value");
  size_t kl = (size_t)(eq - kv);
  const char *v = eq + 1;
#define U(name)                                                   \
  if (kl == strlen(#name) && !strncmp(kv, #name, kl)) {           \
    P.name = (uint32_t)strtoul(v, NULL, 0);                       \
    return;                                                       \
  }
#define D(name)                                                   \
  if (kl == strlen(#name) && !strncmp(kv, #name, kl)) {           \
    P.name = strtod(v, NULL);                                     \
    return;                                                       \
  }
  U(a_blocks) U(a_tables) U(size_min) U(size_span) U(b_live) U(b_table)
  U(seed_a) U(seed_b_fill) U(seed_b_steps) U(reps) U(warmup) U(c_reps)
  U(d_buffers) U(d_start) U(d_step_min) U(d_step_span) U(d_max) U(d_table) U(seed_d)
  D(target_ms) D(c_target_ms) D(warmup_ms)
  if (kl == 9 && !strncmp(kv, "workloads", 9)) {
    snprintf(P.workloads, sizeof P.workloads, "%s", v);
    return;
  }
  fprintf(stderr, "native_micro: unknown parameter %s\n", kv);
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) set_param(argv[i]);
  if (P.b_table & (P.b_table - 1)) die("b_table must be a power of two");
  if (P.reps == 0 || P.c_reps == 0) die("reps must be > 0");

  a_sizes = calloc((size_t)P.a_blocks * P.a_tables, sizeof *a_sizes);
  xs_state = P.seed_a;
  for (uint32_t i = 0; i < P.a_blocks * P.a_tables; i++)
    a_sizes[i] = P.size_min + xs_next() % P.size_span;

  printf("{\"allocator\":\"%s\"", ALLOC_NAME);
#ifdef USE_MIMALLOC
  printf(",\"version\":%d", mi_version());
#endif
  if (strchr(P.workloads, 'a')) printf(","), workload_a();
  if (strchr(P.workloads, 'b')) printf(","), workload_b();
  if (strchr(P.workloads, 'c')) printf(","), workload_c();
  if (strchr(P.workloads, 'd')) printf(","), workload_d();
  printf("}\n");
  free(a_sizes);
  return 0;
}
