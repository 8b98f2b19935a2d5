// AssemblyScript's TLSF allocator (std/assembly/rt/tlsf.ts, reached through
// the `heap` namespace) exported for bench/micro.js. Built by
// bench/peers/build.sh with `--runtime minimal -O3 --noAssert`.

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

export function free(ptr: usize): void {
  heap.free(ptr);
}

// Resize in place when the block (or the free block after it) is large
// enough, else allocate, copy and free (std/assembly/rt/tlsf.ts __realloc).
export function realloc(ptr: usize, size: usize): usize {
  return heap.realloc(ptr, size);
}

// Workload (a) run entirely inside wasm, to separate the JS<->wasm call
// overhead from the allocator cost. `sizes` holds `ntables` runs of `nblocks`
// u32 sizes (round r uses run r % ntables); `ptrs` has room for `nblocks`
// pointers. Blocks are freed in allocation order. Returns 0 on success.
export function benchA(sizes: usize, nblocks: u32, ntables: u32, rounds: u32, ptrs: usize): u32 {
  for (let r: u32 = 0; r < rounds; r++) {
    const sz = sizes + (<usize>((r % ntables) * nblocks) << 2);
    for (let i: u32 = 0; i < nblocks; i++) {
      const p = heap.alloc(<usize>load<u32>(sz + (<usize>i << 2)));
      if (p == 0) return 1;
      store<usize>(ptrs + <usize>i * sizeof<usize>(), p);
    }
    for (let i: u32 = 0; i < nblocks; i++) {
      heap.free(load<usize>(ptrs + <usize>i * sizeof<usize>()));
    }
  }
  return 0;
}
