// The package as users get it: `npm pack` of this repository (dist/ as built by
// `npm test`, nothing is built here) installed offline into a fresh CommonJS
// project, then used through require() and import; its declarations; its license.
//
// PACKAGE_TEST_DIR=/some/copy runs the same checks against another checkout
// (used to see each check fail on a deliberately broken copy).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { walk } from '../scripts/build.js';

const REPO = process.env.PACKAGE_TEST_DIR
  ? path.resolve(process.env.PACKAGE_TEST_DIR)
  : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO_PKG = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));

/** Members of the Allocator class (and its helpers) that must not reach the published declarations. */
const INTERNAL_MEMBERS = ['arena', 'agentBase', 'theapOf', 'reportReleasedOverflow', 'tid'];

/** Where and how npm may fetch: everything else of the outer `npm test` (prefix, command, ...) is not for these npm runs. */
const KEEP_NPM_ENV = /^npm_config_(cache|userconfig|globalconfig)$/i;
function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((/^npm_/i.test(k) && !KEEP_NPM_ENV.test(k)) || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  // No network: --offline on every npm command, and a registry nobody listens on.
  env.npm_config_registry = 'http://127.0.0.1:9/';
  env.npm_config_offline = 'true';
  env.npm_config_update_notifier = 'false';
  return env;
}

function npm(args, cwd) {
  const viaNode = process.env.npm_execpath && /\.[cm]?js$/.test(process.env.npm_execpath);
  const [cmd, pre] = viaNode ? [process.execPath, [process.env.npm_execpath]] : ['npm', []];
  return execFileSync(cmd, [...pre, ...args], {
    cwd, env: childEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000,
    shell: !viaNode && process.platform === 'win32',
  });
}

function node(args, cwd) {
  return execFileSync(process.execPath, args, { cwd, env: childEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

let tmp;      // temporary directory
let tgz;      // the packed package
let project;  // a CommonJS project with the package installed
let installed; // project/node_modules/mimalloc-ts

before(() => {
  assert.ok(fs.existsSync(path.join(REPO, 'dist', 'index.js')), `${REPO}/dist is not built: run \`npm run build\` (npm test does)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimalloc-ts-package-'));
  // --ignore-scripts: pack dist/ as it is (prepare would build it)
  const [info] = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], REPO));
  tgz = path.join(tmp, info.filename);
  project = path.join(tmp, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 't', type: 'commonjs' }));
  npm(['install', '--offline', '--no-audit', '--no-fund', '--no-package-lock', tgz], project);
  installed = path.join(project, 'node_modules', REPO_PKG.name);
});

after(() => {
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
});

const USE = `
  const a = Allocator.create({ size: 1 << 24 });
  const ps = [];
  for (let i = 1; i <= 1000; i++) { const p = a.malloc(i); a.u8.fill(i & 255, p, p + i); ps.push(p); }
  for (const p of ps) a.free(p);
  const q = a.zalloc(100); if (q === 0 || a.usableSize(q) < 100) throw new Error('zalloc');
  a.free(q);
  a.check();
  let code = null;
  try { a.free(q); } catch (e) { if (!(e instanceof AllocatorError)) throw e; code = e.code; }
  console.log(JSON.stringify({ used: a.stats().used, goodSize: goodSize(100), code }));
`;

function checkUse(out) {
  const r = JSON.parse(out);
  assert.equal(r.used, 0);
  assert.ok(r.goodSize >= 100);
  assert.equal(typeof r.code, 'string', 'a double free is reported as an AllocatorError with a code');
}

test('require() from a CommonJS project loads dist/cjs as CommonJS', () => {
  // Without require(esm) (Node < 20.19 has none): what loads must really be CommonJS.
  const flags = process.allowedNodeEnvironmentFlags.has('--no-experimental-require-module') ? ['--no-experimental-require-module'] : [];
  const where = node([...flags, '-p', "require.resolve('mimalloc-ts')"], project).trim();
  assert.equal(path.relative(installed, where), path.join('dist', 'cjs', 'index.js'));
  checkUse(node([...flags, '-e', `const { Allocator, AllocatorError, goodSize } = require('mimalloc-ts');${USE}`], project));
});

test('import from ES module code loads dist/ (ESM)', () => {
  const where = node(['--input-type=module', '-e', "console.log(import.meta.resolve('mimalloc-ts'))"], project).trim();
  assert.equal(path.relative(installed, fileURLToPath(where)), path.join('dist', 'index.js'));
  checkUse(node(['--input-type=module', '-e', `import { Allocator, AllocatorError, goodSize } from 'mimalloc-ts';${USE}`], project));
  fs.writeFileSync(path.join(project, 'use.mjs'), `import { Allocator, AllocatorError, goodSize } from 'mimalloc-ts';${USE}`);
  checkUse(node(['use.mjs'], project));
});

test('declarations: both entry points, each .d.ts reachable from them, maps into the shipped src/', () => {
  const dist = path.join(installed, 'dist');
  assert.ok(fs.existsSync(path.join(dist, 'index.d.ts')), 'dist/index.d.ts');
  assert.ok(fs.existsSync(path.join(dist, 'cjs', 'index.d.ts')), 'dist/cjs/index.d.ts');
  const decls = walk(dist).filter((f) => f.endsWith('.d.ts'));
  for (const f of decls) {
    const mapFile = f + '.map';
    assert.ok(fs.existsSync(mapFile), `${path.relative(installed, mapFile)} (declarationMap)`);
    const map = JSON.parse(fs.readFileSync(mapFile, 'utf8'));
    for (const s of map.sources) {
      const src = path.resolve(path.dirname(mapFile), map.sourceRoot ?? '', s);
      assert.equal(path.relative(installed, src).split(path.sep)[0], 'src', `${path.relative(installed, mapFile)} maps to ${s}, not into src/`);
      assert.ok(fs.existsSync(src), `${path.relative(installed, mapFile)}: ${s} is not shipped`);
    }
  }
  for (const f of walk(dist).filter((f) => f.endsWith('.d.ts.map'))) {
    assert.ok(fs.existsSync(f.slice(0, -4)), `${path.relative(installed, f)} without its .d.ts`);
  }

  // TypeScript is the oracle for what the entry points reach: a consumer using
  // both (import from .mts, require from .cts) must type-check against the
  // pruned declarations and load every one that is shipped.
  let tsc;
  try {
    tsc = createRequire(path.join(REPO, 'package.json')).resolve('typescript/bin/tsc');
  } catch {
    return; // dev tools not installed: the checks above stand
  }
  fs.writeFileSync(path.join(project, 'use.mts'), [
    "import { Allocator, AllocatorError, goodSize, type AllocatorOptions, type StatsSnapshot } from 'mimalloc-ts';",
    'const o: AllocatorOptions = { size: 1 << 24 };',
    'const a: Allocator = Allocator.create(o);',
    'const s: StatsSnapshot = a.stats();',
    'export const r: [number, number, boolean] = [a.malloc(goodSize(8)), s.used, new Error() instanceof AllocatorError];',
  ].join('\n'));
  fs.writeFileSync(path.join(project, 'use.cts'), [
    "import m = require('mimalloc-ts');",
    'const a: m.Allocator = m.Allocator.create({ size: 1 << 24 });',
    'export const p: number = a.malloc(8);',
  ].join('\n'));
  fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: [], noEmit: true, skipLibCheck: false },
    files: ['use.mts', 'use.cts'],
  }));
  let out;
  try {
    out = execFileSync(process.execPath, [tsc, '-p', '.', '--listFiles'], { cwd: project, encoding: 'utf8' });
  } catch (e) {
    assert.fail(`a consumer does not type-check against the published declarations:\n${e.stdout}${e.stderr}`);
  }
  const loaded = new Set(out.split('\n').map((l) => l.trim()).filter((l) => l !== '').map((l) => path.resolve(l)));
  const real = (f) => fs.realpathSync(f);
  const loadedReal = new Set([...loaded].filter((f) => fs.existsSync(f)).map(real));
  for (const f of [path.join(dist, 'index.d.ts'), path.join(dist, 'cjs', 'index.d.ts')]) {
    assert.ok(loadedReal.has(real(f)), `TypeScript did not resolve ${path.relative(installed, f)} (import and require conditions)`);
  }
  const unreachable = decls.filter((f) => !loadedReal.has(real(f))).map((f) => path.relative(installed, f));
  assert.deepEqual(unreachable, [], 'shipped declarations that the entry points do not reach');
});

test('declarations hold no internal members', () => {
  const dist = path.join(installed, 'dist');
  const found = [];
  const member = new RegExp(String.raw`^\s*(?:(?:public|private|protected|readonly|static|abstract|override|declare|get|set)\s+)*(${INTERNAL_MEMBERS.join('|')})\s*[?!]?\s*[:;(<=]`);
  for (const f of walk(dist).filter((f) => f.endsWith('.d.ts'))) {
    fs.readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
      const m = member.exec(line);
      if (m !== null) found.push(`${path.relative(installed, f)}:${i + 1}: ${m[1]}`);
    });
  }
  assert.deepEqual(found, []);
});

/** The declaration file a relative specifier names (./x.js -> x.d.ts). */
function declOf(fromFile, spec) {
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const c of [base.replace(/\.([cm]?)js$/, '.d.$1ts'), base + '.d.ts', path.join(base, 'index.d.ts')]) {
    if (fs.existsSync(c)) return c;
  }
  return null;
}

/**
 * The names the other declaration files of an entry point's directory export
 * but the entry point does not re-export (by their names there): declarations
 * of things users cannot import, that is, internals.
 */
function unexportedDeclarations(entry) {
  const allowed = new Map(); // file -> Set of names, or '*'
  const allow = (file, name) => {
    if (file === null) return;
    if (!allowed.has(file)) allowed.set(file, new Set());
    if (allowed.get(file) !== '*') name === '*' ? allowed.set(file, '*') : allowed.get(file).add(name);
  };
  const text = fs.readFileSync(entry, 'utf8');
  for (const m of text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}\s*from\s*(['"])(\.[^'"]+)\2/g)) {
    for (const part of m[1].split(',').map((s) => s.trim()).filter((s) => s !== '')) {
      allow(declOf(entry, m[3]), /^(?:type\s+)?([\w$]+)/.exec(part)[1]);
    }
  }
  for (const m of text.matchAll(/export\s+(?:type\s+)?\*\s*(?:as\s+[\w$]+\s*)?from\s*(['"])(\.[^'"]+)\1/g)) allow(declOf(entry, m[2]), '*');
  const found = [];
  for (const f of fs.readdirSync(path.dirname(entry)).filter((n) => n.endsWith('.d.ts')).map((n) => path.join(path.dirname(entry), n))) {
    if (f === entry) continue;
    const ok = allowed.get(f) ?? new Set();
    if (ok === '*') continue;
    const decl = /^export\s+(?:declare\s+)?(?:abstract\s+)?(?:const\s+)?(?:function|const|let|var|class|interface|type|enum|namespace)\s+([\w$]+)/gm;
    for (const m of fs.readFileSync(f, 'utf8').matchAll(decl)) {
      if (!ok.has(m[1])) found.push(`${path.basename(f)}: ${m[1]}`);
    }
  }
  return found;
}

test('declarations export nothing the entry points do not export', () => {
  const dist = path.join(installed, 'dist');
  assert.deepEqual(unexportedDeclarations(path.join(dist, 'index.d.ts')), []);
  assert.deepEqual(unexportedDeclarations(path.join(dist, 'cjs', 'index.d.ts')), []);
});

test('license: MIT, LICENSE shipped', () => {
  assert.equal(REPO_PKG.license, 'MIT');
  assert.ok(REPO_PKG.files.includes('LICENSE'), 'package.json files names LICENSE');
  const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.equal(pkg.license, 'MIT');
  const license = path.join(installed, 'LICENSE');
  assert.ok(fs.existsSync(license), 'LICENSE is in the package');
  const text = fs.readFileSync(license, 'utf8');
  assert.match(text, /^MIT License/);
  assert.match(text, /Permission is hereby granted, free of charge/);
});
