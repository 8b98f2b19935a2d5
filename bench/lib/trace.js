// mtrace v1 traces (see /work/shared/traces/README.md): a byte-level parser
// into typed arrays, and a binary cache of the parsed arrays that
// bench/replay.js, test/replay.test.js and bench/peers/native_replay.c read.
//
// ---- In memory ---------------------------------------------------------------
//
// A parsed trace is { name, program, threads, events, objects, op, tid, id,
// old, size, align, summary } where, for event i (0-based, file order):
//   op[i]     Uint8   OP_MALLOC 1 'm', OP_CALLOC 2 'c', OP_ALIGNED 3 'a',
//                     OP_REALLOC 4 'r', OP_FREE 5 'f'
//   tid[i]    Uint8   the thread index T
//   id[i]     Uint32  the new object's id (m, c, a; NEW of r), or the freed id (f)
//   old[i]    Uint32  realloc's OLD id; 0 otherwise
//   size[i]   Uint32  bytes requested (COUNT*SIZE for calloc, SIZE for a and r); 0 for f
//   align[i]  Uint32  the alignment of 'a'; 0 otherwise
// Object ids are 1..objects (objects = number of new ids), so a table indexed
// by id needs objects + 1 entries. A prefix of a trace (maxEvents) is itself a
// valid trace: `objects` then counts the ids created in the prefix.
//
// ---- Binary file (bench/build/traces/NAME.bin), version 1, little-endian ----
//
//   offset  type      field
//        0  char[8]   magic "MTRBIN1\0"
//        8  u32       header bytes (256): the op array starts here
//       12  u32       events N
//       16  u32       objects (highest id)
//       20  u32       threads
//       24  f64       source .trace.gz size in bytes     } the cache key: a
//       32  f64       source .trace.gz mtime (ms)        } mismatch re-parses
//       40  f64       peak live bytes (whole trace)
//       48  f64       total bytes allocated
//       56  u32[5]    number of m, c, a, r, f events
//       76  u32       largest size
//       80  u32       cross-thread frees (f on another tid than the creator's)
//       84  u32       reserved (0)
//       88  char[64]  program name from the header line, NUL-padded
//      152  ...       zero up to 256
//      256  u8[N]     op      then zero padding up to a multiple of 8
//           u8[N]     tid     padded likewise
//           u32[N]    id
//           u32[N]    old
//           u32[N]    size
//           u32[N]    align
// Each array starts at the previous one's start + its byte length rounded up
// to a multiple of 8: with P8(x) = (x + 7) & ~7 the offsets are
//   op 256, tid 256 + P8(N), id 256 + 2*P8(N), old id + 4N, size old + 4N,
//   align size + 4N; file size = align + 4N.
// A reader wanting a prefix of n events reads the first n entries of each array.

import { createReadStream, existsSync, mkdirSync, openSync, readSync, closeSync, renameSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createGunzip } from 'node:zlib';

export const OP_MALLOC = 1;
export const OP_CALLOC = 2;
export const OP_ALIGNED = 3;
export const OP_REALLOC = 4;
export const OP_FREE = 5;
export const OP_NAMES = ['?', 'm', 'c', 'a', 'r', 'f'];

const MAGIC = 'MTRBIN1\0';
const HEADER_BYTES = 256;
const P8 = (x) => (x + 7) & ~7;

/** Byte offsets of the six arrays for N events. */
export function binLayout(n) {
  const op = HEADER_BYTES;
  const tid = op + P8(n);
  const id = tid + P8(n);
  const old = id + 4 * n;
  const size = old + 4 * n;
  const align = size + 4 * n;
  return { op, tid, id, old, size, align, end: align + 4 * n };
}

/** Trace name of a file: "sqlite3-shell" for ".../sqlite3-shell.trace.gz". */
export const traceName = (file) => path.basename(file).replace(/\.trace\.gz$/, '');

/**
 * The traces folder: `--traces=DIR`, else $MIMALLOC_TRACES, else
 * ../shared/traces next to the repository root.
 */
export function tracesDir(repoRoot, argv = process.argv.slice(2)) {
  const opt = argv.find((a) => a.startsWith('--traces='));
  if (opt) return path.resolve(opt.slice('--traces='.length));
  if (process.env.MIMALLOC_TRACES) return path.resolve(process.env.MIMALLOC_TRACES);
  return path.resolve(repoRoot, '..', 'shared', 'traces');
}

function fail(file, line, msg) {
  throw new Error(`${path.basename(file)}: line ${line}: ${msg}`);
}

/**
 * Parse a .trace.gz into typed arrays, streaming the gunzipped bytes through
 * a byte-level state machine (no strings per line). Stops reading after
 * `maxEvents` events. Validates the format as it goes: sequential new ids,
 * frees and reallocs of live objects only, the header's event count.
 */
export function parseTrace(file, { maxEvents = Infinity } = {}) {
  return new Promise((resolve, reject) => {
    let headerBytes = [];
    let header = null;
    let n = 0; // events stored
    let cap = 0;
    let op, tid, id, old, size, align;
    // line state
    let field = 0; // index of the field being read
    let num = 0; // the number being read
    let digits = 0;
    let t = 0; // tid
    let o = 0; // op code
    const f = [0, 0, 0]; // numeric fields after the op letter
    let line = 1;
    let nextId = 1;
    let done = false;
    let stream = null;

    const finishHeader = () => {
      const text = Buffer.from(headerBytes).toString('latin1');
      const m = /^# mtrace v1 program=(\S+) threads=(\d+) events=(\d+)$/.exec(text);
      if (!m) fail(file, 1, `not an mtrace v1 header: ${JSON.stringify(text.slice(0, 80))}`);
      header = { program: m[1], threads: +m[2], events: +m[3] };
      cap = Math.min(header.events, maxEvents);
      op = new Uint8Array(cap);
      tid = new Uint8Array(cap);
      id = new Uint32Array(cap);
      old = new Uint32Array(cap);
      size = new Uint32Array(cap);
      align = new Uint32Array(cap);
      headerBytes = null;
      if (cap === 0) done = true;
    };

    const endField = () => {
      if (field === 1) {
        if (o === 0) fail(file, line, 'bad operation');
      } else {
        if (digits === 0) fail(file, line, `empty field ${field + 1}`);
        if (field === 0) t = num;
        else if (field <= 4) f[field - 2] = num;
      }
      field++;
      num = 0;
      digits = 0;
    };

    const endLine = () => {
      endField();
      const want = o === OP_FREE ? 3 : o === OP_MALLOC ? 4 : 5;
      if (field !== want) fail(file, line, `${OP_NAMES[o]} has ${field} fields, expected ${want}`);
      if (t > 255) fail(file, line, `thread index ${t} > 255`);
      if (n >= cap) fail(file, line, `more events than the header's ${header.events}`);
      op[n] = o;
      tid[n] = t;
      let sz = 0;
      switch (o) {
        case OP_MALLOC:
          id[n] = f[0];
          sz = f[1];
          break;
        case OP_CALLOC:
          id[n] = f[0];
          sz = f[1] * f[2];
          break;
        case OP_ALIGNED:
          id[n] = f[0];
          align[n] = f[1];
          sz = f[2];
          if (f[1] === 0 || f[1] > 0x80000000 || (f[1] & (f[1] - 1)) !== 0) fail(file, line, `alignment ${f[1]} is not a power of two`);
          break;
        case OP_REALLOC:
          old[n] = f[0];
          id[n] = f[1];
          sz = f[2];
          if (f[0] >= nextId) fail(file, line, `realloc of unknown id ${f[0]}`);
          break;
        case OP_FREE:
          id[n] = f[0];
          if (f[0] >= nextId) fail(file, line, `free of unknown id ${f[0]}`);
          break;
      }
      if (o !== OP_FREE) {
        if (id[n] !== nextId) fail(file, line, `new id ${id[n]}, expected ${nextId}`);
        nextId++;
        if (sz > 0xffffffff) fail(file, line, `size ${sz} does not fit in 32 bits`);
        size[n] = sz;
      }
      n++;
      line++;
      field = 0;
      o = 0;
      if (n === cap) done = true;
    };

    const onData = (buf) => {
      if (done) return;
      let i = 0;
      const len = buf.length;
      if (header === null) {
        for (; i < len; i++) {
          const b = buf[i];
          if (b === 10) {
            finishHeader();
            i++;
            break;
          }
          headerBytes.push(b);
          if (headerBytes.length > 4096) fail(file, 1, 'header line too long');
        }
        if (header === null || done) return;
      }
      for (; i < len; i++) {
        const b = buf[i];
        if (b >= 48 && b <= 57) {
          num = num * 10 + (b - 48);
          digits++;
        } else if (b === 32) {
          endField();
        } else if (b === 10) {
          endLine();
          if (done) return;
        } else if (field === 1 && o === 0 && digits === 0) {
          o = b === 109 ? OP_MALLOC : b === 102 ? OP_FREE : b === 114 ? OP_REALLOC : b === 99 ? OP_CALLOC : b === 97 ? OP_ALIGNED : 0;
          if (o === 0) fail(file, line, `unknown operation ${String.fromCharCode(b)}`);
          digits = 1;
        } else {
          fail(file, line, `unexpected byte ${b}`);
        }
      }
    };

    const finish = () => {
      if (header === null) return reject(new Error(`${file}: empty file`));
      if (field !== 0 || digits !== 0) return reject(new Error(`${file}: the last line has no newline`));
      if (n < cap) return reject(new Error(`${file}: ${n} events, the header says ${header.events}`));
      const tr = {
        name: traceName(file),
        program: header.program,
        headerEvents: header.events,
        events: n,
        objects: nextId - 1,
        op, tid, id, old, size, align,
      };
      tr.summary = summarize(tr);
      tr.threads = tr.summary.threads;
      resolve(tr);
    };

    stream = createReadStream(file, { highWaterMark: 1 << 20 }).pipe(createGunzip({ chunkSize: 1 << 20 }));
    stream.on('data', (buf) => {
      try {
        onData(buf);
      } catch (e) {
        stream.destroy();
        reject(e);
        return;
      }
      if (done) {
        stream.destroy();
        try {
          finish();
        } catch (e) {
          reject(e);
        }
      }
    });
    stream.on('end', () => {
      if (!done) finish();
    });
    stream.on('error', reject);
  });
}

/**
 * Figures of a (prefix of a) trace, as in the traces' INDEX.md: peak live
 * bytes (the "ideal" heap), total allocated, counts per op, cross-thread
 * frees, events per thread, largest size. Also checks that every free and
 * realloc names a live object.
 */
export function summarize(tr) {
  const { events, op, tid, id, old, size } = tr;
  const objects = tr.objects;
  const sizeOf = new Float64Array(objects + 1);
  const owner = new Uint8Array(objects + 1); // creator tid + 1 while live, 0 otherwise
  const counts = [0, 0, 0, 0, 0, 0];
  const perThread = [];
  let live = 0;
  let peak = 0;
  let total = 0;
  let maxSize = 0;
  let xfree = 0;
  let liveObjects = 0;
  let peakObjects = 0;
  for (let i = 0; i < events; i++) {
    const o = op[i];
    const t = tid[i];
    counts[o]++;
    perThread[t] = (perThread[t] ?? 0) + 1;
    if (o === OP_FREE || o === OP_REALLOC) {
      const e = o === OP_FREE ? id[i] : old[i];
      if (owner[e] === 0) throw new Error(`${tr.name}: event ${i + 1}: ${OP_NAMES[o]} of id ${e}, which is not live`);
      if (o === OP_FREE && owner[e] !== t + 1) xfree++;
      owner[e] = 0;
      live -= sizeOf[e];
      liveObjects--;
    }
    if (o !== OP_FREE) {
      const s = size[i];
      const n = id[i];
      sizeOf[n] = s;
      owner[n] = t + 1;
      live += s;
      total += s;
      liveObjects++;
      if (s > maxSize) maxSize = s;
      if (live > peak) peak = live;
      if (liveObjects > peakObjects) peakObjects = liveObjects;
    }
  }
  for (let t = 0; t < perThread.length; t++) perThread[t] ??= 0;
  return {
    events,
    objects,
    threads: perThread.length,
    peakLive: peak,
    peakObjects,
    liveAtEnd: live,
    objectsAtEnd: liveObjects,
    totalAllocated: total,
    counts: { m: counts[1], c: counts[2], a: counts[3], r: counts[4], f: counts[5] },
    maxSize,
    crossThreadFrees: xfree,
    perThread,
  };
}

// ---- binary cache -------------------------------------------------------------

function writeAll(fd, u8) {
  let off = 0;
  while (off < u8.length) off += writeSync(fd, u8, off, Math.min(u8.length - off, 1 << 30));
}

function readInto(fd, target, position) {
  const u8 = new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  let off = 0;
  while (off < u8.length) {
    const r = readSync(fd, u8, off, Math.min(u8.length - off, 1 << 30), position + off);
    if (r === 0) throw new Error('binary trace file is truncated');
    off += r;
  }
}

/** Write a full parsed trace to `binFile` (atomically: a temporary file, then rename). */
export function writeBin(tr, binFile, source) {
  const N = tr.events;
  const L = binLayout(N);
  const h = Buffer.alloc(HEADER_BYTES);
  h.write(MAGIC, 0, 'latin1');
  h.writeUInt32LE(HEADER_BYTES, 8);
  h.writeUInt32LE(N, 12);
  h.writeUInt32LE(tr.objects, 16);
  h.writeUInt32LE(tr.threads, 20);
  h.writeDoubleLE(source.size, 24);
  h.writeDoubleLE(source.mtimeMs, 32);
  const s = tr.summary;
  h.writeDoubleLE(s.peakLive, 40);
  h.writeDoubleLE(s.totalAllocated, 48);
  ['m', 'c', 'a', 'r', 'f'].forEach((k, j) => h.writeUInt32LE(s.counts[k], 56 + 4 * j));
  h.writeUInt32LE(s.maxSize, 76);
  h.writeUInt32LE(s.crossThreadFrees, 80);
  h.write(tr.program.slice(0, 63), 88, 'latin1');
  mkdirSync(path.dirname(binFile), { recursive: true });
  const tmp = `${binFile}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    const zeros = new Uint8Array(8);
    writeAll(fd, h);
    writeAll(fd, tr.op);
    writeAll(fd, zeros.subarray(0, P8(N) - N));
    writeAll(fd, tr.tid);
    writeAll(fd, zeros.subarray(0, P8(N) - N));
    for (const a of [tr.id, tr.old, tr.size, tr.align]) writeAll(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, binFile);
  if (statSync(binFile).size !== L.end) throw new Error(`${binFile}: wrote ${statSync(binFile).size} bytes, expected ${L.end}`);
}

/** The header of a binary file, or null when the file is missing or not one. */
export function readBinHeader(binFile) {
  if (!existsSync(binFile)) return null;
  const fd = openSync(binFile, 'r');
  try {
    const h = Buffer.alloc(HEADER_BYTES);
    if (readSync(fd, h, 0, HEADER_BYTES, 0) !== HEADER_BYTES) return null;
    if (h.toString('latin1', 0, 8) !== MAGIC || h.readUInt32LE(8) !== HEADER_BYTES) return null;
    const N = h.readUInt32LE(12);
    if (statSync(binFile).size !== binLayout(N).end) return null;
    const program = h.toString('latin1', 88, 152).replace(/\0+$/, '');
    return {
      events: N,
      objects: h.readUInt32LE(16),
      threads: h.readUInt32LE(20),
      sourceSize: h.readDoubleLE(24),
      sourceMtimeMs: h.readDoubleLE(32),
      peakLive: h.readDoubleLE(40),
      totalAllocated: h.readDoubleLE(48),
      program,
    };
  } finally {
    closeSync(fd);
  }
}

/**
 * Read the first `maxEvents` events of a binary file into fresh typed arrays
 * (no validation beyond the header; the file was validated when written).
 */
export function readBin(binFile, { maxEvents = Infinity, name = path.basename(binFile, '.bin') } = {}) {
  const hd = readBinHeader(binFile);
  if (!hd) throw new Error(`${binFile}: not a binary trace file`);
  const n = Math.min(hd.events, maxEvents);
  const L = binLayout(hd.events);
  const tr = {
    name,
    program: hd.program,
    headerEvents: hd.events,
    events: n,
    op: new Uint8Array(n),
    tid: new Uint8Array(n),
    id: new Uint32Array(n),
    old: new Uint32Array(n),
    size: new Uint32Array(n),
    align: new Uint32Array(n),
  };
  const fd = openSync(binFile, 'r');
  try {
    for (const k of ['op', 'tid', 'id', 'old', 'size', 'align']) readInto(fd, tr[k], L[k]);
  } finally {
    closeSync(fd);
  }
  if (n === hd.events) tr.objects = hd.objects;
  else {
    // ids are sequential: the highest id created in the prefix
    let maxId = 0;
    for (let i = n - 1; i >= 0; i--) {
      if (tr.op[i] !== OP_FREE) {
        maxId = tr.id[i];
        break;
      }
    }
    tr.objects = maxId;
  }
  return tr;
}

/** bench/build/traces/NAME.bin for a trace file. */
export function binFileFor(traceFile, buildDir) {
  return path.join(buildDir, 'traces', `${traceName(traceFile)}.bin`);
}

/**
 * Make sure bench/build/traces/NAME.bin is a current parse of `traceFile`
 * (same size and mtime as recorded in its header), parsing the whole trace
 * when it is not. Returns { binFile, header, parsedMs } (parsedMs null when
 * the cache was current).
 */
export async function ensureBin(traceFile, buildDir) {
  const binFile = binFileFor(traceFile, buildDir);
  const st = statSync(traceFile);
  const hd = readBinHeader(binFile);
  if (hd && hd.sourceSize === st.size && hd.sourceMtimeMs === st.mtimeMs) return { binFile, header: hd, parsedMs: null };
  const t0 = performance.now();
  const tr = await parseTrace(traceFile);
  writeBin(tr, binFile, st);
  return { binFile, header: readBinHeader(binFile), parsedMs: performance.now() - t0 };
}

/**
 * A trace ready for replay: the cached binary parse (created or refreshed as
 * needed) read back up to `maxEvents`, with its summary. The whole-trace
 * header is at .fileHeader.
 */
export async function loadTrace(traceFile, { buildDir, maxEvents = Infinity } = {}) {
  const { binFile, header, parsedMs } = await ensureBin(traceFile, buildDir);
  const tr = readBin(binFile, { maxEvents, name: traceName(traceFile) });
  tr.summary = summarize(tr);
  tr.threads = tr.summary.threads;
  tr.fileHeader = header;
  tr.binFile = binFile;
  tr.parsedMs = parsedMs;
  return tr;
}
