/**
 * types.ts — every layout, constant and invariant of mimalloc-ts.
 *
 * This file is the design document, in the spirit of mimalloc's `types.h`.
 * Everything an agent needs to find its way around the buffer is derived
 * from the few base constants below, and every word of allocator state lives
 * in the buffer itself so that any agent can attach, walk the heap, or take
 * over the pages of a terminated agent.
 *
 * ## The buffer
 *
 * ```
 *  0    base                                                   H_SLICE_COUNT·16K
 *  ├ … ┤├ arena 0: guard │ fixed words │ agents │ arena table │ zero │ regions ┤ slices ┤├ arena 1 … ┤
 * ```
 *
 * A list of arenas, one per growth (layout.ts draws one; views.ts reads them).
 * An address is a byte offset into the buffer (u32); 0 is NULL and lies in
 * the first arena's NULL guard (or below `base`), so no block can ever have
 * address 0. Each arena's memory after its metadata is cut into 16 KiB *slices*; a *page* is a run of slices holding
 * blocks of one size: small = 4 slices (64 KiB, as mimalloc v3's small
 * pages) on a 64 KiB boundary; medium = 8 slices (128 KiB, where v3 takes
 * 512 KiB); large = the fewest slices that fit their blocks with at most an
 * eighth left over (bins.ts fittedPageSlices; v3 takes 4 MiB); medium and
 * large pages doubled up to GROW_MAX times for a bin whose pages an agent
 * keeps emptying and claiming again (theap.ts freshPage); singleton =
 * exactly one block of whole slices.
 *
 * Why 16 KiB slices, not v3's 64 KiB: here the buffer is the address space,
 * and every (agent, size class) keeps a partly used page; with 64 KiB
 * slices and 512 KiB medium pages, four agents left a third to half of a
 * 64 MiB buffer in such pages at the first NULL (bench:fill). What it
 * costs: the page records (128 B per slice) take 0.8 % of the buffer
 * instead of 0.2 %, and the slice bitmap is four times longer to scan.
 *
 * ## Regions (all Int32 words; every arena has its own, for its slices)
 *
 * | region | meaning |
 * |---|---|
 * | fixed (first arena) | magic, version, geometry, counters (`hdr + H_*`) |
 * | agents (first arena) | one record per attached agent (`A_*`) |
 * | free slices | bit s set ⇔ slice s is free (atomic) |
 * | dirty slices | bit s set ⇔ slice s was ever part of a page |
 * | abandoned | bit s of bitmap b ⇔ page at s may be an abandoned page of bin b with free space ("mapped"); none for the huge bin |
 * | page map | slice s → record base of the page covering s, or 0 |
 * | page records | record of the page starting at slice s (`R_*`) |
 * | A bitmap | one bit per 8-byte granule: set ⇔ that address is a live block as returned to the user |
 * | R bitmap | one bit per 16-byte granule: set ⇔ the live block whose address is in it was freed by another agent and waits on `xthreadFree` |
 *
 * The A/R bitmaps are indexed by address (A: `fdir[(p >>> 20) << 1] + (p >>> 8)` is the word, `(p >>> 3) & 31`
 * the bit; R: `rDir[p >>> 20] + (p >>> 9)`, `(p >>> 4) & 31`), so checking that `p` is a live block
 * is one load and one test, with no division, for every page kind and for
 * aligned blocks alike. R bits are only read or set for an address whose A
 * bit is set, and such addresses are 16 bytes apart or more (MIN_BLOCK; an
 * aligned address inside a block keeps 16 bytes before the next block,
 * malloc.ts allocAligned), so each has an R granule of its own. They cost
 * 3/128 of the buffer's address space (2.3 %; 8-byte R granules: 3.1 %), of
 * which only the words covering used pages are ever touched (untouched
 * SharedArrayBuffer pages cost no memory).
 *
 * ## Invariants (checked by `check()`)
 *
 * - I1 slices: for every slice s ≥ H, exactly one holds: free bit set and
 *   pagemap[s] = 0, or free bit clear and pagemap[s] = base of a page with
 *   STATE = 1 whose range covers s (outside a claim/free in flight, which
 *   is recorded in its agent's intent).
 * - I2 page counts: used = |A bits of the page| (blocks waiting on
 *   xthreadFree still count as used) and used + |free| + |localFree| =
 *   capacity ≤ reserved.
 * - I3 lists: `free`, `localFree`, `xthreadFree` hold distinct block starts
 *   of the page below capacity, without cycles; a block on `free` or
 *   `localFree` has its A bit clear; a block on `xthreadFree` has A and R set.
 * - I4 ownership: OWNER is 0 for a non-page record, ABANDONED, the tid of
 *   the agent whose theap queues the page, or tid|HELD while an agent holds
 *   it outside any queue. Only the holder of a page writes its plain fields.
 * - I5 canaries (secure ≥ 3): every block below capacity, live or free, has
 *   canary(pad) at pad = blockStart + blockSize − PADDING, where
 *   canary(x) = ((x ^ key) & ~0xff) | CANARY_LOW_BYTE (key: the page's
 *   CANARY, random per page life, so a stale canary left in the slices by
 *   an earlier page of the same block size never passes, and apart from the
 *   link keys, which a canary gives away 24 bits of; a hash of x would hide
 *   nothing more, as any public bijection of x ^ key gives the key away from
 *   one canary just the same). The low byte is fixed and not 0: mimalloc
 *   makes it 0 (#951: a missing string terminator stops there), which lets
 *   the commonest off-by-one, a NUL written just past a block with no
 *   slack, pass every check; here detection wins. pageExtend writes it;
 *   setPadding (generic malloc, realloc) and the repairs after a report
 *   write the same value again; nothing else writes it. An overrun out of a
 *   block breaks I5 for that block; the break is reported when the block is
 *   next handed out, freed on the generic path, reallocated, found by
 *   `check()`, or when its page is returned, and repaired so it is reported
 *   once.
 * - S1 guard (secure ≥ 1): every page keeps at least SECURE_GUARD bytes
 *   after its last block, and the first SECURE_GUARD_FILL of them (or all,
 *   if fewer) hold SECURE_GUARD_BYTE.
 * - D1 padding (debug, secure ≥ 3): every live block not waiting on
 *   xthreadFree ends in an intact padding (canary and requested size; in
 *   debug mode also DEBUG_PAD_BYTE in up to DEBUG_SLACK_CHECK bytes of slack),
 *   debug.ts's layout.
 * - D2 freed fill (debug): every block on `free` or `localFree` still holds
 *   DEBUG_FREED_BYTE in its filled range (a difference is a write after free).
 * - C1 counters: stats() (counters.ts) agrees with a walk of the pages
 *   (checked while no agent was ever released).
 *
 * ## Ownership: the OWNER state machine
 *
 * A page's OWNER word (atomic) says who may write its plain fields (I4):
 *
 * ```
 *              pageInit by a claimer (a huge page: tid|HELD, ABANDONED once its block is out)
 *   0 ───────────────────────────────────► tid ─────────────────┐ taken out of tid's queues
 *   ▲                                       ▲                    ▼ (full past PAGE_FULL_KEEP, detach)
 *   │ pageRelease (USED = 0)                │ queued again    tid|HELD
 *   └────────────── tid|HELD ◄──────────────┴──────────────── (held: in no queue)
 *                       ▲                                         │ settleHeld: store ABANDONED,
 *                       │ CAS ABANDONED → tid|HELD                 │ then load XTHREAD_FREE
 *                       │ (reclaim, a free that finds it           ▼ (a Dekker pair with free.ts step 3)
 *                       └──────────── abandoned, free.ts step 3) ABANDONED
 *
 *   a terminated agent's tid or tid|HELD ── CAS by the reaper (releaseAgent) ──► reaper|HELD
 * ```
 *
 * Only the agent named by OWNER (either form) writes a page's plain fields;
 * only that agent turns OWNER away from its own tid, so its fast free may
 * read OWNER with a plain load: other agents change OWNER only from
 * ABANDONED, or from the tid of an agent that can no longer run.
 *
 * ## Naming
 *
 * `p` an address as the caller passed it (unvalidated); `q` a validated
 * address (u32), which may be an aligned address inside a block; `b` a
 * block start; `rb` a record base: the word index of a page record in
 * `mem`/`meta` (the same Int32Array over the whole buffer); `s` a slice
 * index; `bs` a block size; `w`/`bit` an A/R bitmap word and mask; `th` a
 * theap; `ag` an Agent (agents.ts); `a` an Arena (arena.ts); `tid` an agent
 * id << 2, the value of OWNER.
 */

// ---------------------------------------------------------------------------
// Base constants
// ---------------------------------------------------------------------------

/**
 * Every constant of the design, as one `const enum`: TypeScript inlines each
 * use as a literal. (Imported ES module constants are not constant-folded by
 * V8: each use on a hot path loaded a Cell and tested it for the TDZ hole,
 * measured at several instructions per use.) Use as `C.NAME`.
 */
export const enum C {
  /** log2 of the slice size: 16 KiB slices (mimalloc's arenas: 64 KiB; see "The buffer" above). */
  SLICE_SHIFT = 14,
  SLICE_SIZE = 1 << SLICE_SHIFT, // 16384
  /** Size-class word: bins are counted in 8-byte words (mimalloc's 64-bit table). */
  WORD_SHIFT = 3,
  WORD = 1 << WORD_SHIFT, // 8: the minimum block size and alignment
  /** A bitmap: one bit per 8-byte granule, 32 bits per Int32 word ⇒ a word covers 256 bytes. */
  GRANULE_SHIFT = 3,
  BITMAP_WORD_SHIFT = GRANULE_SHIFT + 5, // 8
  /**
   * The smallest block: requests of 0–8 bytes get 16 (as dlmalloc's smallest
   * chunk), so that two block starts are at least 16 bytes apart and the R
   * bitmap can have 16-byte granules (half the memory of the A bitmap's).
   * The A bitmap keeps 8-byte granules: it validates addresses, and with 16
   * a wrong address 8 bytes before a live block would pass as that block.
   */
  MIN_BLOCK = 16,
  /** R bitmap: one bit per 16-byte granule (MIN_BLOCK) ⇒ a word covers 512 bytes. */
  R_GRANULE_SHIFT = 4,
  R_GRANULE = 1 << R_GRANULE_SHIFT,
  R_WORD_SHIFT = R_GRANULE_SHIFT + 5, // 9

  MAGIC = 0x7374696d, // format identity, the header's word 0: "mits"
  /** The format (CHANGELOG.md lists what each changed): an agent of another version must not attach, it would misread the buffer. */
  VERSION = 9,

  /** Maximum simultaneously attached agents (main thread + workers). */
  MAX_AGENTS = 256,
  /** Largest buffer: typed arrays over more than 4 GiB fail on Node 20, and addresses are u32. */
  MAX_SIZE = 2 ** 32 - SLICE_SIZE,
  MIN_SIZE = 1 << 20,
  DEFAULT_SIZE = 256 << 20,

  // ---------------------------------------------------------------------------
  // Size classes (bins.ts computes the tables)
  // ---------------------------------------------------------------------------

  /** Requests up to this many bytes take the `pagesFreeDirect` fast path (mimalloc's MI_SMALL_SIZE_MAX). */
  SMALL_SIZE_MAX = 1024,
  SMALL_WSIZE_MAX = SMALL_SIZE_MAX >>> WORD_SHIFT, // 128
  /** `direct[DIRECT_BINS + bin]`: the first page of each bin (the malloc fast path up to LARGE_OBJ_SIZE_MAX); below it, one entry per wsize. */
  DIRECT_BINS = SMALL_WSIZE_MAX + 1, // 129
  /** Blocks larger than this live in singleton (huge) pages: 512 KiB, as v3. */
  LARGE_OBJ_SIZE_MAX = 512 * 1024,
  LARGE_OBJ_WSIZE_MAX = LARGE_OBJ_SIZE_MAX >>> WORD_SHIFT, // 65536
  /**
   * Page kinds by block size; the /6 keeps the tail waste of a page ≤ 1/6·block.
   * Small pages are claimed on a SMALL_PAGE_SIZE boundary and never cross one
   * (the secure fast path's link check, SECURE_LINK_MASK, relies on it).
   */
  SMALL_PAGE_SLICES = 4,
  SMALL_PAGE_SIZE = SMALL_PAGE_SLICES * SLICE_SIZE, // 64 KiB
  MEDIUM_PAGE_SLICES = 8, // 128 KiB
  SMALL_OBJ_SIZE_MAX = ((SMALL_PAGE_SIZE - 4096) / 6) | 0, // 10240
  MEDIUM_OBJ_SIZE_MAX = (((MEDIUM_PAGE_SLICES * SLICE_SIZE) - 4096) / 6) | 0, // 21162
  /**
   * A bin of medium or large pages whose emptied pages an agent released
   * (the retire heartbeat) gets pages 2x larger each time, up to 2^GROW_MAX
   * times its fitted size and at most GROW_MAX_SLICES (theap.ts freshPage):
   * node-tsc's 28–32 KiB blocks otherwise took a fresh one-block page per
   * malloc (+50 % on its replay). Fill-to-NULL loses nothing by it (no page
   * is emptied there); a program that churns such blocks gets mimalloc's
   * amortisation back. Only while the buffer's high-water mark is below half
   * of it (a program near its buffer's end needs every slice); a failed
   * claim resets the bin to its fitted size.
   */
  GROW_MAX = 3,
  /**
   * Once the buffer's high-water mark is in its last 2^-TIGHT_SHIFT (an
   * eighth), new pages are the smallest that serve (theap.ts freshPage):
   * +1–2 points at the first NULL with four workers (bench:fill; a
   * sixteenth and a thirtieth measured less).
   */
  TIGHT_SHIFT = 3,
  /**
   * A theap's first page of a small bin has the fewest slices (1, 2 or 4)
   * that hold this many blocks (bins.ts BIN_FIRST_PAGE_SLICES): an agent
   * touches ~36 small bins, most of them for a few blocks. Measured 4, 8,
   * 16: 8 left the least in partly used pages (theap.ts freshPage).
   */
  FIRST_PAGE_BLOCKS = 8,
  GROW_MAX_SLICES = 16, // 256 KiB

  /**
   * Size classes are 8 per power of two from wsize − 1 = 2^FINE_LOG words
   * (16 KiB) up, 4 below (bins.ts).
   */
  FINE_LOG = 11,
  /**
   * The bin of the largest non-huge request, binOf(LARGE_OBJ_SIZE_MAX): 4
   * bins per power of two from 64 B to 2^FINE_LOG words, then 8, up to
   * w = 65535 (b = 15, its top bin 7): 4·11 − 3 + 8·(15 − 11) + 7 = 80
   * (the 15 is ⌊log2(LARGE_OBJ_WSIZE_MAX − 1)⌋, which TypeScript cannot
   * take: bins.ts checks the result at load). FINE_LOG 7–10 measured: the
   * 4 KiB rows of bench:fill gain up to 2.4 points, the 64 KiB–256 KiB rows
   * with four workers lose up to 5 (partly used small pages of more bins).
   */
  BIN_LARGE_MAX = 4 * FINE_LOG - 3 + 8 * (15 - FINE_LOG) + 7, // 80
  /** Singleton pages (blocks over LARGE_OBJ_SIZE_MAX): never queued, never mapped as abandoned. */
  BIN_HUGE = BIN_LARGE_MAX + 1, // 81
  /** Bins 0..BIN_HUGE; a theap's queue of full pages of bin b is queue b + BIN_COUNT. */
  BIN_COUNT = BIN_HUGE + 1, // 82
  /** Abandoned bitmaps (and counters): one per bin that a page can be mapped under, 0..BIN_LARGE_MAX. */
  ABANDONED_BINS = BIN_LARGE_MAX + 1,

  /** Lazy extension adds about one OS page worth of blocks at a time. */
  EXTEND_BYTES = 4096,
  /** Retired (emptied) pages live this many generic calls (small / other). */
  RETIRE_CYCLES_SMALL = 16,
  RETIRE_CYCLES_OTHER = 4,

  // ---------------------------------------------------------------------------
  // Fixed header words
  // ---------------------------------------------------------------------------

  /**
   * Header words are offsets from the header's first word, `Arena.hdr`
   * (= (BASE_SLICE << 12) + NULL_GUARD_WORDS): the first NULL_GUARD bytes of
   * the first arena hold nothing (a write through NULL lands there, check()
   * reports it, and no allocator state is hit).
   */
  H_MAGIC = 0,
  H_VERSION = 1,
  H_SLICE_COUNT = 2, // end slice of the last published arena (atomic): addresses below (H_SLICE_COUNT << SLICE_SHIFT) are the allocator's
  H_HEADER_SLICES = 3, // first slice after the first arena's metadata
  H_NEXT_AGENT_ID = 4, // atomic counter; ids are never reused
  H_OPTIONS = 5, // OPT_* bits
  H_COMMITTED = 6, // high-water mark in slices (atomic max)
  H_BASE_SLICE = 7, // first slice of the first arena: ceil(base / SLICE_SIZE); nothing below `base` is ever written
  H_MAX_SLICES = 8, // the end slice growth may reach (maxSize); = H_SLICE_COUNT for a fixed buffer
  /**
   * Agents taken over by releaseAgent (atomic). An agent killed between the
   * R-bit OR and the XTHREAD_FREE push of a remote free leaves that one block
   * allocated with its R bit set (it leaks); check() allows one such block per
   * reaped agent.
   */
  H_REAPED = 9,
  /**
   * Thread tokens handed out by `watch()` for workers that have no thread id
   * (browsers): atomic counter, the n-th token is −n (A_THREAD).
   */
  H_NEXT_TOKEN = 10,
  /** Published arenas (atomic; table entries 0..n−1 are valid, in address order). */
  H_ARENAS = 11,
  /**
   * Growth is one agent at a time: H_GROW_LOCK holds the tid of the agent
   * growing the buffer (CAS 0 → tid), H_GROW_START/H_GROW_END the arena it
   * is adding, so whoever reaps a terminated grower can publish it (the
   * memory is there) or drop it (arena.ts recoverGrow).
   */
  H_GROW_LOCK = 12,
  H_GROW_START = 13,
  H_GROW_END = 14,
  /** The abandoned pool's counter block (K_*, atomic), and what detached or released agents had freed remotely and collected (atomic). */
  H_POOL = 100, // .. 108
  H_GONE_XFREED = 109,
  H_GONE_XFREEDW = 110,
  H_GONE_COLLECTED = 111,
  H_GONE_COLLECTEDW = 112,
  H_AGENT_BITS = 113, // .. 120: bit i ⇔ agent record i may be in use (atomic; stats()'s hint: set after the id CAS, cleared before the free)
  H_ABANDONED_COUNT = 16, // ABANDONED_BINS atomic counters of mapped abandoned pages (a hint), words 16..96
  H_FIXED_WORDS = 128,

  /** The first bytes of the first arena hold neither state nor blocks (the NULL guard; DESIGN.md §3). */
  NULL_GUARD = 4096,
  NULL_GUARD_WORDS = NULL_GUARD >>> 2,
  /**
   * Arenas: the first covers the buffer as created; every growth adds one
   * (arena.ts). The per-agent directories that find an address's metadata
   * have one entry per 1 MiB (DIR_SHIFT): arenas start on one (but the first), and
   * their metadata covers the rest of their last MiB: no entry covers two arenas or a gap.
   */
  DIR_SHIFT = 20,
  DIR_SLICES_SHIFT = DIR_SHIFT - SLICE_SHIFT, // 6: 64 slices
  DIR_SLICES = 1 << DIR_SLICES_SHIFT,
  MAX_ARENAS = 64,
  /** The zero region (layout.ts zeroWord): one MiB's worth of A-bitmap words. */
  ZERO_WORDS = 1 << (DIR_SHIFT - BITMAP_WORD_SHIFT), // 4096
  ARENA_WORDS = 4,
  T_START = 0, // first slice of the arena (its metadata first)
  T_END = 1, // end slice (below T_CAP only after a resizable ArrayBuffer shrank: arena.ts purge)
  T_CAP = 2, // end slice its metadata was laid out for (layout.ts arenaLayout(T_START, T_CAP))
  /** Growth adds at least a quarter of what exists (so ≤ ~40 arenas from 1 MiB to 4 GiB), at least 1 MiB. */
  GROW_SHIFT = 2,

  OPT_KNOWN_ZERO = 1, // the buffer started zeroed: never-used slices read as 0
  OPT_DEBUG = 2, // debug mode: fills, padding canaries, write-after-free checks (all agents see it)
  OPT_NO_CHECK = 8, // checkFree: false (a measuring instrument): every agent's fast paths skip the allocation bits
  OPT_SECURE_SHIFT = 4, // secure level 0..4 in bits 4..6
  OPT_SECURE_MASK = 7,

  // -------------------------------------------------------------------------
  // Secure mode (levels as mimalloc's MI_SECURE, adapted; see secure.ts)
  // -------------------------------------------------------------------------

  /**
   * Level ≥ 1: every page ends in at least this many bytes of guard space
   * (the tail after its last block), of which the first SECURE_GUARD_FILL
   * (or all, if fewer) hold SECURE_GUARD_BYTE, which check() verifies: an
   * overrun past a page's last block is found before it reaches the next
   * page's blocks. Only a prefix is filled because the tail of a large page
   * can be 512 KiB, and filling it made every page initialisation cost
   * ~100 µs (a contiguous overrun changes the first bytes anyway).
   */
  SECURE_GUARD = 16,
  SECURE_GUARD_FILL = 64,
  SECURE_GUARD_BYTE = 0xa5,

  // -------------------------------------------------------------------------
  // Debug mode (mimalloc's MI_DEBUG fills and padding)
  // -------------------------------------------------------------------------

  /**
   * Every block of a debug-mode allocator ends in 8 bytes of padding:
   * `[canary u32][delta u32]` at blockStart + blockSize − 8, where delta =
   * padding address − (address + requested size). Up to DEBUG_SLACK_CHECK
   * bytes between the requested end and the padding hold DEBUG_PAD_BYTE.
   */
  PADDING = 8,
  /**
   * Secure ≥ 3 keeps a free block's (encoded) free-list link in the delta
   * word of its padding, LINK_FROM_END bytes before the block's end, not in
   * its first word:
   *
   * ```
   *  live:  b ├─ user bytes ──── slack ─┤├ canary u32 ┤├ delta u32 ┤ b + blockSize
   *  free:  b ├─ (old contents) ────────┤├ canary (I5)┤├ enc(next) ┤
   * ```
   *
   * malloc reads link and canary and writes the delta in one 8-byte unit;
   * free writes the link there and leaves the canary (I5): one cache
   * line per operation, and free loads nothing from the block, so a free of
   * a cold block does not wait for memory (the canary is checked when the
   * block is handed out again). An overrun out of block b passes its canary
   * first.
   */
  LINK_FROM_END = 4,
  DEBUG_SLACK_CHECK = 16, // debug mode's slack pattern (secure 4: to the end of the request's last word, secure.ts)
  DEBUG_UNINIT_BYTE = 0xd0, // fresh allocations (not zalloc/calloc)
  DEBUG_FREED_BYTE = 0xdf, // freed blocks and never-used blocks on a free list
  DEBUG_PAD_BYTE = 0xde, // slack between the requested size and the padding
  /** The canary's low byte (I5): the byte just past a request with no slack; not 0, which a NUL terminator would leave intact. */
  CANARY_LOW_BYTE = 0x9b,
  /** DEBUG_PAD_BYTE in every byte of an int32 word. */
  PAD4 = (DEBUG_PAD_BYTE * 0x01010101) | 0,
  /** Freed fill and its check on reuse cover at most this many bytes of a block. */
  DEBUG_FILL_MAX = 65536,

  // ---------------------------------------------------------------------------
  // Agent records (one per attached agent)
  // ---------------------------------------------------------------------------

  AGENT_WORDS = 32,
  A_ID = 0, // agent id (≥ 1), 0 = free slot (atomic)
  A_STATE = 1, // AGENT_*
  A_INTENT_OP = 2, // INTENT_* in flight (atomic)
  A_INTENT_START = 3, // first slice of the range
  A_INTENT_COUNT = 4, // slices in the range
  A_REAPER = 5, // id of the agent taking this one over (state REAPING); kept after the record is freed, until it is reused
  /**
   * The thread the agent runs on, for `watch(worker)` / `terminate(worker)`,
   * which release every agent of a thread that has ended: Node's
   * `worker_threads.threadId` (> 0; 0 on the main thread), or where the
   * runtime has none (browsers) the token (< 0) of the handle the worker
   * attached with; 0 = unknown. Written once at attach.
   */
  A_THREAD = 6,
  /**
   * Random, written once at attach: with A_ID it names the Agent object in
   * the realm that attached it (agents.ts keeps a registry of the live ones
   * per realm), so `releaseAgent` can refuse an agent that is alive in the
   * caller's own thread whichever SharedArrayBuffer object it attached through.
   */
  A_NONCE = 7,
  /** Statistics (counters.ts; the agent writes them, plain): its counter block (K_*), remote frees made and collected (mod 2^32), tracked pages. */
  A_STATS = 8, // .. 16
  A_XFREED = 17,
  A_XFREEDW = 18,
  A_COLLECTED = 19,
  A_COLLECTEDW = 20,
  A_THEAD = 21, // record base of the first tracked page (R_TNEXT links the rest), 0 = none
  A_TCOUNT = 22,
  A_TLIMIT = 23, // the next fold at this many tracked pages (counters.ts syncTracked)
  /** A counter block (an agent's at A_STATS, the pool's at H_POOL): a page adds 1, its slices, USED, USED·size/8, CAPACITY·size/8, 1 at K_KIND + kind. */
  K_PAGES = 0,
  K_SLICES = 1,
  K_BLOCKS = 2,
  K_WORDS = 3,
  K_CAPW = 4,
  K_KIND = 5, // .. 8
  K_WORDS_COUNT = 9,
  TRACK_MAX = 64, // tracked pages an agent keeps before its first fold (counters.ts syncTracked)
  AGENT_FREE = 0,
  AGENT_ALIVE = 1,
  AGENT_REAPING = 2,
  INTENT_NONE = 0,
  INTENT_CLAIM = 1, // claiming free slices for a new page
  INTENT_RELEASE = 2, // returning a page's slices

  // ---------------------------------------------------------------------------
  // Page records
  // ---------------------------------------------------------------------------

  /**
   * A page record: REC_WORDS Int32 words per slice, used for the page that
   * starts at that slice. A record *base* is the word index of the record in
   * the whole-buffer Int32 view, `records + (slice << REC_SHIFT)` (never 0); the
   * page map, the theap's queues and `pagesFreeDirect` store bases, so a field
   * is `mem[base + R_FIELD]`: the hot paths touch a single typed array
   * (measured ~10 % faster than one view per region).
   *
   * Who may touch each field. "holder": only the agent named by OWNER
   * (plain loads and stores; types.ts I4). "init": written by pageInit
   * before STATE publishes the page, then fixed for the page's life (until
   * pageRelease clears STATE), so any agent that found the page in use may
   * read it plainly: a live block keeps its page in use, so a free of a
   * live block reads a value that cannot change under it. "atomic": any
   * agent, with Atomics only.
   *
   * ```
   *  word field        meaning                                        writes       read without holding
   *   2  KEY0          secure ≥ 3 link keys: enc(p) = imul(p ^ KEY1,  init         remote free (encodes its link)
   *   3  KEY1            KEY0), KEY0 odd, KEYINV = KEY0⁻¹ mod 2^32
   *   9  KEYINV          (so dec(x) = imul(x, KEYINV) ^ KEY1)
   *   4  USED          blocks handed out, those waiting on            holder       stats (a hint), check (quiescent)
   *                    XTHREAD_FREE included (mimalloc's used)
   *   5  FREE          head of the list malloc pops (0 = empty)       holder       —
   *   6  LOCAL_FREE    head of the blocks the holder freed            holder       —
   *  10  CANARY        padded modes: this page's canary key (I5)      init         —
   *  11  NEXT          link in the holder's page queue (PREV: 26)     holder       —
   *  12  SYNCED        tracked pages: USED at the last fold           holder       stats (counters.ts)
   *  13  FLAGS         bin (bits 0–7, init) | F_* | retire countdown  holder       validate: the bin, F_ALIGNED (set
   *                    << 16                                                       before the A bit of any aligned
   *                                                                                block, never cleared)
   *  14  TNEXT         next page on the holder's tracked list         holder       stats (counters.ts)
   *  15  ADELTA        A-bitmap word of q = ADELTA + (q >>> 8) (arena.ts aw): init  the malloc fast paths
   *      ── words 0–15, one 64-byte line: what the holder's fast paths write. Words 16–31:
   *         what a remote free reads and writes (but secure ≥ 3's link keys), so
   *         that it rarely takes the line the holder writes at every malloc ──
   *  23  STATE         1 = page in use (written last on create,       atomic       anyone (Atomics)
   *                    first on release)
   *  24  XTHREAD_FREE  head of the blocks other agents freed          atomic       anyone (Atomics); the holder's
   *                    (the link in each block, as LOCAL_FREE's)                   fast free reads it plain (a stale 0
   *                                                                                hides only a double free racing
   *                                                                                across agents, as in mimalloc)
   *  25  OWNER         0 | ABANDONED | tid | tid|HELD (the state       atomic       anyone (Atomics); its holder
   *                    machine above)                                              plainly (see "Ownership")
   *  28  BLOCK_SIZE    bytes per block                                init         remote free, validate, stats
   *  29  ALIGNED       1 once F_ALIGNED is set (its copy for a remote free) holder  remote free
   *  16  RESERVED      blocks that fit                                init         anyone who found the page in use
   *  17  CAPACITY      blocks initialised so far (lazy extension)     holder       validate (messages), check
   *  18  HEAP          heap id (0 = main heap)                        holder       a claimer, after its CAS
   *  19  SLICES        slices spanned                                 init         anyone who found the page in use
   *  20  START         address of the page's first byte (slice << 16) init         anyone who found the page in use
   *  21  EXTENT        bytes of the block area (BLOCK_SIZE × RESERVED) init        anyone who found the page in use
   *  22  ORIGIN        tid of the theap that created or last          holder       —
   *                    reclaimed the page
   *  26  PREV          link in the holder's page queue                holder       —
   *  27  COLLECT       rest of an XTHREAD_FREE list being collected   holder       a reaper (the holder is dead)
   * ```
   *
   * The page map (slice → record base) is written by the claimer before
   * STATE and cleared by the releaser after it; the A bitmap is written by
   * the holder (set at malloc, cleared at a local free or a collect) and read
   * by anyone; the R bitmap is atomic.
   * ```
   */
  REC_SHIFT = 5,
  REC_WORDS = 1 << REC_SHIFT, // 32 words = 128 bytes per slice (0.2 %)
  R_KEY0 = 2,
  R_KEY1 = 3,
  R_USED = 4,
  R_FREE = 5,
  R_LOCAL_FREE = 6,
  R_KEYINV = 9,
  R_CANARY = 10,
  R_NEXT = 11,
  R_SYNCED = 12,
  R_FLAGS = 13,
  R_TNEXT = 14,
  R_ADELTA = 15,
  R_RESERVED = 16,
  R_CAPACITY = 17,
  R_HEAP = 18,
  R_SLICES = 19,
  R_START = 20,
  R_EXTENT = 21, // bytes of the block area: BLOCK_SIZE × RESERVED
  R_ORIGIN = 22,
  R_STATE = 23,
  R_XTHREAD_FREE = 24,
  R_OWNER = 25,
  R_PREV = 26,
  R_COLLECT = 27,
  R_BLOCK_SIZE = 28,
  R_ALIGNED = 29,
  /**
   * Record bases are word indices below 2^30 (buffers ≤ 4 GiB), so masking a
   * base loaded from the direct table or the page map changes nothing but
   * tells V8 that base + R_FIELD cannot overflow: one overflow check less per
   * field access on the fast paths (measured ~8 % fewer instructions per op).
   */
  REC_BASE_MASK = 0x3fffffff,
  /**
   * Secure fast-path link check: (next ^ block) & SECURE_LINK_MASK is 0 iff
   * next is 8-byte aligned and in the block's 64 KiB-aligned region, which
   * for the small pages the fast path serves (bins.ts asserts it) is its
   * page: at secure ≥ 3 a small page is always a whole, aligned
   * SMALL_PAGE_SIZE (theap.ts freshPage never shrinks it there).
   */
  SECURE_LINK_MASK = ~(SMALL_PAGE_SIZE - 8),

  STATE_FREE = 0,
  STATE_IN_USE = 1,

  /** OWNER values (the state machine is drawn in the header above). Agent tids are `id << 2` (≥ 4), so the low two bits are flags. */
  OWNER_NONE = 0,
  OWNER_ABANDONED = 2,
  OWNER_HELD = 1,
  /** OWNER's flag bits (HELD; ABANDONED is a value of its own, tid 0) and the tid they leave. */
  OWNER_FLAG_MASK = 3,
  OWNER_TID_MASK = ~OWNER_FLAG_MASK,

  FLAG_BIN_MASK = 0xff,
  /** Blocks on FREE are zero except their link (first word; secure ≥ 3: in the padding); calloc can skip the memset. */
  F_ZERO = 1 << 8,
  /** Memory past CAPACITY has never been written since the buffer was created (reads as 0). */
  F_FRESH = 1 << 9,
  /** Some blocks were returned at an aligned address inside the block (mimalloc's HAS_INTERIOR_POINTERS). */
  F_ALIGNED = 1 << 10,
  /**
   * The page is full and parked in its theap's full queue for its bin (queue index
   * bin + BIN_COUNT): the malloc search skips it, a local free moves it back (v2's
   * `_mi_page_unfull`; the free fast path calls allocator.ts unfull), and a search
   * that finds nothing polls the full queue for remote frees before a new page. */
  F_FULL = 1 << 12,
  /** On its holder's tracked list (counters.ts): the free fast path takes only such pages, so no fast path counts. */
  F_TRACKED = 1 << 11,
  /** The page is the head of its bin's queue, in its theap's pagesFreeDirect (page-queue.ts updateDirect). */
  F_DIRECT = 1 << 13,
  /** Full pages a theap keeps per bin before abandoning further ones (v3 abandons; see abandon.ts). */
  PAGE_FULL_KEEP = 8,
  RETIRE_SHIFT = 16,
  RETIRE_MASK = 0xff << RETIRE_SHIFT,
}
