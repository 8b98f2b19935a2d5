// Child of test/prime.test.js: make the common paths hot, then meet the rare ones (huge blocks,
// big reallocs, a slice-aligned block); run with --trace-deopt. argv[2]: the module to load.
const entry = process.argv[2];
const { Allocator } = await import(entry);
const a = Allocator.create({ size: 64 << 20 });
// hot common paths: small and medium blocks, some generic calls (new pages)
const ps = [];
for (let r = 0; r < 3000; r++) {
  for (let i = 0; i < 20; i++) ps.push(a.malloc(16 + ((r * 7 + i * 13) % 3000)));
  if (r % 50 === 0) ps.push(a.mallocAligned(64, 16));
  while (ps.length > 200) a.free(ps.shift());
}
console.log('--- rare paths ---');
const h = a.malloc(700000); a.free(h);
let p = a.realloc(a.malloc(100), 200000); p = a.realloc(p, 900000); a.free(p);
a.free(a.mallocAligned(100, 1 << 17));
for (const q of ps) a.free(q);
console.log('--- end ---');
