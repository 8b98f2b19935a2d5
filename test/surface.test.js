// The public surface: what a caller can pass and what comes back when it is wrong.
//   - options: unknown names rejected (named in the message), every option validated before
//     a passed buffer is touched, `secure` 0..4 only
//   - `new Allocator()` refused with a pointer to Allocator.create()
//   - arguments: every method and every exported function rejects a wrong type (TypeError)
//     or value (RangeError) with a message showing the value; a BigInt is our TypeError on
//     every variant's fast paths, not V8's "Cannot mix BigInt and other types"
//   - src/: no import cycle, no file over 600 lines
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as api from '../dist/index.js';
import { Allocator, AllocatorError, goodSize } from '../dist/index.js';
import { MiB, hex } from './lib/helpers.js';

/**
 * Asserts that fn throws an instance of `type` whose message contains each of `shows` as a
 * token (not inside a longer word or number: "3" is not found in "2^31"). Returns the error.
 */
function throwsShowing(fn, type, shows, what) {
  let err = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (err === null) assert.fail(`${what}: did not throw`);
  assert.ok(err instanceof type, `${what}: expected a ${type.name}, got ${err?.constructor?.name}: ${err?.message}`);
  for (const s of shows) {
    const esc = s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const re = new RegExp(`${/^\w/.test(s) ? '(?<![\\w.])' : ''}${esc}${/\w$/.test(s) ? '(?![\\w]|\\.\\d)' : ''}`);
    assert.match(err.message, re, `${what}: the message should show ${s}`);
  }
  return err;
}

describe('exports', () => {
  test('the ESM and CommonJS builds export the same three names', () => {
    const require = createRequire(import.meta.url);
    const cjs = require('../dist/cjs/index.js');
    // A new export needs its argument checks tested here (see "goodSize" below).
    assert.deepEqual(Object.keys(api).sort(), ['Allocator', 'AllocatorError', 'goodSize']);
    assert.deepEqual(Object.keys(cjs).filter((k) => k !== '__esModule').sort(), ['Allocator', 'AllocatorError', 'goodSize']);
  });

  test('new Allocator() is a TypeError saying to use Allocator.create()', () => {
    for (const args of [[], [{}], [{ size: MiB }], [undefined, () => {}]]) {
      assert.throws(() => new Allocator(...args), (e) => e instanceof TypeError && /Allocator\.create\(/.test(e.message),
        `new Allocator(${args.map((x) => JSON.stringify(x)).join(', ')})`);
    }
  });
});

describe('options', () => {
  test('an unknown option of create is an error naming it (no silent default-size buffer)', () => {
    throwsShowing(() => Allocator.create({ sise: 1 << 20 }), Error, ['"sise"'], 'create({ sise })');
    throwsShowing(() => Allocator.create({ size: MiB, secure: 1, Debug: true }), Error, ['"Debug"'], 'create({ Debug })');
    const e = throwsShowing(() => Allocator.create({ sise: MiB, sharde: true }), Error, ['"sise"', '"sharde"'], 'two unknown');
    assert.match(e.message, /unknown option/);
    // an attach-only spelling mistake in create, and a create option in attach
    throwsShowing(() => Allocator.create({ onErorr: () => {} }), Error, ['"onErorr"'], 'create({ onErorr })');
  });

  test('an unknown option of attach is an error naming it, and no agent is registered', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const before = new Uint8Array(a.buffer).slice();
    throwsShowing(() => Allocator.attach(a.handle, { onErorr: () => {} }), Error, ['"onErorr"'], 'attach({ onErorr })');
    throwsShowing(() => Allocator.attach(a.handle, { size: MiB }), Error, ['"size"'], 'attach({ size })');
    throwsShowing(() => Allocator.attach(a.handle, { allocStack: 1 }), Error, ['"allocStack"'], 'attach({ allocStack })');
    assert.equal(a.stats().agents, 1);
    assert.ok(Buffer.from(a.buffer).equals(Buffer.from(before.buffer)), 'the buffer is unchanged');
  });

  test('every option is validated before a passed buffer is touched', () => {
    const a = Allocator.create({ buffer: new SharedArrayBuffer(4 * MiB) });
    // live blocks with contents, some freed (non-empty free lists), one huge
    const live = [];
    for (let i = 0; i < 300; i++) {
      const n = i === 7 ? 600 * 1024 : i % 50 === 0 ? 20000 : 8 + (i * 37) % 900;
      const p = a.malloc(n);
      assert.notEqual(p, 0);
      a.u8.fill(i & 255 || 1, p, p + n);
      live.push({ p, n, byte: i & 255 || 1 });
    }
    for (let i = 0; i < live.length; i += 3) a.free(live[i].p);
    const kept = live.filter((_, i) => i % 3 !== 0);
    const snapshot = Buffer.from(new Uint8Array(a.buffer).slice().buffer);
    const unchanged = (what) => {
      const now = Buffer.from(a.buffer);
      if (!now.equals(snapshot)) {
        let i = 0;
        while (now[i] === snapshot[i]) i++;
        assert.fail(`${what} changed the live buffer: first at byte ${hex(i)} (${snapshot[i]} → ${now[i]})`);
      }
    };
    const buffer = a.buffer;
    const bad = [
      { allocStacks: -1 }, { allocStacks: 1.5 }, { allocStacks: '1' }, { allocStacks: 2 ** 31 + 1 },
      { secure: 5 }, { secure: -1 }, { secure: 2.5 }, { secure: true }, { secure: '3' }, { secure: 3n },
      { debug: 'yes' }, { debug: 1 }, { debug: null },
      { onError: 1 }, { onError: 'handler' }, { onError: null },
      { checkFree: 0 }, { checkFree: 'false' },
      { size: 1 << 20 }, { size: 4 * MiB }, { size: '1' }, { shared: true }, { shared: false },
      { sise: 1 << 20 }, { bufer: buffer },
      // valid options first, the bad one last
      { secure: 3, debug: true, allocStacks: 1, checkFree: 0 },
      { onError: () => {}, secure: 4, debug: true, checkFree: true, allocStacks: -1 },
      { secure: 1, debug: false, size: 1 << 20 },
      { checkFree: false, secure: 0, onError: () => {}, typo: 1 },
    ];
    for (const o of bad) {
      const what = `create({ buffer: live, ${Object.entries(o).map(([k, v]) => `${k}: ${typeof v === 'bigint' ? `${v}n` : typeof v === 'function' ? 'fn' : JSON.stringify(v)}`).join(', ')} })`;
      assert.throws(() => Allocator.create({ buffer, ...o }), Error, what);
      unchanged(what);
    }
    for (const o of [{ allocStacks: -1 }, { onError: 5 }, { allocStacks: '2' }, { secure: 3 }, null, 5]) {
      assert.throws(() => Allocator.attach(a.handle, o), Error, `attach(handle, ${JSON.stringify(o)})`);
      unchanged(`attach(handle, ${JSON.stringify(o)})`);
    }
    assert.equal(a.stats().agents, 1, 'no agent was registered');
    a.check();
    for (const { p, n, byte } of kept) {
      assert.equal(a.usableSize(p) >= n, true);
      for (let i = 0; i < n; i++) if (a.u8[p + i] !== byte) assert.fail(`block ${hex(p)}: byte ${i} changed`);
    }
    const liveSet = new Set(kept.map((b) => b.p));
    for (const n of [8, 100, 900, 20000, 600 * 1024]) {
      const p = a.malloc(n);
      assert.notEqual(p, 0, `malloc(${n})`);
      assert.ok(!liveSet.has(p), `malloc(${n}) returned the live block ${hex(p)}`);
      for (const b of kept) {
        if (p < b.p + b.n && b.p < p + n) assert.fail(`malloc(${n}) = ${hex(p)} overlaps the live block ${hex(b.p)}`);
      }
      liveSet.add(p);
    }
    a.check();
  });

  test('secure accepts 0..4 only (the types say 0 | 1 | 2 | 3 | 4)', () => {
    for (const secure of [0, 1, 2, 3, 4]) {
      const a = Allocator.create({ size: 4 * MiB, secure, debug: false });
      const p = a.malloc(10);
      // 3 and 4 pad every block: usableSize is the request; below, a 16-byte bin
      assert.equal(a.usableSize(p), secure >= 3 ? 10 : 16, `secure ${secure}`);
      a.check();
    }
    for (const secure of [-1, 5, 6, 255, 2.5, NaN, Infinity, -0.5]) {
      throwsShowing(() => Allocator.create({ size: 4 * MiB, secure }), RangeError, [String(secure)], `secure: ${secure}`);
    }
    for (const secure of ['3', true, 3n, null, [3], {}]) {
      assert.throws(() => Allocator.create({ size: 4 * MiB, secure }), TypeError, `secure: ${String(secure)}`);
    }
    for (const f of ['../dist/options.d.ts', '../dist/cjs/options.d.ts']) {
      const dts = readFileSync(new URL(f, import.meta.url), 'utf8');
      assert.match(dts, /\bsecure\?: 0 \| 1 \| 2 \| 3 \| 4;/, f);
    }
  });
});

describe('arguments', () => {
  const sizes = [];
  for (let n = 0; n <= 70000; n++) sizes.push(n);
  for (let e = 16; e <= 52; e++) for (const d of [-1, 0, 1, 7, 8, 9]) sizes.push(2 ** e + d);
  sizes.push(512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, 2 ** 31 - 65536 - 8, 4294967295, Number.MAX_SAFE_INTEGER);

  test('the exported goodSize validates as a.goodSize does and answers the same', () => {
    const a = Allocator.create({ size: 4 * MiB, debug: false }); // (goodSize answers for the default mode)
    for (const [v, type] of [['8', TypeError], [null, TypeError], [undefined, TypeError], [8n, TypeError], [true, TypeError], [{}, TypeError],
      [-1, RangeError], [1.5, RangeError], [NaN, RangeError], [Infinity, RangeError], [-Infinity, RangeError]]) {
      const e = throwsShowing(() => goodSize(v), type, [], `goodSize(${String(v)})`);
      const m = throwsShowing(() => a.goodSize(v), type, [], `a.goodSize(${String(v)})`);
      assert.equal(e.message, m.message, `goodSize(${String(v)}): the method's message`);
    }
    for (const n of sizes) {
      const g = goodSize(n);
      if (g !== a.goodSize(n)) assert.fail(`goodSize(${n}) = ${g}, a.goodSize(${n}) = ${a.goodSize(n)}`);
      if (g < n) assert.fail(`goodSize(${n}) = ${g} < ${n}`);
    }
    assert.equal(goodSize(-0), goodSize(0));
  });

  test('isAgentAttached: false for 0 and non-ids, true for an attached agent, TypeError for a non-number', () => {
    const a = Allocator.create({ size: 4 * MiB });
    assert.equal(a.isAgentAttached(0), false, '0 marks a free agent record');
    assert.equal(a.isAgentAttached(a.agentId), true);
    for (const id of [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 29, 2 ** 32 + a.agentId, a.agentId + 1]) {
      assert.equal(a.isAgentAttached(id), false, `isAgentAttached(${id})`);
    }
    for (const id of ['1', String(a.agentId), null, undefined, 1n, {}]) {
      assert.throws(() => a.isAgentAttached(id), TypeError, `isAgentAttached(${String(id)})`);
    }
    const b = Allocator.attach(a.handle);
    assert.equal(a.isAgentAttached(b.agentId), true);
    b.detach();
    assert.equal(a.isAgentAttached(b.agentId), false);
  });

  test('every message shows the offending value (and the type of a string, bigint or boolean)', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const p = a.malloc(64);
    const cases = [
      ['create({ secure: true })', () => Allocator.create({ secure: true }), TypeError, ['boolean true']],
      ["create({ size: '1' })", () => Allocator.create({ size: '1' }), TypeError, ['string "1"']],
      ['create({ size: 1.5 })', () => Allocator.create({ size: 1.5 }), RangeError, ['1.5']],
      ['create({ size: 2 ** 33 })', () => Allocator.create({ size: 2 ** 33 }), RangeError, ['8589934592']],
      ['create({ size: 1000 })', () => Allocator.create({ size: 1000 }), RangeError, ['1000']],
      ['create({ allocStacks: -1 })', () => Allocator.create({ allocStacks: -1 }), RangeError, ['-1']],
      ["create({ debug: 'yes' })", () => Allocator.create({ debug: 'yes' }), TypeError, ['string "yes"']],
      ['create({ onError: 1 })', () => Allocator.create({ onError: 1 }), TypeError, ['1']],
      ['create({ checkFree: 0 })', () => Allocator.create({ checkFree: 0 }), TypeError, ['0']],
      ['create({ shared: 1 })', () => Allocator.create({ shared: 1 }), TypeError, ['1']],
      ['create({ buffer: 5 })', () => Allocator.create({ buffer: 5 }), TypeError, ['5']],
      ["create('big')", () => Allocator.create('big'), TypeError, ['string "big"']],
      ['attach(5)', () => Allocator.attach(5), TypeError, ['5']],
      ['attach(handle, { allocStacks: 2.5 })', () => Allocator.attach(a.handle, { allocStacks: 2.5 }), RangeError, ['2.5']],
      ["malloc('8')", () => a.malloc('8'), TypeError, ['string "8"']],
      ['malloc(-3)', () => a.malloc(-3), RangeError, ['-3']],
      ['malloc(8.5)', () => a.malloc(8.5), RangeError, ['8.5']],
      ['free(null)', () => a.free(null), TypeError, ['null']],
      ['free(-8)', () => a.free(-8), RangeError, ['-8']],
      ['free(2 ** 32)', () => a.free(2 ** 32), RangeError, ['4294967296']],
      ['realloc(8n, 1)', () => a.realloc(8n, 1), TypeError, ['bigint 8n']],
      ['realloc(p, -5)', () => a.realloc(p, -5), RangeError, ['-5']],
      ['mallocAligned(8, 3)', () => a.mallocAligned(8, 3), RangeError, ['3']],
      ["mallocAligned(8, '16')", () => a.mallocAligned(8, '16'), TypeError, ['string "16"']],
      ['mallocAligned(8, 2 ** 32)', () => a.mallocAligned(8, 2 ** 32), RangeError, ['4294967296']],
      ['calloc(-1, 1)', () => a.calloc(-1, 1), RangeError, ['-1']],
      ["calloc(1, 'x')", () => a.calloc(1, 'x'), TypeError, ['string "x"']],
      ['zalloc(NaN)', () => a.zalloc(NaN), RangeError, ['NaN']],
      ['usableSize(1.5)', () => a.usableSize(1.5), RangeError, ['1.5']],
      ['expand(p, true)', () => a.expand(p, true), TypeError, ['boolean true']],
      ['goodSize(-1)', () => goodSize(-1), RangeError, ['-1']],
      ['a.goodSize(2.5)', () => a.goodSize(2.5), RangeError, ['2.5']],
      ["releaseAgent('x')", () => a.releaseAgent('x'), TypeError, ['string "x"']],
      ['isAgentAttached(8n)', () => a.isAgentAttached(8n), TypeError, ['bigint 8n']],
      ['setErrorHandler(5)', () => a.setErrorHandler(5), TypeError, ['5']],
      ["setErrorHandler('f')", () => a.setErrorHandler('f'), TypeError, ['string "f"']],
      ["collect('yes')", () => a.collect('yes'), TypeError, ['string "yes"']],
      ['leakReport(5)', () => a.leakReport(5), TypeError, ['5']],
    ];
    for (const [what, fn, type, shows] of cases) throwsShowing(fn, type, shows, what);
    a.free(p);
    a.check();
  });

  test('leakReport and printStats check their arguments as create and collect do', () => {
    const a = Allocator.create({ size: 4 * MiB });
    throwsShowing(() => a.leakReport({ all: 'yes' }), TypeError, ['string "yes"'], "leakReport({ all: 'yes' })");
    throwsShowing(() => a.leakReport({ all: 1 }), TypeError, ['1'], 'leakReport({ all: 1 })');
    throwsShowing(() => a.leakReport({ al: true }), Error, ['"al"'], 'leakReport({ al: true })');
    throwsShowing(() => a.leakReport([]), TypeError, ['array of length 0'], 'leakReport([])');
    const saved = console.log;
    const printed = [];
    console.log = (...args) => { printed.push(args.join(' ')); };
    try {
      throwsShowing(() => a.printStats('false'), TypeError, ['string "false"'], "printStats('false')");
      throwsShowing(() => a.printStats(0), TypeError, ['0'], 'printStats(0)');
    } finally {
      console.log = saved;
    }
    assert.deepEqual(printed, [], 'nothing printed for a refused call');
  });

  // Each variant's malloc and free are separate fast paths (allocator.ts): a BigInt must
  // reach the argument checks there too, also once V8 has optimised them for numbers.
  const variants = [
    ['default', {}], ['secure: 3', { secure: 3 }], ['secure: 4', { secure: 4 }], ['checkFree: false', { checkFree: false }],
    ['debug: true', { debug: true }], ['allocStacks: 1', { allocStacks: 1 }],
  ];
  for (const [name, opts] of variants) {
    test(`${name}: a BigInt address or size is our TypeError, not V8's "Cannot mix BigInt"`, () => {
      const a = Allocator.create({ size: 8 * MiB, ...opts });
      // warm the fast paths up with numbers first
      const ring = new Array(64).fill(0);
      for (let i = 0; i < 20000; i++) {
        const k = i & 63;
        if (ring[k] !== 0) a.free(ring[k]);
        ring[k] = a.malloc((i * 13) & 1023);
      }
      const p = a.malloc(100);
      a.u8.fill(0x5a, p, p + 100);
      const P = BigInt(p);
      const calls = [
        ['free(8n)', () => a.free(8n), 'address'], ['free(0n)', () => a.free(0n), 'address'], ['free(BigInt(p))', () => a.free(P), 'address'],
        ['malloc(8n)', () => a.malloc(8n), 'size'], ['malloc(0n)', () => a.malloc(0n), 'size'], ['malloc(4096n)', () => a.malloc(4096n), 'size'],
        ['realloc(8n, 16)', () => a.realloc(8n, 16), 'address'], ['realloc(BigInt(p), 16)', () => a.realloc(P, 16), 'address'],
        ['realloc(p, 8n)', () => a.realloc(p, 8n), 'size'],
        ['usableSize(8n)', () => a.usableSize(8n), 'address'], ['usableSize(BigInt(p))', () => a.usableSize(P), 'address'],
        ['zalloc(8n)', () => a.zalloc(8n), 'size'],
        ['calloc(8n, 1)', () => a.calloc(8n, 1), 'count'], ['calloc(1, 8n)', () => a.calloc(1, 8n), 'size'],
        ['mallocAligned(8n, 16)', () => a.mallocAligned(8n, 16), 'size'], ['mallocAligned(16, 16n)', () => a.mallocAligned(16, 16n), 'alignment'],
        ['expand(8n, 1)', () => a.expand(8n, 1), 'address'], ['expand(BigInt(p), 1)', () => a.expand(P, 1), 'address'],
        ['expand(p, 8n)', () => a.expand(p, 8n), 'size'],
        ['goodSize(8n)', () => a.goodSize(8n), 'size'],
      ];
      const before = a.stats();
      for (const [what, fn, arg] of calls) {
        for (let round = 0; round < 2; round++) { // twice: the first throw may deoptimise
          let err = null;
          try { fn(); } catch (e) { err = e; }
          assert.ok(err !== null, `${name}: ${what} did not throw`);
          assert.doesNotMatch(err.message, /mix BigInt/, `${name}: ${what}: V8's error reached the caller`);
          assert.ok(err instanceof TypeError, `${name}: ${what}: ${err.constructor.name}: ${err.message}`);
          assert.match(err.message, new RegExp(`^${arg} must be a number, got bigint \\d+n$`), `${name}: ${what}`);
        }
      }
      // nothing changed: p is live and intact, no block was allocated or freed
      assert.equal(a.usableSize(p) >= 100, true);
      for (let i = 0; i < 100; i++) assert.equal(a.u8[p + i], 0x5a);
      assert.deepEqual(a.stats(), before);
      if (opts.checkFree !== false) a.check(); // (checkFree: false: check() reads stale bits by design)
      a.free(p);
      // and numbers still take the fast paths' results
      const q = a.malloc(100);
      assert.notEqual(q, 0);
      a.free(q);
    });
  }
});

describe('src/', () => {
  const dir = new URL('../src/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts')).sort();

  /** Relative specifiers a module imports or re-exports (import type included), as file names. */
  function importsOf(text) {
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    const out = new Set();
    const re = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.\.?\/[^'"]+)['"]/g;
    for (let m; (m = re.exec(code)) !== null;) out.add(m[1].replace(/^\.\//, '').replace(/\.js$/, '.ts'));
    return [...out];
  }

  /** A cycle in graph (name → names) as a list of names, first = last; or null. */
  function findCycle(graph) {
    const state = new Map(); // 1: on the stack, 2: done
    const stack = [];
    const visit = (f) => {
      state.set(f, 1);
      stack.push(f);
      for (const g of graph.get(f) ?? []) {
        if (state.get(g) === 1) return [...stack.slice(stack.indexOf(g)), g];
        if (state.get(g) === undefined) {
          const c = visit(g);
          if (c !== null) return c;
        }
      }
      stack.pop();
      state.set(f, 2);
      return null;
    };
    for (const f of graph.keys()) {
      if (state.get(f) === undefined) {
        const c = visit(f);
        if (c !== null) return c;
      }
    }
    return null;
  }

  test('the cycle finder and the import parser work (on made-up input)', () => {
    assert.deepEqual(importsOf([
      "import { a } from './a.js';",
      "import type { B } from './b.js';",
      'import {',
      '  c,',
      "} from './c.js';",
      "export { d } from './d.js';",
      "export type { E } from './e.js';",
      "import './f.js';",
      "const g = await import('./g.js');",
      "// import { x } from './commented.js';",
      "/* import { y } from './blockcommented.js'; */",
      "import { readFileSync } from 'node:fs';",
    ].join('\n')).sort(), ['a.ts', 'b.ts', 'c.ts', 'd.ts', 'e.ts', 'f.ts', 'g.ts']);
    assert.equal(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', []]])), null);
    assert.deepEqual(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a', 'b', 'c', 'a']);
    assert.deepEqual(findCycle(new Map([['x', ['y']], ['y', ['y']]])), ['y', 'y']);
  });

  test('no import cycle (import type included), every import resolves', () => {
    assert.ok(files.length >= 10 && files.includes('index.ts'), files.join(', '));
    const graph = new Map();
    for (const f of files) {
      const deps = importsOf(readFileSync(new URL(f, dir), 'utf8'));
      for (const d of deps) assert.ok(files.includes(d), `${f} imports ./${d.replace(/\.ts$/, '.js')}, which is not in src/`);
      graph.set(f, deps);
    }
    const cycle = findCycle(graph);
    assert.equal(cycle, null, `import cycle: ${cycle?.join(' → ')}`);
  });

  test('no file over 600 lines', () => {
    const over = [];
    for (const f of files) {
      const lines = readFileSync(new URL(f, dir), 'utf8').split('\n').length - 1;
      if (lines > 600) over.push(`${f}: ${lines} lines`);
    }
    assert.deepEqual(over, []);
  });
});

// (AllocatorError is part of the surface: what the default handler throws for a misuse)
test('a misuse reported through the default handler is an AllocatorError with code and address', () => {
  const a = Allocator.create({ size: 4 * MiB });
  const p = a.malloc(32);
  a.free(p);
  assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EAGAIN' && e.address === p && e.message.includes(hex(p)));
  assert.throws(() => a.free(p + 8), (e) => e instanceof AllocatorError && e.code === 'EINVAL' && e.address === p + 8);
  a.check();
});
