/*
 * native_replay.c: single-threaded replay of a parsed mtrace v1 trace, the
 * native reference of bench/replay.js.
 *
 *   gcc -O2 -DUSE_MIMALLOC native_replay.c -lmimalloc  -> mi_malloc & co.
 *   gcc -O2               native_replay.c              -> glibc malloc & co.
 *
 * Usage: native_replay FILE.bin [events=N] [mode=cold [sample=K]]
 *
 * FILE.bin is the binary form written by bench/lib/trace.js (the format is
 * documented at the top of that file). Every event of the first N (default:
 * all) is replayed in file order on this one thread, exactly as the
 * JavaScript peers do it:
 *   m: malloc(size)              c: calloc(1, size)
 *   a: aligned allocation        r: realloc(old, size)        f: free
 * and every new block is touched: one 32-bit word (the object id) every 64
 * bytes of its first min(size, 4096) bytes (a single byte for sizes 1..3).
 * Only the replay loop is timed (clock_gettime, CLOCK_MONOTONIC); the objects
 * still live at the end are freed afterwards, untimed.
 *
 * Memory: the trace arrays and the id -> pointer table live in anonymous
 * mmap'ed memory that is touched before the replay, so the heap's share of
 * the peak RSS is VmHWM after the replay minus VmRSS just before it.
 *
 * mode=cold (the cold protocol, bench/lib/replay-cold.js; the headline
 * table of bench/replay.js): the same per-event work as its JavaScript
 * worker (bench/lib/replay-cold-worker.js) instead of the touch: every new
 * object of n > 0 bytes gets its id in its first min(n, 4) bytes (byte
 * stores, little-endian) and, when n > 4, the marker (id & 0xff) ^ 0x5a in
 * its last requested byte; free and realloc read both back and compare them
 * first (realloc: also the id, and the old marker when the old size fits,
 * at the new address, which is then stamped with the new id). A mismatch
 * stops the replay with an error naming the event. The loop is timed in
 * chunks of K events (default 65536); between chunks, off the clock, VmRSS
 * is sampled (footprint_peak = the highest sample - VmRSS before the replay).
 * No warm-up: the process is fresh.
 *
 * Prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef USE_MIMALLOC
#include <mimalloc.h>
#define ALLOC_NAME "native-mimalloc"
#define MALLOC(n) mi_malloc(n)
#define CALLOC(n) mi_calloc(1, n)
#define REALLOC(p, n) mi_realloc(p, n)
#define FREE(p) mi_free(p)
static void *aligned(size_t align, size_t n) { return mi_malloc_aligned(n, align); }
#else
#define ALLOC_NAME "native-glibc"
#define MALLOC(n) malloc(n)
#define CALLOC(n) calloc(1, n)
#define REALLOC(p, n) realloc(p, n)
#define FREE(p) free(p)
static void *aligned(size_t align, size_t n) {
  void *p = NULL;
  if (align < sizeof(void *)) align = sizeof(void *);
  return posix_memalign(&p, align, n) == 0 ? p : NULL;
}
#endif

enum { OP_MALLOC = 1, OP_CALLOC = 2, OP_ALIGNED = 3, OP_REALLOC = 4, OP_FREE = 5 };
#define HEADER_BYTES 256
#define P8(x) (((x) + 7) & ~(uint64_t)7)

static void die(const char *msg, const char *detail) {
  fprintf(stderr, "native_replay: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
  exit(2);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* anonymous memory outside the allocator under test, touched (resident) */
static void *region(size_t bytes) {
  if (bytes == 0) bytes = 8;
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) die("mmap failed", NULL);
  memset(p, 0, bytes);
  return p;
}

static void read_at(int fd, void *dst, size_t bytes, uint64_t pos) {
  char *d = dst;
  while (bytes > 0) {
    ssize_t r = pread(fd, d, bytes > (1u << 30) ? (1u << 30) : bytes, (off_t)pos);
    if (r <= 0) die("short read of the trace file", NULL);
    d += r;
    bytes -= (size_t)r;
    pos += (uint64_t)r;
  }
}

/*
 * VmRSS or VmHWM (the peak RSS of this process image) from /proc/self/status,
 * in bytes; -1 when unavailable. Not getrusage's ru_maxrss: that one survives
 * execve, so a child of a big process (node) starts with its parent's peak.
 */
static long status_bytes(const char *key) {
  char line[256];
  long kb = -1;
  size_t kl = strlen(key);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
      kb = strtol(line + kl + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

static inline void touch(char *p, uint32_t n, uint32_t v) {
  if (n >= 4) {
    uint32_t lim = (n < 4096 ? n : 4096) - 4;
    for (uint32_t off = 0; off <= lim; off += 64) *(uint32_t *)(p + off) = v;
  } else if (n > 0) {
    *(uint8_t *)p = (uint8_t)v;
  }
}

/* ---- mode=cold: stamps and checks ---------------------------------------- */

#define MARK 0x5a

static inline void stamp(unsigned char *p, uint32_t n, uint32_t k) {
  p[0] = (unsigned char)k;
  if (n > 1) p[1] = (unsigned char)(k >> 8);
  if (n > 2) p[2] = (unsigned char)(k >> 16);
  if (n > 3) {
    p[3] = (unsigned char)(k >> 24);
    if (n > 4) p[n - 1] = (unsigned char)((k & 0xff) ^ MARK);
  }
}

/* do the first min(m, 4) bytes at p hold id k? (m > 0) */
static inline int id_ok(const unsigned char *p, uint32_t m, uint32_t k) {
  if (p[0] != (k & 0xff)) return 0;
  if (m > 1 && p[1] != ((k >> 8) & 0xff)) return 0;
  if (m > 2 && p[2] != ((k >> 16) & 0xff)) return 0;
  return m < 4 || p[3] == (k >> 24);
}

static inline int stamp_ok(const unsigned char *p, uint32_t n, uint32_t k) {
  return id_ok(p, n, k) && (n <= 4 || p[n - 1] == ((k & 0xff) ^ MARK));
}

static int cold_fail(uint32_t i, const char *what, uint32_t k) {
  printf("{\"allocator\":\"%s\",\"mode\":\"cold\",\"error\":\"event %u: %s (object %u)\"}\n", ALLOC_NAME, i + 1, what, k);
  return 1;
}

static int run_cold(uint32_t n, uint32_t objects, const uint8_t *op, const uint32_t *id, const uint32_t *old,
                    const uint32_t *size, const uint32_t *align, uint32_t sample) {
  unsigned char **live = region(sizeof(char *) * ((uint64_t)objects + 1));
  uint32_t *sz = region(4ull * ((uint64_t)objects + 1));
  long rss0 = status_bytes("VmRSS");
  long peak = rss0;
  double ms = 0;
  for (uint32_t from = 0; from < n;) {
    uint32_t to = n - from > sample ? from + sample : n;
    double t0 = now_ms();
    for (uint32_t i = from; i < to; i++) {
      uint32_t o = op[i], k = id[i], nn;
      unsigned char *p;
      if (o == OP_FREE) {
        p = live[k];
        nn = sz[k];
        if (nn > 0 && !stamp_ok(p, nn, k)) return cold_fail(i, "stamp changed before free", k);
        FREE(p);
        live[k] = NULL;
        continue;
      }
      nn = size[i];
      switch (o) {
        case OP_MALLOC: p = MALLOC(nn); break;
        case OP_CALLOC: p = CALLOC(nn); break;
        case OP_ALIGNED: p = aligned(align[i], nn); break;
        default: { /* OP_REALLOC */
          uint32_t q = old[i], nq = sz[q];
          unsigned char *pq = live[q];
          if (nq > 0 && !stamp_ok(pq, nq, q)) return cold_fail(i, "stamp changed before realloc", q);
          p = REALLOC(pq, nn);
          if (p == NULL && nn == 0) { /* freed */
            live[q] = NULL;
            live[k] = NULL;
            sz[k] = 0;
            continue;
          }
          if (p == NULL) return cold_fail(i, "realloc returned NULL", q);
          live[q] = NULL;
          uint32_t m = nq < nn ? nq : nn;
          if (m > 0 && (!id_ok(p, m, q) || (nq > 4 && nq <= nn && p[nq - 1] != ((q & 0xff) ^ MARK))))
            return cold_fail(i, "realloc did not keep the contents", q);
        }
      }
      if (p == NULL) return cold_fail(i, "allocation returned NULL", k);
      live[k] = p;
      sz[k] = nn;
      if (nn > 0) stamp(p, nn, k);
    }
    ms += now_ms() - t0;
    from = to;
    long r = status_bytes("VmRSS"); /* off the clock */
    if (r > peak) peak = r;
  }
  long hwm = status_bytes("VmHWM");
  uint32_t freed = 0;
  for (uint64_t k = 1; k <= objects; k++)
    if (live[k] != NULL) {
      if (sz[k] > 0 && !stamp_ok(live[k], sz[k], (uint32_t)k)) return cold_fail(n - 1, "stamp changed (final free)", (uint32_t)k);
      FREE(live[k]);
      freed++;
    }
  printf("{\"allocator\":\"%s\",\"mode\":\"cold\"", ALLOC_NAME);
#ifdef USE_MIMALLOC
  printf(",\"version\":%d", mi_version());
#endif
  printf(",\"events\":%u,\"ms\":%.4f,\"ns_per_event\":%.4f", n, ms, ms * 1e6 / (n ? n : 1));
  printf(",\"rss_before\":%ld,\"footprint_peak\":%ld,\"heap_rss\":%ld,\"freed_at_end\":%u}\n", rss0,
         rss0 >= 0 ? peak - rss0 : -1, rss0 >= 0 && hwm >= 0 ? hwm - rss0 : -1, freed);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) die("usage: native_replay FILE.bin [events=N] [mode=cold [sample=K]]", NULL);
  uint64_t want = UINT64_MAX;
  int cold = 0;
  uint32_t sample = 65536;
  for (int i = 2; i < argc; i++) {
    if (strncmp(argv[i], "events=", 7) == 0) want = strtoull(argv[i] + 7, NULL, 10);
    else if (strcmp(argv[i], "mode=cold") == 0) cold = 1;
    else if (strcmp(argv[i], "mode=warm") == 0) cold = 0;
    else if (strncmp(argv[i], "sample=", 7) == 0) sample = (uint32_t)strtoul(argv[i] + 7, NULL, 10);
    else die("unknown argument", argv[i]);
  }
  if (sample == 0) sample = 65536;

  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) die("cannot open", argv[1]);
  unsigned char h[HEADER_BYTES];
  read_at(fd, h, HEADER_BYTES, 0);
  if (memcmp(h, "MTRBIN1\0", 8) != 0) die("not a binary trace file", argv[1]);
  uint32_t hb, total, objects;
  memcpy(&hb, h + 8, 4);
  memcpy(&total, h + 12, 4);
  memcpy(&objects, h + 16, 4);
  if (hb != HEADER_BYTES) die("unexpected header size", argv[1]);
  struct stat st;
  uint64_t off_op = HEADER_BYTES, off_tid = off_op + P8(total), off_id = off_tid + P8(total);
  uint64_t off_old = off_id + 4ull * total, off_size = off_old + 4ull * total;
  uint64_t off_align = off_size + 4ull * total;
  if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != off_align + 4ull * total) die("file size does not match its header", argv[1]);
  uint32_t n = want < total ? (uint32_t)want : total;

  uint8_t *op = region(n);
  uint32_t *id = region(4ull * n), *old = region(4ull * n), *size = region(4ull * n), *align = region(4ull * n);
  read_at(fd, op, n, off_op);
  read_at(fd, id, 4ull * n, off_id);
  read_at(fd, old, 4ull * n, off_old);
  read_at(fd, size, 4ull * n, off_size);
  read_at(fd, align, 4ull * n, off_align);
  close(fd);
  if (cold) return run_cold(n, objects, op, id, old, size, align, sample);
  /* ids created in the prefix: at most `objects` */
  char **live = region(sizeof(char *) * ((uint64_t)objects + 1));

  long rss0 = status_bytes("VmRSS");
  double t0 = now_ms();
  uint32_t i;
  for (i = 0; i < n; i++) {
    uint32_t o = op[i], k = id[i];
    char *p;
    switch (o) {
      case OP_MALLOC: p = MALLOC(size[i]); break;
      case OP_CALLOC: p = CALLOC(size[i]); break;
      case OP_ALIGNED: p = aligned(align[i], size[i]); break;
      case OP_REALLOC:
        p = REALLOC(live[old[i]], size[i]);
        if (p != NULL) live[old[i]] = NULL;
        break;
      default: /* OP_FREE */
        FREE(live[k]);
        live[k] = NULL;
        continue;
    }
    if (p == NULL) break;
    live[k] = p;
    touch(p, size[i], k);
  }
  double t1 = now_ms();
  long maxrss = status_bytes("VmHWM");
  if (i < n) {
    printf("{\"allocator\":\"%s\",\"error\":\"allocation of %u bytes returned NULL at event %u\"}\n", ALLOC_NAME, size[i], i + 1);
    return 1;
  }
  uint32_t freed = 0;
  for (uint64_t k = 1; k <= objects; k++)
    if (live[k] != NULL) {
      FREE(live[k]);
      freed++;
    }

  printf("{\"allocator\":\"%s\"", ALLOC_NAME);
#ifdef USE_MIMALLOC
  printf(",\"version\":%d", mi_version());
#endif
  printf(",\"events\":%u,\"ms\":%.4f,\"ns_per_event\":%.4f", n, t1 - t0, (t1 - t0) * 1e6 / (n ? n : 1));
  printf(",\"rss_before\":%ld,\"maxrss\":%ld,\"heap_rss\":%ld,\"freed_at_end\":%u}\n", rss0, maxrss,
         rss0 >= 0 && maxrss >= 0 ? maxrss - rss0 : -1, freed);
  return 0;
}
