// tlsf-wasm's glue for the cold protocol (bench/lib/cold-peers.js): calloc
// and aligned allocation in JS over the module's alloc/free; realloc is the
// module's own (heap.realloc) when it exports one, else done here too.
// cold-peers.js imports this module once per allocator instance, under a
// different URL each time (cold-tlsf.js?instance=N), so that the warm-up
// instance's glue and the measured one's do not share code and type
// feedback: shared, the call sites `this.ex.alloc(n)` would see two wasm
// instances' functions and lose V8's inlining of the JS->wasm call.

/**
 * AssemblyScript's TLSF (--runtime minimal) puts a 4-byte mmInfo word below
 * every block (block size | FREE 1 | LEFTFREE 2; FREE is clear in a live
 * block) and aligns blocks to 16 bytes. Usable size = mmInfo & ~3. Aligned
 * blocks (align > 16) are over-allocated; the 8 bytes below the aligned
 * address hold (the original address, -1): -1 has the FREE bit set, which no
 * live block's mmInfo has, so free() tells them apart with one load.
 */
export class TlsfAdapter {
  constructor(ex) {
    this.ex = ex;
    this.wasmRealloc = typeof ex.realloc === 'function';
    this.memory = ex.memory;
    this.u8 = new Uint8Array(this.memory.buffer);
    this.i32 = new Int32Array(this.memory.buffer);
  }

  views() {
    if (this.i32.length === 0 || this.i32.buffer !== this.memory.buffer) {
      this.u8 = new Uint8Array(this.memory.buffer);
      this.i32 = new Int32Array(this.memory.buffer);
    }
  }

  malloc(n) {
    return this.ex.alloc(n);
  }

  free(q) {
    if (q === 0) return;
    if (this.i32.length === 0) this.views();
    const h = this.i32[(q >>> 2) - 1];
    this.ex.free((h & 1) === 0 ? q : this.i32[(q >>> 2) - 2]);
  }

  usable(q) {
    this.views();
    const h = this.i32[(q >>> 2) - 1];
    if ((h & 1) === 0) return h & ~3;
    const p = this.i32[(q >>> 2) - 2];
    return (this.i32[(p >>> 2) - 1] & ~3) - (q - p);
  }

  calloc(count, size) {
    const n = count * size;
    const p = this.ex.alloc(n);
    if (p !== 0) {
      this.views();
      this.u8.fill(0, p, p + n);
    }
    return p;
  }

  mallocAligned(n, align) {
    if (align <= 16) return this.ex.alloc(n);
    const p = this.ex.alloc(n + align);
    if (p === 0) return 0;
    const q = (p + align - 1) & -align;
    if (q !== p) {
      this.views();
      this.i32[(q >>> 2) - 2] = p;
      this.i32[(q >>> 2) - 1] = -1;
    }
    return q;
  }

  realloc(q, n) {
    if (q === 0) return this.ex.alloc(n);
    if (this.wasmRealloc) {
      if (this.i32.length === 0) this.views();
      if ((this.i32[(q >>> 2) - 1] & 1) === 0) return this.ex.realloc(q, n); // not an over-allocated aligned block
    }
    const u = this.usable(q);
    if (n <= u) return q;
    const np = this.ex.alloc(n);
    if (np === 0) return 0;
    this.views();
    this.u8.copyWithin(np, q, q + u);
    this.free(q);
    return np;
  }
}
