// node bench/results/benchmarks-md/backs.mjs KIND [DIST]: churn-1k over one backing (BENCHMARKS.md "Growable memory")
const { Allocator } = await import(process.argv[3] !== undefined ? new URL(process.argv[3] + '/index.js', 'file://' + process.cwd() + '/').href : new URL('../../../dist/index.js', import.meta.url).href);
const kinds = {
  fixed: () => Allocator.create({ size: 64 << 20 }),
  'fixed-ab': () => Allocator.create({ size: 64 << 20, shared: false }),
  gsab: () => Allocator.create({ size: 1 << 20, maxSize: 64 << 20 }),
  rab: () => Allocator.create({ size: 1 << 20, maxSize: 64 << 20, shared: false }),
  'memory-shared': () => Allocator.create({ memory: new WebAssembly.Memory({ initial: 16, maximum: 1024, shared: true }) }),
  memory: () => Allocator.create({ memory: new WebAssembly.Memory({ initial: 16, maximum: 1024 }) }),
};
const res = {};
const only = process.argv[2]; for (let rep = 0; rep < 5; rep++) for (const [k, mk] of Object.entries(kinds).filter(([k]) => !only || k === only)) {
  const a = mk();
  const ps = new Int32Array(1000);
  const round = () => { for (let i = 0; i < 1000; i++) ps[i] = a.malloc(8 + ((i * 37) % 200)); for (let i = 0; i < 1000; i++) a.free(ps[i]); };
  for (let r = 0; r < 200; r++) round();
  const t = process.hrtime.bigint();
  for (let r = 0; r < 2000; r++) round();
  const ns = Number(process.hrtime.bigint() - t) / (2000 * 2000);
  res[k] = Math.min(res[k] ?? 1e9, ns);
}
for (const [k, v] of Object.entries(res)) console.log(k.padEnd(14), v.toFixed(2), 'ns/op');
