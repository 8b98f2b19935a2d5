import { readFileSync } from 'node:fs';
const files = process.argv.slice(2);
const runs = files.map((f) => JSON.parse(readFileSync(f)).cold.results);
const peers = process.env.PEERS ? process.env.PEERS.split(',') : ['native-mimalloc', 'native-glibc', 'mimalloc-ts', 'dlmalloc-wasm', 'mimalloc-wasm', 'tlsf-wasm', 'js-floor'];
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; };
const rows = []; const g = {}; const gr = { dl: [], mw: [], fl: [] };
for (const t of Object.keys(runs[0])) {
  const m = {};
  for (const p of peers) { const all = runs.flatMap((r) => r[t]?.peers?.[p]?.samples ?? []); m[p] = { med: med(all), min: Math.min(...all), max: Math.max(...all), n: all.length }; (g[p] ??= []).push(Math.log(m[p].med)); }
  const ts = m['mimalloc-ts'].med;
  const rdl = ts / m['dlmalloc-wasm'].med, rmw = ts / m['mimalloc-wasm'].med, rfl = ts / m['js-floor'].med;
  gr.dl.push(Math.log(rdl)); gr.mw.push(Math.log(rmw)); gr.fl.push(Math.log(rfl));
  rows.push(`| ${t} | ${peers.map((p) => `${m[p].med.toFixed(1)} (${m[p].min.toFixed(0)}–${m[p].max.toFixed(0)})`).join(' | ')} | ${rdl.toFixed(2)} | ${rmw.toFixed(2)} | ${rfl.toFixed(2)} |`);
}
const ge = (a) => Math.exp(a.reduce((x, y) => x + y, 0) / a.length);
console.log(`| trace | ${peers.join(' | ')} | ÷ dlmalloc-wasm | ÷ mimalloc-wasm | ÷ JS floor |`);
console.log(`|---|${peers.map(() => '--:').join('|')}|--:|--:|--:|`);
for (const r of rows) console.log(r);
console.log(`| geomean | ${peers.map((p) => ge(g[p]).toFixed(1)).join(' | ')} | ${ge(gr.dl).toFixed(2)} | ${ge(gr.mw).toFixed(2)} | ${ge(gr.fl).toFixed(2)} |`);
