// instruction-count probe: micro (a) loop, N rounds after warm-up
const { Allocator } = await import(process.argv[2] + '/index.js');
const a = Allocator.create({ size: 64 << 20 });
const sizes = new Uint32Array(1000); let s = 7; for (let i = 0; i < 1000; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; sizes[i] = 8 + (s >>> 16) % 200; }
const ps = new Uint32Array(1000);
function round() { for (let i = 0; i < 1000; i++) ps[i] = a.malloc(sizes[i]); for (let i = 0; i < 1000; i++) a.free(ps[i]); }
for (let r = 0; r < 3000; r++) round(); // warm-up (optimized)
const R = +process.argv[3];
for (let r = 0; r < R; r++) round();
