/*
 * dlmalloc_exports.c: wasi-libc's malloc/free (dlmalloc) as a wasm module
 * for bench/micro.js.
 *
 * malloc and free are exported straight from libc by the linker
 * (-Wl,--export=malloc,--export=free); this file only adds a batched loop
 * so the JS<->wasm call overhead can be separated from the allocator cost.
 */
#include <stdint.h>
#include <stdlib.h>

#define WASM_EXPORT(name) __attribute__((export_name(name)))

/*
 * Workload (a), run entirely inside wasm: `rounds` times, allocate `nblocks`
 * blocks whose sizes come from `sizes` (a table of `ntables` consecutive
 * runs of `nblocks` sizes, round r uses run r % ntables), then free them in
 * allocation order. Returns 0 on success, or 1 when malloc returned NULL.
 */
WASM_EXPORT("bench_a")
uint32_t bench_a(const uint32_t *sizes, uint32_t nblocks, uint32_t ntables,
                 uint32_t rounds, void **ptrs) {
  for (uint32_t r = 0; r < rounds; r++) {
    const uint32_t *sz = sizes + (r % ntables) * nblocks;
    for (uint32_t i = 0; i < nblocks; i++) {
      void *p = malloc(sz[i]);
      if (p == NULL) return 1;
      ptrs[i] = p;
    }
    for (uint32_t i = 0; i < nblocks; i++) free(ptrs[i]);
  }
  return 0;
}
