// Replay of real programs' malloc/free traces (mtrace v1, see
// /work/shared/traces/README.md) through mimalloc-ts, checking every block:
// non-NULL, 8-aligned (and aligned as asked), usableSize >= size, calloc
// zeroed, no overlap with any live block (a shadow map of 8-byte granules),
// contents kept (an id-derived pattern in the first and last 4 bytes of each
// block, verified at free and realloc). check() every 50,000 events and at
// the end; after freeing everything the allocator must be empty.
//
// The traces live outside the repository (../shared/traces, or
// $MIMALLOC_TRACES); without them the tests are skipped.

import test, { afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Allocator } from '../dist/index.js';
import {
  OP_ALIGNED,
  OP_CALLOC,
  OP_FREE,
  OP_MALLOC,
  OP_NAMES,
  OP_REALLOC,
  parseTrace,
  readBin,
  summarize,
  writeBin,
} from '../bench/lib/trace.js';
import { checkPattern, findTraces, makeShadow, writePattern } from './workers/replay-common.js';
import { DONE, FAILED, SEQ, TURN } from './workers/replay-worker.js';

const { dir: TRACES } = findTraces();
const traceFile = (name) => path.join(TRACES, `${name}.trace.gz`);
/** false, or why the test is skipped: the trace is not there. */
const skipFor = (name) =>
  existsSync(traceFile(name)) ? false : `traces not found at ${TRACES} (no ${name}.trace.gz; set MIMALLOC_TRACES to the folder)`;

const PREFIX = 150_000;
const BUF = 256 * 2 ** 20;
const CHECK_EVERY = 50_000;
const SINGLE = ['sqlite3-shell', 'python-threads', 'perl-textstats', 'ripgrep']; // ripgrep: aligned allocations
const MODES = [
  { name: 'default', opts: {} },
  { name: 'secure 4', opts: { secure: 4 } },
  { name: 'debug', opts: { debug: true } },
];

const prefixes = new Map();
function prefix(name, events) {
  const key = `${name}:${events}`;
  if (!prefixes.has(key)) prefixes.set(key, parseTrace(traceFile(name), { maxEvents: events }));
  return prefixes.get(key);
}

// one shadow map for all single-agent runs (one Int32 per 8 bytes of the buffer)
let shadowArr = null;

/**
 * Replay `tr` on `a`, checking everything. Returns counts of what was
 * checked, so the test can assert that the prefix exercised each kind of event.
 */
function replayChecked(a, tr, label) {
  const { events, objects, op, id, old, size, align } = tr;
  const u8 = a.u8;
  shadowArr ??= new Int32Array(BUF / 8);
  assert.ok(shadowArr.length * 8 >= u8.length, 'shadow map covers the buffer');
  shadowArr.fill(0);
  const shadow = makeShadow(shadowArr);
  const live = new Uint32Array(objects + 1);
  const req = new Uint32Array(objects + 1);
  const usable = new Uint32Array(objects + 1);
  const seen = { m: 0, c: 0, a: 0, r: 0, f: 0, checks: 0, zeroBytes: 0 };
  const fail = (i, msg) => assert.fail(`${label}: event ${i + 1} (${OP_NAMES[op[i]]}): ${msg}`);

  for (let i = 0; i < events; i++) {
    const o = op[i];
    const k = id[i];
    seen[OP_NAMES[o]]++;
    if (o === OP_FREE) {
      const p = live[k];
      if (p === 0) fail(i, `object ${k} is not live in the replay`);
      const bad = checkPattern(u8, p, req[k], k);
      if (bad) fail(i, `pattern broken before free: ${bad}`);
      const sbad = shadow.clear(p, usable[k], k);
      if (sbad) fail(i, `shadow: ${sbad}`);
      a.free(p);
      live[k] = 0;
    } else {
      const n = size[i];
      let p;
      let q = 0;
      if (o === OP_MALLOC) p = a.malloc(n);
      else if (o === OP_CALLOC) p = a.calloc(1, n);
      else if (o === OP_ALIGNED) p = a.mallocAligned(n, align[i]);
      else {
        q = old[i];
        const p0 = live[q];
        if (p0 === 0) fail(i, `object ${q} is not live in the replay`);
        const bad0 = checkPattern(u8, p0, req[q], q);
        if (bad0) fail(i, `pattern broken before realloc: ${bad0}`);
        p = a.realloc(p0, n);
        if (p === 0) fail(i, `realloc(${p0}, ${n}) returned NULL`);
        const bad = checkPattern(u8, p, req[q], q, Math.min(req[q], n));
        if (bad) fail(i, `realloc ${p0} -> ${p} did not keep the first ${Math.min(req[q], n)} bytes: ${bad}`);
        const sbad = shadow.clear(p0, usable[q], q);
        if (sbad) fail(i, `shadow: ${sbad}`);
        live[q] = 0;
      }
      if (p === 0) fail(i, `allocation of ${n} bytes returned NULL`);
      if (p % 8 !== 0) fail(i, `address ${p} is not 8-aligned`);
      if (p < 0 || p + n > u8.length) fail(i, `block ${p}..${p + n} is outside the buffer`);
      if (o === OP_ALIGNED && p % align[i] !== 0) fail(i, `address ${p} is not a multiple of ${align[i]}`);
      const us = a.usableSize(p);
      if (!(us >= n)) fail(i, `usableSize(${p}) = ${us} < ${n}`);
      if (o === OP_CALLOC) {
        for (let j = 0; j < n; j++) if (u8[p + j] !== 0) fail(i, `calloc block ${p} of ${n} bytes: byte ${j} is ${u8[p + j]}`);
        seen.zeroBytes += n;
      }
      const other = shadow.mark(p, us, k);
      if (other !== null) fail(i, `block ${p} (${us} usable bytes) of object ${k} overlaps live object ${other} (at ${live[other]})`);
      writePattern(u8, p, n, k);
      live[k] = p;
      req[k] = n;
      usable[k] = us;
    }
    if ((i + 1) % CHECK_EVERY === 0) {
      a.check();
      seen.checks++;
    }
  }
  a.check();
  seen.checks++;

  // everything still live is intact; free it; the allocator is then empty
  let left = 0;
  for (let k = 1; k <= objects; k++) {
    const p = live[k];
    if (p === 0) continue;
    const bad = checkPattern(u8, p, req[k], k);
    if (bad) assert.fail(`${label}: at the end: ${bad}`);
    a.free(p);
    left++;
  }
  seen.leftAtEnd = left;
  return seen;
}

afterEach(() => {
  for (const w of running) w.terminate();
  running.clear();
});
const running = new Set();

test('trace parser: same events as a plain line-splitting reader; binary file round trip', { skip: skipFor('ripgrep'), timeout: 30_000 }, async () => {
  const name = 'ripgrep';
  const N = 60_000;
  const tr = await prefix(name, N);
  assert.equal(tr.events, N);
  // independent reader: gunzip, split lines, parseInt
  const { gunzipSync } = await import('node:zlib');
  const { readFileSync } = await import('node:fs');
  const text = gunzipSync(readFileSync(traceFile(name))).toString('latin1');
  const lines = text.split('\n', N + 1);
  assert.match(lines[0], /^# mtrace v1 program=\S+ threads=\d+ events=\d+$/);
  const codes = { m: OP_MALLOC, c: OP_CALLOC, a: OP_ALIGNED, r: OP_REALLOC, f: OP_FREE };
  for (let i = 0; i < N; i++) {
    const f = lines[i + 1].split(' ');
    const o = codes[f[1]];
    const v = f.slice(2).map(Number);
    const want =
      o === OP_MALLOC ? [v[0], 0, v[1], 0]
      : o === OP_CALLOC ? [v[0], 0, v[1] * v[2], 0]
      : o === OP_ALIGNED ? [v[0], 0, v[2], v[1]]
      : o === OP_REALLOC ? [v[1], v[0], v[2], 0]
      : [v[0], 0, 0, 0];
    const got = [tr.id[i], tr.old[i], tr.size[i], tr.align[i]];
    if (tr.op[i] !== o || tr.tid[i] !== Number(f[0]) || got.some((x, j) => x !== want[j])) {
      assert.fail(`event ${i + 1} "${lines[i + 1]}": parsed op ${tr.op[i]} tid ${tr.tid[i]} ${got}, expected ${o} ${f[0]} ${want}`);
    }
  }
  // the binary file: write, read a shorter prefix back, compare
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mtrbin-'));
  try {
    const bin = path.join(tmp, `${name}.bin`);
    writeBin(tr, bin, { size: 1, mtimeMs: 2 });
    const back = readBin(bin, { maxEvents: N - 1000 });
    assert.equal(back.events, N - 1000);
    for (const k of ['op', 'tid', 'id', 'old', 'size', 'align']) {
      assert.deepEqual(back[k], tr[k].subarray(0, N - 1000), `${k} survives the round trip`);
    }
    const s = summarize(back);
    assert.equal(back.objects, s.objects);
    assert.equal(s.counts.m + s.counts.c + s.counts.a + s.counts.r + s.counts.f, N - 1000);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

for (const name of SINGLE) {
  for (const mode of MODES) {
    test(`replay ${name} (first ${PREFIX.toLocaleString('en-US')} events), ${mode.name}`, { skip: skipFor(name), timeout: 60_000 }, async () => {
      const tr = await prefix(name, PREFIX);
      assert.equal(tr.events, Math.min(PREFIX, tr.headerEvents));
      const a = Allocator.create({ size: BUF, ...mode.opts });
      const used0 = a.stats().used;
      const seen = replayChecked(a, tr, `${name} ${mode.name}`);
      // the prefix really exercised what the trace holds
      const s = tr.summary;
      assert.deepEqual(
        { m: seen.m, c: seen.c, a: seen.a, r: seen.r, f: seen.f },
        s.counts,
        'every event was replayed',
      );
      assert.equal(seen.leftAtEnd, s.objectsAtEnd, 'objects live at the end of the prefix');
      a.check();
      const st = a.stats();
      assert.equal(st.used, used0, `stats().used after freeing everything (was ${used0} when created)`);
      assert.equal(st.blocks, 0, 'no live blocks left');
    });
  }
}

// ---- several workers on one buffer --------------------------------------------

function toShared(ta) {
  const s = new ta.constructor(new SharedArrayBuffer(Math.max(8, ta.byteLength)), 0, ta.length);
  s.set(ta);
  return s;
}

async function replayWorkers(name, extra, opts = {}) {
  // the prefix: up to `extra` events after the first event of a second thread
  const probe = await prefix(name, 1_000_000);
  let first = probe.events;
  for (let i = 0; i < probe.events; i++) {
    if (probe.tid[i] !== 0) {
      first = i;
      break;
    }
  }
  assert.ok(first < probe.events, `${name} has events of more than one thread in its first 1,000,000`);
  const N = Math.min(probe.events, first + extra);
  const tr = await prefix(name, N);
  const s = tr.summary;
  const threads = s.threads;
  assert.ok(threads > 1);

  const BUFSZ = 128 * 2 ** 20;
  const a = Allocator.create({ size: BUFSZ, ...opts });
  const used0 = a.stats().used;
  const slots = new SharedArrayBuffer(4 * (tr.objects + 1));
  const usable = new SharedArrayBuffer(4 * (tr.objects + 1));
  const shadow = new SharedArrayBuffer(4 * (BUFSZ / 8));
  const ctl = new Int32Array(new SharedArrayBuffer(4 * (TURN + threads)));
  const arrays = {};
  for (const k of ['op', 'tid', 'id', 'old', 'size', 'align']) arrays[k] = toShared(tr[k]);

  const url = new URL('./workers/replay-worker.js', import.meta.url);
  const results = [];
  const ends = [];
  for (let t = 0; t < threads; t++) {
    const w = new Worker(url, {
      workerData: { kind: 'replay-test', handle: a.handle, t, threads, N, objects: tr.objects, slots, usable, shadow, ctl: ctl.buffer, arrays },
    });
    running.add(w);
    ends.push(
      new Promise((resolve, reject) => {
        w.on('message', (m) => results.push(m));
        w.on('error', reject);
        w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${t} exited with ${code}`))));
      }),
    );
  }
  Atomics.store(ctl, SEQ, 0);
  Atomics.store(ctl, TURN + tr.tid[0], 1);
  Atomics.notify(ctl, TURN + tr.tid[0]);
  await Promise.all(ends);
  running.clear();

  const errors = results.filter((m) => !m.ok);
  if (errors.length) assert.fail(errors.map((m) => m.error).join('\n'));
  assert.equal(results.length, threads, 'every worker reported');
  assert.equal(Atomics.load(ctl, FAILED), 0);
  assert.equal(Atomics.load(ctl, DONE), 1);
  assert.equal(Atomics.load(ctl, SEQ), N, 'every event ran');
  const ran = results.reduce((x, m) => x + m.ran, 0);
  assert.equal(ran, N);
  for (const m of results) assert.equal(m.ran, s.perThread[m.t], `worker ${m.t} ran the events of thread ${m.t}`);
  const xfrees = results.reduce((x, m) => x + m.xfrees, 0);
  assert.equal(xfrees, s.crossThreadFrees, 'cross-thread frees done by the freeing thread');
  assert.ok(xfrees > 0, `the prefix has cross-thread frees (${xfrees})`);
  // cross-thread reallocs, counted from the trace
  const creator = new Uint8Array(tr.objects + 1);
  let wantXr = 0;
  for (let i = 0; i < N; i++) {
    if (tr.op[i] === OP_REALLOC && creator[tr.old[i]] !== tr.tid[i]) wantXr++;
    if (tr.op[i] !== OP_FREE) creator[tr.id[i]] = tr.tid[i];
  }
  const xreallocs = results.reduce((x, m) => x + m.xreallocs, 0);
  assert.equal(xreallocs, wantXr, 'cross-thread reallocs done by the reallocating thread');

  // all workers detached: check, verify and free what is left from here
  a.check();
  const u8 = a.u8;
  const addr = new Int32Array(slots);
  const req = new Uint32Array(tr.objects + 1);
  for (let i = 0; i < N; i++) if (tr.op[i] !== OP_FREE) req[tr.id[i]] = tr.size[i];
  let left = 0;
  for (let k = 1; k <= tr.objects; k++) {
    const p = addr[k];
    if (p === 0) continue;
    const bad = checkPattern(u8, p, req[k], k);
    if (bad) assert.fail(`${name}: after the workers ended: ${bad}`);
    a.free(p);
    left++;
  }
  assert.equal(left, s.objectsAtEnd, 'objects live at the end of the prefix');
  a.check();
  const st = a.stats();
  assert.equal(st.used, used0, 'stats().used after freeing everything');
  assert.equal(st.blocks, 0, 'no live blocks left');
  return { N, threads, xfrees, xreallocs };
}

test('replay python-threads with one worker per thread (cross-thread frees), global order', { skip: skipFor('python-threads'), timeout: 60_000 }, async () => {
  await replayWorkers('python-threads', 100_000);
});

test('replay ripgrep with one worker per thread (cross-thread frees and reallocs), global order', { skip: skipFor('ripgrep'), timeout: 60_000 }, async () => {
  const r = await replayWorkers('ripgrep', 100_000);
  assert.ok(r.xreallocs > 0, `the prefix has cross-thread reallocs (${r.xreallocs})`);
});

test('replay ripgrep with one worker per thread, secure 4', { skip: skipFor('ripgrep'), timeout: 60_000 }, async () => {
  await replayWorkers('ripgrep', 100_000, { secure: 4 });
});
