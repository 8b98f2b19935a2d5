// Worker of test/torture.test.js, and the block format / shared layout that
// the test and this worker share (exported; nothing runs on the main thread).
//
// A worker attaches, posts its agentId, adopts the blocks its slot's previous
// (killed) worker had published, then loops until the stop flag: allocate
// (malloc / calloc / mallocAligned, mixed sizes), fill, verify, realloc, free,
// and exchange blocks through the shared transfer array. On stop it verifies
// and frees everything it holds and detaches.
//
// Block format (n >= 16 bytes, n = the requested size; only whole u32 words
// are written):
//   word 0 = n ^ W0          word 1 = serial ^ W1      word 2 = blockBytes ^ W2
//   word k >= 3 = (p + 4k) ^ serial ^ WK              (p = the block's address)
// `serial` is a random u32 drawn at each allocation and remembered by the
// holder, so two holders of one address (same length or not) are told apart;
// the address in every word catches a block that overlaps another or was
// copied elsewhere. `blockBytes` is an upper bound of the bytes the block
// takes in `stats().used` (its block size), used for the leak allowance.
//
// Publication protocol (any prefix of any step leaves every published
// address pointing at a complete block; a kill leaks at most the block(s)
// recorded in the slot's HAND words):
//   alloc:    HAND = bound -> q = malloc -> fill -> SERIAL[i] = s; Atomics.store(ADDR[i], q) -> HAND = 0
//   free:     verify -> HAND = blockBytes -> Atomics.store(ADDR[i], 0) -> free -> HAND = 0
//   realloc:  verify -> HAND(2 blocks) = old + new -> ADDR[i] = 0 -> realloc -> check copied prefix
//             -> refill -> publish -> HAND = 0
//   transfer: cur = load(T[j]); HAND = max(mine, cur's) -> ADDR[i] = 0 -> CAS(T[j], cur, mine)
//             -> publish cur into ADDR[i] -> HAND = 0 -> verify cur
// A transfer slot holds serial16 | blockBytes/8 | address/8 in one BigInt64,
// so the taker knows the size bound of what it takes before it takes it.

import { isMainThread, workerData, parentPort } from 'node:worker_threads';
import { C } from '../../dist/types.js';

export const W0 = 0x7a11c0de;
export const W1 = 0x3c6ef372;
export const W2 = 0x1f83d9ab;
export const WK = 0xa54ff53a;
export const MAX_N = 1 << 22; // requested sizes stay below 4 MiB
// Large requests: three ranges that each fall in one size class: (96, 112],
// (192, 224] and (384, 448] KiB.
export const LARGE_RANGES = [[100 << 10, 112 << 10], [(192 << 10) + 8, 224 << 10], [(384 << 10) + 8, 448 << 10]];

// ctrl (Int32Array) layout
export const STOP = 0;
export const CORRUPT = 1; // corrupted blocks seen by workers
// LIVE: bytes of blocks allocated and not yet freed, leaked ones included: each
// block is counted (by an upper bound) before the call that allocates it and
// uncounted after the call that frees it, so a kill can only leave it too high
// (by at most the one block in hand).
export const LIVE = 2;
export const PEAK = 3; // high-water mark of LIVE
export const SLOT0 = 16;
export const PROGRESS = 0; // slot word: loop iterations
export const PHASE = 1; // slot word: 0 attaching, 1 adopting, 2 looping, 3 stopping
export const HAND_KIND = 2; // slot word: blocks in hand (0, 1, or 2 during a moving realloc)
export const HAND_BYTES = 3; // slot word: upper bound of their block bytes
export const HELD = 8; // slot words: ROW pairs (address, serial)
export const slotWords = (row) => HELD + 2 * row;

// counters (BigInt64Array), flushed by the workers every 256 iterations
export const CNT = { allocs: 0, bytes: 1, callocs: 2, aligned: 3, reallocs: 4, moved: 5, frees: 6, transfers: 7, verified: 8, huge: 9, large: 10, medium: 11 };
export const CNT_WORDS = 12;

export function fillBlock(u32, p, n, serial, blockBytes) {
  const w0 = p >>> 2;
  u32[w0] = (n ^ W0) >>> 0;
  u32[w0 + 1] = (serial ^ W1) >>> 0;
  u32[w0 + 2] = (blockBytes ^ W2) >>> 0;
  const words = n >>> 2;
  const x = (serial ^ WK) >>> 0;
  for (let k = 3, a = p + 12; k < words; k++, a += 4) u32[w0 + k] = (a ^ x) >>> 0;
}

/**
 * Verifies the block at p. `serial` is the full u32 serial the holder
 * expects, or (with mask 0xffff) its low 16 bits. Returns
 * { n, serial, blockBytes } or a string describing the corruption.
 */
export function verifyBlock(u32, p, serial, mask = 0xffffffff) {
  if (p === 0 || (p & 7) !== 0 || p >= u32.length * 4) return `bad address ${p}`;
  const w0 = p >>> 2;
  const n = (u32[w0] ^ W0) >>> 0;
  if (n < 16 || n >= MAX_N || w0 + (n >>> 2) > u32.length) return `block ${p}: impossible length word ${n} (raw ${u32[w0]})`;
  const s = (u32[w0 + 1] ^ W1) >>> 0;
  if (((s ^ serial) & mask) !== 0) return `block ${p} of ${n} bytes: serial ${s} is not the holder's ${serial} (mask ${mask}): another owner wrote it`;
  const blockBytes = (u32[w0 + 2] ^ W2) >>> 0;
  if (blockBytes < n || blockBytes > 2 * n + (1 << 17)) return `block ${p} of ${n} bytes: impossible blockBytes ${blockBytes}`;
  const words = n >>> 2;
  const x = (s ^ WK) >>> 0;
  for (let k = 3, a = p + 12; k < words; k++, a += 4) {
    if (u32[w0 + k] !== ((a ^ x) >>> 0)) {
      return `block ${p} of ${n} bytes (serial ${s}) differs at byte ${4 * k}: ${u32[w0 + k]} instead of ${(a ^ x) >>> 0}`;
    }
  }
  return { n, serial: s, blockBytes };
}

/** Transfer-slot value: serial16 (bits 48..63) | blockBytes/8 (29..47) | address/8 (0..28). */
export function packTransfer(p, blockBytes, serial) {
  return BigInt.asIntN(64, (BigInt(serial & 0xffff) << 48n) | (BigInt(blockBytes >>> 3) << 29n) | BigInt(p >>> 3));
}
export function unpackTransfer(v) {
  const u = BigInt.asUintN(64, v);
  return { p: Number(u & 0x1fffffffn) * 8, blockBytes: Number((u >> 29n) & 0x7ffffn) * 8, serial16: Number(u >> 48n) };
}

/**
 * Diagnostics only (a read-only look at the allocator's internals): the page record under p,
 * its A/R bits, and whether usableSize succeeds again a little later (a transient state) or
 * not (the block was lost). The layout is the build's (C of dist/types.js), the arrays the
 * allocator's internal `arena`.
 */
export function describePage(a, p) {
  const arena = a.arena;
  const meta = arena.mem;
  const pm = (x) => meta[arena.pm(x)];
  const aBit = (q) => (meta[arena.aw(q)] & (1 << ((q >>> C.GRANULE_SHIFT) & 31))) !== 0 ? 1 : 0;
  const rBit = (q) => (Atomics.load(meta, arena.rw(q)) & (1 << ((q >>> C.R_GRANULE_SHIFT) & 31))) !== 0 ? 1 : 0;
  const f = (rb) => (rb === 0 ? 'none' : `rec ${rb}: state ${Atomics.load(meta, rb + C.R_STATE)} bs ${meta[rb + C.R_BLOCK_SIZE]} reserved ${meta[rb + C.R_RESERVED]} ` +
    `cap ${meta[rb + C.R_CAPACITY]} used ${meta[rb + C.R_USED]} xfree ${meta[rb + C.R_XTHREAD_FREE]} owner ${Atomics.load(meta, rb + C.R_OWNER)} slices ${meta[rb + C.R_SLICES]} ` +
    `flags 0x${(meta[rb + C.R_FLAGS] >>> 0).toString(16)} origin ${meta[rb + C.R_ORIGIN]} start ${meta[rb + C.R_START] >>> 0}`);
  const s = p >>> C.SLICE_SHIFT;
  const out = [`slice ${s}: page ${f(pm(s))}; A bit ${aBit(p)}, R bit ${rBit(p)}`];
  const later = [];
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (const ms of [0, 1, 5, 20, 100]) {
    if (ms > 0) Atomics.wait(cell, 0, 0, ms);
    try { later.push(`+${ms}ms: ${a.usableSize(p)}`); } catch (e) { later.push(`+${ms}ms: ${e?.code}`); }
  }
  out.push(`usableSize again ${later.join(', ')}; page now ${f(pm(s))}; A bit ${aBit(p)}`);
  return out.join('; ');
}

if (!isMainThread) {
  const { Allocator } = await import('../../dist/index.js');
  const { makeRng } = await import('./common.js');
  const { handle, ctrlSab, transferSab, countersSab, slot, gen, seed, row: ROW, minIters } = workerData;

  const a = Allocator.attach(handle);
  // Bytes a request of n takes in the heap's accounting (stats().used counts blocks): goodSize(n),
  // except in padded modes (secure 3+), where goodSize(n) is n and the block holds n + 8 bytes, binned.
  const padded = a.goodSize(17) === 17;
  const plain = padded ? Allocator.create({ size: 1 << 20, secure: 1, shared: false }) : null;
  const blockOf = (n) => (padded ? plain.goodSize(n + 8) : a.goodSize(n));
  parentPort.postMessage({ type: 'ready', agentId: a.agentId, gen });

  const ctrl = new Int32Array(ctrlSab);
  const transfer = new BigInt64Array(transferSab);
  const counters = new BigInt64Array(countersSab);
  const T = transfer.length;
  const sb = SLOT0 + slot * slotWords(ROW);
  const hb = sb + HELD;
  const rnd = makeRng(seed);
  const u32 = a.u32;
  const u8 = a.u8;
  const where = `slot ${slot} gen ${gen} agent ${a.agentId}`;
  const cnt = new Array(CNT_WORDS).fill(0);
  let corrupt = 0;

  // Local shadow of this slot's row.
  const addr = new Array(ROW).fill(0);
  const ser = new Array(ROW).fill(0);
  const len = new Array(ROW).fill(0);
  const bbytes = new Array(ROW).fill(0);

  const report = (msg) => {
    corrupt++;
    Atomics.add(ctrl, CORRUPT, 1);
    parentPort.postMessage({ type: 'corrupt', where, msg });
  };
  const setHand = (kind, bytes) => {
    Atomics.store(ctrl, sb + HAND_BYTES, bytes);
    Atomics.store(ctrl, sb + HAND_KIND, kind);
  };
  const clearHand = () => Atomics.store(ctrl, sb + HAND_KIND, 0);
  const publish = (i, p, s) => {
    ctrl[hb + 2 * i + 1] = s | 0;
    Atomics.store(ctrl, hb + 2 * i, p | 0);
  };
  const unpublish = (i) => Atomics.store(ctrl, hb + 2 * i, 0);
  const liveAdd = (d) => {
    const v = Atomics.add(ctrl, LIVE, d) + d;
    let pk;
    while (v > (pk = Atomics.load(ctrl, PEAK)) && Atomics.compareExchange(ctrl, PEAK, pk, v) !== pk);
  };

  /** Full check of a held block: contents, and the allocator agrees it is live and big enough. */
  const check = (p, serial, mask, what) => {
    const r = verifyBlock(u32, p, serial, mask);
    if (typeof r === 'string') { report(`${what}: ${r}`); return null; }
    let us;
    try { us = a.usableSize(p); } catch (e) {
      report(`${what}: block ${p} of ${r.n} bytes (blockBytes ${r.blockBytes}, serial ${r.serial}, contents intact): ` +
        `usableSize threw ${e?.code} ${e?.message}; ${describePage(a, p)}`);
      return null;
    }
    if (us < r.n || us > r.blockBytes) { report(`${what}: block ${p} of ${r.n} bytes has usableSize ${us} (blockBytes ${r.blockBytes})`); return null; }
    cnt[CNT.verified]++;
    return r;
  };

  const drawSize = () => {
    const x = rnd() % 1000;
    if (x < 925) { // small: mostly tiny, some up to 4 KiB
      const y = rnd();
      return (y & 3) !== 0 ? 16 + ((y >>> 2) % 240) : 16 + ((y >>> 2) % 4080);
    }
    if (x < 985) { cnt[CNT.medium]++; return 10240 + (rnd() % 71681); } // 10..80 KiB
    if (x < 997) { // 100..500 KiB, in three size classes (each one 4 MiB page per agent)
      cnt[CNT.large]++;
      const [lo, hi] = LARGE_RANGES[rnd() % 3];
      return lo + (rnd() % (hi - lo + 1));
    }
    cnt[CNT.huge]++;
    return 524288 + 8 + (rnd() % (1536 << 10)); // 512 KiB .. 2 MiB: singleton pages
  };

  // --- adopt what the slot's previous worker published -------------------
  Atomics.store(ctrl, sb + PHASE, 1);
  let adopted = 0;
  for (let i = 0; i < ROW; i++) {
    const p = Atomics.load(ctrl, hb + 2 * i) >>> 0;
    if (p === 0) continue;
    const s = ctrl[hb + 2 * i + 1] >>> 0;
    const r = check(p, s, 0xffffffff, `${where} adopting row ${i}`);
    if (r === null) { unpublish(i); continue; } // not ours to free: leave it
    addr[i] = p; ser[i] = s; len[i] = r.n; bbytes[i] = r.blockBytes;
    adopted++;
  }
  Atomics.store(ctrl, sb + PHASE, 2);

  // --- operations ----------------------------------------------------------
  const allocate = (i) => {
    let n = drawSize();
    const kind = rnd() % 100;
    let q;
    let align = 8;
    let bound; // upper bound of the block bytes; counted in LIVE before the call
    if (kind < 15) { // calloc: check zeroes
      const count = 1 + (rnd() % 16);
      const size = Math.ceil(n / count);
      n = count * size;
      bound = blockOf(n);
      setHand(1, bound);
      liveAdd(bound);
      q = a.calloc(count, size);
      if (q === 0) throw new Error(`${where}: calloc(${count}, ${size}) returned 0`);
      const w0 = q >>> 2;
      const words = n >>> 2;
      for (let k = 0; k < words; k++) {
        if (u32[w0 + k] !== 0) { report(`${where}: calloc(${count}, ${size}) = ${q}: byte ${4 * k} is ${u32[w0 + k]}, not zero`); break; }
      }
      for (let b = q + 4 * words; b < q + n; b++) if (u8[b] !== 0) { report(`${where}: calloc ${q}: byte ${b - q} not zero`); break; }
      cnt[CNT.callocs]++;
    } else if (kind < 30) { // aligned
      align = 1 << (4 + (rnd() % 9)); // 16 .. 4096
      if (rnd() % 50 === 0) align = 65536;
      bound = blockOf(n + align) + align;
      setHand(1, bound);
      liveAdd(bound);
      q = a.mallocAligned(n, align);
      if (q === 0) throw new Error(`${where}: mallocAligned(${n}, ${align}) returned 0`);
      if (q % align !== 0) report(`${where}: mallocAligned(${n}, ${align}) = ${q} is not aligned`);
      cnt[CNT.aligned]++;
    } else {
      bound = blockOf(n);
      setHand(1, bound);
      liveAdd(bound);
      q = a.malloc(n);
      if (q === 0) throw new Error(`${where}: malloc(${n}) returned 0`);
    }
    const us = a.usableSize(q);
    if (us < n) report(`${where}: block ${q}: usableSize ${us} < requested ${n}`);
    // rounded up to 8: transfer slots store blockBytes / 8 (secure and debug modes' usableSize is the exact request)
    const bb = (Math.min(bound, us + (align > 8 ? align - 8 : 0)) + 7) & ~7;
    const s = (rnd() | 1) >>> 0;
    fillBlock(u32, q, n, s, bb);
    publish(i, q, s);
    clearHand();
    addr[i] = q; ser[i] = s; len[i] = n; bbytes[i] = bb;
    liveAdd(bb - bound);
    cnt[CNT.allocs]++;
    cnt[CNT.bytes] += n;
  };

  const drop = (i) => { addr[i] = 0; ser[i] = 0; len[i] = 0; bbytes[i] = 0; };

  const freeAt = (i) => {
    const p = addr[i];
    if (check(p, ser[i], 0xffffffff, `${where} free`) === null) { unpublish(i); drop(i); return; }
    setHand(1, bbytes[i]);
    unpublish(i);
    a.free(p);
    clearHand();
    liveAdd(-bbytes[i]);
    drop(i);
    cnt[CNT.frees]++;
  };

  const reallocAt = (i) => {
    const p = addr[i];
    const r = check(p, ser[i], 0xffffffff, `${where} realloc`);
    if (r === null) { unpublish(i); drop(i); return; }
    // half in place (usable/2 <= m <= usable: the contract says it stays), half to a fresh size
    const us0 = a.usableSize(p);
    const inPlace = (rnd() & 1) !== 0;
    const m = inPlace ? Math.max(16, Math.ceil(us0 / 2) + (rnd() % (us0 - Math.ceil(us0 / 2) + 1))) : drawSize();
    const gm = blockOf(m);
    setHand(2, bbytes[i] + gm);
    liveAdd(gm);
    unpublish(i);
    const q = a.realloc(p, m);
    if (q === 0) throw new Error(`${where}: realloc(${p}, ${m}) returned 0`);
    // the copied prefix still reads as the old block at the old address
    const keep = Math.min(r.n, m) >>> 2;
    const w0 = q >>> 2;
    const x = (ser[i] ^ WK) >>> 0;
    let bad = -1;
    if (keep >= 1 && u32[w0] !== ((r.n ^ W0) >>> 0)) bad = 0;
    else if (keep >= 2 && u32[w0 + 1] !== ((ser[i] ^ W1) >>> 0)) bad = 4;
    else if (keep >= 3 && u32[w0 + 2] !== ((bbytes[i] ^ W2) >>> 0)) bad = 8;
    else for (let k = 3, ad = p + 12; k < keep; k++, ad += 4) if (u32[w0 + k] !== ((ad ^ x) >>> 0)) { bad = 4 * k; break; }
    if (bad >= 0) report(`${where}: realloc(${p} of ${r.n}, ${m}) = ${q}: copied byte ${bad} differs`);
    if (inPlace && q !== p) report(`${where}: realloc(${p}, ${m}) with usable ${us0} moved to ${q}`);
    const us = a.usableSize(q);
    if (us < m) report(`${where}: realloc ${q}: usableSize ${us} < ${m}`);
    const bb = ((q === p ? Math.max(bbytes[i], us) : us) + 7) & ~7;
    const s = (rnd() | 1) >>> 0;
    fillBlock(u32, q, m, s, bb);
    publish(i, q, s);
    clearHand();
    liveAdd(bb - gm - bbytes[i]);
    addr[i] = q; ser[i] = s; len[i] = m; bbytes[i] = bb;
    cnt[CNT.reallocs]++;
    if (q !== p) cnt[CNT.moved]++;
  };

  const transferAt = (i) => {
    const p = addr[i];
    if (check(p, ser[i], 0xffffffff, `${where} transfer out`) === null) { unpublish(i); drop(i); return; }
    const j = rnd() % T;
    const mine = packTransfer(p, bbytes[i], ser[i]);
    for (let tries = 0; tries < 4; tries++) {
      const cur = Atomics.load(transfer, j);
      const theirs = cur === 0n ? null : unpackTransfer(cur);
      setHand(1, Math.max(bbytes[i], theirs === null ? 0 : theirs.blockBytes));
      if (tries === 0) unpublish(i);
      if (Atomics.compareExchange(transfer, j, cur, mine) !== cur) continue;
      drop(i);
      cnt[CNT.transfers]++;
      if (theirs !== null) {
        const q = theirs.p;
        const s = (u32[(q >>> 2) + 1] ^ W1) >>> 0; // full serial; its low 16 bits are checked below
        publish(i, q, s);
        clearHand();
        const r = check(q, theirs.serial16, 0xffff, `${where} transfer in (slot ${j})`);
        if (r === null) { unpublish(i); return; }
        if (r.blockBytes !== theirs.blockBytes) report(`${where}: transfer slot ${j}: block ${q} says blockBytes ${r.blockBytes}, slot says ${theirs.blockBytes}`);
        addr[i] = q; ser[i] = r.serial; len[i] = r.n; bbytes[i] = r.blockBytes;
      } else {
        clearHand();
      }
      return;
    }
    publish(i, p, ser[i]); // the slot kept changing: keep ours
    clearHand();
  };

  const verifyAll = () => {
    for (let i = 0; i < ROW; i++) {
      if (addr[i] !== 0 && check(addr[i], ser[i], 0xffffffff, `${where} sweep`) === null) { unpublish(i); drop(i); }
    }
  };

  const flush = () => {
    for (let k = 0; k < CNT_WORDS; k++) if (cnt[k] !== 0) { Atomics.add(counters, k, BigInt(cnt[k])); cnt[k] = 0; }
  };

  // --- the loop --------------------------------------------------------------
  let it = 0;
  while (Atomics.load(ctrl, STOP) === 0) {
    const r = rnd();
    const i = r % ROW;
    if (addr[i] === 0) allocate(i);
    else {
      const op = (r >>> 8) % 100;
      if (op < 32) freeAt(i);
      else if (op < 57) transferAt(i);
      else if (op < 70) reallocAt(i);
      else if (check(addr[i], ser[i], 0xffffffff, `${where} touch`) === null) { unpublish(i); drop(i); }
    }
    if ((++it & 255) === 0) {
      flush();
      if ((it & 2047) === 0) verifyAll();
    }
    Atomics.store(ctrl, sb + PROGRESS, it);
  }

  // --- stop: verify and free everything held, detach -----------------------
  Atomics.store(ctrl, sb + PHASE, 3);
  verifyAll();
  let freedAtEnd = 0;
  for (let i = 0; i < ROW; i++) if (addr[i] !== 0) { freeAt(i); freedAtEnd++; }
  flush();
  a.detach();
  parentPort.postMessage({ type: 'done', where, iterations: it, adopted, freedAtEnd, corrupt, minIters });
}
