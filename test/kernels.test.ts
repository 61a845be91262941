import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlBlockSize, ggmlRowBytes, ggmlTypeName } from "../src/gguf/types.js";
import { ActivationFormat, DownLayout, ExpertRef, Kernels, KvLayerRef, KvType, MatrixRef, activationFormatFor } from "../src/kernels/api.js";
import { Arena, Ptr } from "../src/kernels/arena.js";
import { ReferenceKernels } from "../src/kernels/reference.js";
import { WasmKernels, createWasmKernels } from "../src/kernels/wasm/kernels.js";
import { dequantize, fp16ToFp32, fp32ToFp16, quantize } from "../src/quant/index.js";
import { BLOCK_TYPES, randomBlocks } from "./helpers/blocks.js";

// The WASM kernels against the plain-TS reference on random data. Integer paths (Q4_0/Q8_0 products,
// activation quantization, the element-wise kernels, expert down products) must match bit for bit;
// float paths within the tolerances stated at each check. One and two threads must agree bit for bit,
// and so must sparse and dense experts. SMALLTHINKER_KERNELS_SIMD selects the build ("relaxed" by
// default, "simd128"); kernels-tiers.test.ts reruns this file with Liftoff only and TurboFan only.

const SIMD = process.env.SMALLTHINKER_KERNELS_SIMD === "simd128" ? "simd128" : "relaxed";
const QUANT = [GgmlType.Q4_0, GgmlType.Q8_0];
const FLOATS = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

/** Deterministic normal-ish values (sum of uniforms) from a seed. */
function randoms(count: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (next() + next() + next() - 1.5) * scale;
  return out;
}

/** GGUF bytes of `rows` rows of random values. */
function rawMatrix(type: GgmlType, rows: number, cols: number, seed: number): Uint8Array {
  if (BLOCK_TYPES.includes(type)) return randomBlocks(type, rows, cols, seed);
  const bytes = new Uint8Array(ggmlRowBytes(type, cols) * rows);
  quantize(type, randoms(rows * cols, seed), bytes, 0);
  return bytes;
}

/** One kernel implementation with an arena to work in (one per implementation, for all tests). */
class Side {
  readonly arena: Arena;
  constructor(readonly kernels: Kernels) {
    this.arena = kernels.createArena(16 << 20);
  }
  put(data: Uint8Array | Float32Array | Int32Array): Ptr {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const ptr = this.arena.alloc(bytes.length);
    this.arena.bytes.set(bytes, ptr);
    return ptr;
  }
  f32(ptr: Ptr, count: number): Float32Array {
    return this.arena.f32(ptr, count).slice();
  }
  matrix(type: GgmlType, rows: number, cols: number, raw: Uint8Array): MatrixRef {
    const src = this.put(raw);
    const ptr = this.arena.alloc(this.kernels.packedBytes("matrix", type, rows, cols));
    this.kernels.pack(this.arena, "matrix", type, rows, cols, src, ptr);
    return { arena: this.arena, ptr, type, rows, cols };
  }
  prepared(format: ActivationFormat, x: Float32Array, rows: number, cols: number): Ptr {
    const src = this.put(x);
    const dst = this.arena.alloc(rows * this.kernels.activationBytes(format, cols));
    this.kernels.prepareActivations(this.arena, format, src, rows, cols, dst);
    return dst;
  }
}

function assertBits(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, what);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: element ${i} is ${actual[i]} (0x${a[i]!.toString(16)}), expected ${expected[i]} (0x${e[i]!.toString(16)})`);
  }
}

function assertClose(actual: Float32Array, expected: Float32Array, bound: (i: number) => number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= bound(i))) assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (|Δ| ${d} > ${bound(i)})`);
  }
}

let wasm1: WasmKernels;
let wasm2: WasmKernels;
const reference = new ReferenceKernels();
const sides = new Map<Kernels, Side>();

function sideFor(kernels: Kernels): Side {
  let found = sides.get(kernels);
  if (!found) sides.set(kernels, (found = new Side(kernels)));
  return found;
}

before(async () => {
  wasm1 = await createWasmKernels({ threads: 1, simd: SIMD });
  // Cut every job as finely as it allows, so the comparison with one thread covers every split.
  wasm2 = await createWasmKernels({ threads: 2, simd: SIMD, unitWork: 1 });
});
after(async () => {
  await wasm1.dispose();
  await wasm2.dispose();
});

test(`the ${SIMD} build is the one loaded`, () => {
  assert.equal(wasm2.simd, SIMD);
  assert.equal(wasm2.threads, 2);
});

test("a failing job reports its error and leaves the pool usable", () => {
  const on = sideFor(wasm2);
  const raw = rawMatrix(GgmlType.Q4_0, 256, 64, 1);
  const w = on.matrix(GgmlType.Q4_0, 256, 64, raw);
  const x = on.prepared("q8_0", randoms(64, 2), 1, 64);
  // An output beyond the memory traps in whichever thread runs a unit writing there.
  for (let attempt = 0; attempt < 3; attempt++) assert.throws(() => wasm2.matmul(w, x, 1, on.arena.capacity + 4096), /out of bounds/);
  const y = on.arena.alloc(4 * 256);
  wasm2.matmul(w, x, 1, y);
  const expected = sideFor(reference);
  const ref = expected.arena.alloc(4 * 256);
  reference.matmul(expected.matrix(GgmlType.Q4_0, 256, 64, raw), expected.prepared("q8_0", randoms(64, 2), 1, 64), 1, ref);
  assertBits(on.f32(y, 256), expected.f32(ref, 256), "after the failure");
});

describe("activation preparation", () => {
  test("q8 rows hold llama.cpp's AVX2 quantization exactly", () => {
    const cols = 256;
    const rows = 3;
    const x = randoms(rows * cols, 11, 3);
    // Edge cases: an all-zero block, exact halves (round half to even), a lone extreme value.
    x.fill(0, 32, 64);
    for (let i = 64; i < 96; i++) x[i] = (i - 80) * 0.5;
    x[100] = 1e30;
    x[130] = -7e-30;
    const wasm = sideFor(wasm2);
    const ref = sideFor(reference);
    const ours = wasm.prepared("q8_0", x, rows, cols);
    const theirs = ref.prepared("q8_0", x, rows, cols);
    const rowBytes = wasm2.activationBytes("q8_0", cols);
    const refRowBytes = reference.activationBytes("q8_0", cols);
    const blocks = cols / 32;
    for (let r = 0; r < rows; r++) {
      const row = ours + r * rowBytes;
      const i8 = new Int8Array(wasm.arena.bytes.buffer, row, cols);
      const i16 = new Int16Array(wasm.arena.bytes.buffer, row + cols, cols);
      const scales = wasm.arena.f32(row + 3 * cols, blocks);
      const sums = wasm.arena.i32(row + 3 * cols + 4 * blocks, blocks);
      for (let b = 0; b < blocks; b++) {
        const block = theirs + r * refRowBytes + b * 34;
        const view = new DataView(ref.arena.bytes.buffer, block, 34);
        assert.equal(scales[b], fp16ToFp32(view.getUint16(0, true)), `row ${r} block ${b} scale`);
        let sum = 0;
        for (let j = 0; j < 32; j++) {
          const q = view.getInt8(2 + j);
          assert.equal(i8[b * 32 + j], q, `row ${r} value ${b * 32 + j}`);
          assert.equal(i16[b * 32 + j], q);
          sum += q;
        }
        assert.equal(sums[b], 8 * sum);
      }
    }
  });

  test("q8_1 and q8_k rows hold the quants, scales and sums ggml's blocks hold", () => {
    const cols = 512;
    const rows = 3;
    const x = randoms(rows * cols, 13, 3);
    x.fill(0, 256, 512 - 32); // nearly empty superblock, and an all-zero q8_1 block in it
    x[300] = -50; // a negative maximum (q8_k scales by -127/max)
    x.set([0.5, -0.5, 1.5, 2.5], 40);
    const wasm = sideFor(wasm2);
    const ref = sideFor(reference);
    for (const format of ["q8_1", "q8_k"] as const) {
      const ours = wasm.prepared(format, x, rows, cols);
      const theirs = ref.prepared(format, x, rows, cols);
      const rowBytes = wasm2.activationBytes(format, cols);
      const refRowBytes = reference.activationBytes(format, cols);
      const block = format === "q8_1" ? 32 : 256;
      const blockBytes = format === "q8_1" ? 36 : 292;
      const blocks = cols / block;
      for (let r = 0; r < rows; r++) {
        const row = ours + r * rowBytes;
        const i8 = new Int8Array(wasm.arena.bytes.buffer, row, cols);
        const i16 = new Int16Array(wasm.arena.bytes.buffer, row + cols, cols);
        const scales = wasm.arena.f32(row + 3 * cols, blocks);
        for (let b = 0; b < blocks; b++) {
          const view = new DataView(ref.arena.bytes.buffer, theirs + r * refRowBytes + b * blockBytes, blockBytes);
          const quantsAt = 4;
          const d = format === "q8_1" ? fp16ToFp32(view.getUint16(0, true)) : view.getFloat32(0, true);
          assert.ok(Object.is(scales[b], d), `${format} row ${r} block ${b} scale ${scales[b]} vs ${d}`);
          for (let j = 0; j < block; j++) {
            assert.equal(i8[b * block + j], view.getInt8(quantsAt + j), `${format} row ${r} value ${b * block + j}`);
            assert.equal(i16[b * block + j], view.getInt8(quantsAt + j));
          }
          if (format === "q8_1") {
            const sums = wasm.arena.f32(row + ((3 * cols + blocks * 8 + 15) & ~15), blocks);
            assert.ok(Object.is(sums[b], fp16ToFp32(view.getUint16(2, true))), `q8_1 row ${r} block ${b} sum`);
          } else {
            const sums = wasm.arena.i32(row + 3 * cols + 4 * blocks, cols / 16);
            for (let g = 0; g < 16; g++) assert.equal(sums[b * 16 + g], view.getInt16(260 + 2 * g, true), `q8_k row ${r} block ${b} bsum ${g}`);
          }
        }
      }
    }
  });

  test("f16 and bf16 rows are the values rounded as the reference rounds them", () => {
    const cols = 37;
    const x = randoms(cols * 2, 5, 1000);
    // Ties, subnormal halves, overflow to infinity, NaN, signed zero.
    x.set([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 65520, 65519, -0, NaN, 1e-40, -6.1e-5, 2 ** -14 - 2 ** -25], 0);
    for (const format of ["f16", "bf16"] as const) {
      const wasm = sideFor(wasm2);
      const ref = sideFor(reference);
      const ours = wasm.prepared(format, x, 2, cols);
      const theirs = ref.prepared(format, x, 2, cols);
      const rowBytes = wasm2.activationBytes(format, cols);
      for (let r = 0; r < 2; r++) {
        const got = wasm.f32(ours + r * rowBytes, cols);
        const bits = new Uint16Array(ref.arena.bytes.buffer.slice(theirs + r * cols * 2, theirs + (r + 1) * cols * 2));
        const want = Float32Array.from(bits, (h) => (format === "f16" ? fp16ToFp32(h) : new Float32Array(new Uint32Array([h << 16]).buffer)[0]!));
        for (let i = 0; i < cols; i++) {
          if (Number.isNaN(want[i])) assert.ok(Number.isNaN(got[i]), `${format} ${i}`);
          else assert.equal(Object.is(got[i], want[i]), true, `${format} value ${x[r * cols + i]}: ${got[i]} vs ${want[i]}`);
        }
      }
    }
  });
});

describe("matrix products", () => {
  const shapes: [rows: number, cols: number][] = [[1, 32], [3, 64], [37, 96], [64, 256], [130, 160]];
  for (const type of [...QUANT, ...FLOATS]) {
    test(`${ggmlTypeName(type)} × prepared activations, n = 1, 2, 5, 9`, () => {
      const floatShapes: [number, number][] = type === GgmlType.F32 ? [...shapes, [5, 13], [7, 3]] : shapes;
      for (const [rows, cols] of floatShapes) {
        const raw = rawMatrix(type, rows, cols, rows * 1000 + cols);
        for (const n of [1, 2, 5, 9]) {
          const x = randoms(n * cols, n + cols);
          const run = (side: Side) => {
            const w = side.matrix(type, rows, cols, raw);
            const xp = side.prepared(activationFormatFor(type), x, n, cols);
            const y = side.arena.alloc(4 * n * rows);
            side.kernels.matmul(w, xp, n, y);
            return side.f32(y, n * rows);
          };
          const one = run(sideFor(wasm1));
          const two = run(sideFor(wasm2));
          const ref = run(sideFor(reference));
          const what = `${ggmlTypeName(type)} ${rows}×${cols}, n = ${n}`;
          assertBits(two, one, `${what}, 2 threads vs 1`);
          if (QUANT.includes(type)) {
            assertBits(one, ref, what);
          } else {
            // f32 accumulation in a different order than the reference's f64: within 1e-5 · Σ|w·x|.
            const w = new Float32Array(rows * cols);
            for (let r = 0; r < rows; r++) dequantize(type, raw, r * ggmlRowBytes(type, cols), w.subarray(r * cols, (r + 1) * cols));
            const magnitude = (i: number) => {
              const t = Math.floor(i / rows);
              const r = i % rows;
              let sum = 0;
              for (let c = 0; c < cols; c++) sum += Math.abs(w[r * cols + c]! * x[t * cols + c]!);
              return 1e-5 * sum;
            };
            assertClose(one, ref, magnitude, what);
          }
        }
      }
    });
  }
});

describe("block-format products (every format decoded to the canonical block) equal the reference bit for bit", () => {
  for (const type of BLOCK_TYPES) {
    test(`${ggmlTypeName(type)} × prepared activations, n = 1, 3, 33`, () => {
      const values = ggmlBlockSize(type);
      for (const [rows, cols] of [[1, values], [7, 2 * Math.max(values, 128)], [13, 512]] as const) {
        const raw = rawMatrix(type, rows, cols, rows * 100 + cols + type);
        for (const n of [1, 3, 33]) {
          const x = randoms(n * cols, n + cols + type, 2);
          const run = (side: Side) => {
            const w = side.matrix(type, rows, cols, raw);
            const xp = side.prepared(activationFormatFor(type), x, n, cols);
            const y = side.arena.alloc(4 * n * rows);
            side.kernels.matmul(w, xp, n, y);
            return side.f32(y, n * rows);
          };
          const what = `${ggmlTypeName(type)} ${rows}×${cols}, n = ${n}`;
          const one = run(sideFor(wasm1));
          assertBits(run(sideFor(wasm2)), one, `${what}, 2 threads vs 1`);
          assertBits(one, run(sideFor(reference)), what);
        }
      }
    });
  }

  test("dequantizeRows of every block format", () => {
    for (const type of BLOCK_TYPES) {
      const [n, cols] = [5, 512];
      const raw = rawMatrix(type, n, cols, 23 + type);
      const run = (side: Side) => {
        const dst = side.arena.alloc(4 * n * cols);
        side.kernels.dequantizeRows(side.arena, type, side.put(raw), n, cols, dst);
        return side.f32(dst, n * cols);
      };
      const one = run(sideFor(wasm1));
      assertBits(run(sideFor(wasm2)), one, `dequantize ${ggmlTypeName(type)}, 2 threads vs 1`);
      assertBits(one, run(sideFor(reference)), `dequantize ${ggmlTypeName(type)}`);
    }
  });
});

test("several products in one call (matmuls) equal separate matmul calls", () => {
  const cols = 96;
  const specs: [GgmlType, number][] = [[GgmlType.F32, 9], [GgmlType.Q4_0, 130], [GgmlType.Q4_0, 37], [GgmlType.Q8_0, 64], [GgmlType.F16, 5], [GgmlType.Q5_1, 21], [GgmlType.IQ4_NL, 64]];
  for (const n of [1, 3, 6]) {
    const x = randoms(n * cols, 40 + n);
    const run = (side: Side, together: boolean) => {
      const products = specs.map(([type, rows], i) => ({
        w: side.matrix(type, rows, cols, rawMatrix(type, rows, cols, 50 + i)),
        x: side.prepared(activationFormatFor(type), x, n, cols),
        y: side.arena.alloc(4 * n * rows),
      }));
      if (together) side.kernels.matmuls(products, n);
      else for (const p of products) side.kernels.matmul(p.w, p.x, n, p.y);
      return products.map((p) => side.f32(p.y, n * p.w.rows));
    };
    const apart = run(sideFor(wasm1), false);
    for (const kernels of [wasm1, wasm2, reference] as Kernels[]) {
      const together = run(sideFor(kernels), true);
      const reference_ = kernels === reference ? run(sideFor(reference), false) : apart;
      together.forEach((y, i) => assertBits(y, reference_[i]!, `${kernels.name} ×${kernels.threads}, n = ${n}, product ${i}`));
    }
  }
});

describe("element-wise kernels match the reference bit for bit", () => {
  const both = (fn: (side: Side) => Float32Array, what: string) => {
    const one = fn(sideFor(wasm1));
    const two = fn(sideFor(wasm2));
    const ref = fn(sideFor(reference));
    assertBits(two, one, `${what}, 2 threads vs 1`);
    assertBits(one, ref, what);
  };

  test("rmsNorm", () => {
    for (const [rows, cols] of [[1, 1536], [7, 96], [3, 13]] as const) {
      const x = randoms(rows * cols, cols, 4);
      const w = randoms(cols, 3);
      both((side) => {
        const dst = side.arena.alloc(4 * rows * cols);
        side.kernels.rmsNorm(side.arena, side.put(x), side.put(w), rows, cols, 1e-6, dst);
        return side.f32(dst, rows * cols);
      }, `rmsNorm ${rows}×${cols}`);
    }
  });

  test("sumBlocks (the bandwidth probe) sums every word, wrapping, however the blocks are cut", () => {
    for (const blocks of [1, 3, 1000]) {
      const words = new Int32Array(blocks * 16);
      let state = 12345 + blocks;
      for (let i = 0; i < words.length; i++) words[i] = state = (Math.imul(state, 1664525) + 1013904223) | 0;
      let expected = 0;
      for (const w of words) expected = (expected + w) | 0;
      for (const side of [sideFor(wasm1), sideFor(wasm2), sideFor(reference)]) {
        assert.equal(side.kernels.sumBlocks(side.arena, side.put(words), blocks), expected, `${side.kernels.name} ${side.kernels.threads}t, ${blocks} blocks`);
      }
    }
  });

  test("rope", () => {
    for (const [n, heads, headDim] of [[1, 12, 128], [5, 3, 16], [6, 2, 10]] as const) {
      const x = randoms(n * heads * headDim, headDim, 2);
      const cos = randoms((n * headDim) / 2, 1);
      const sin = randoms((n * headDim) / 2, 2);
      both((side) => {
        const p = side.put(x);
        side.kernels.rope(side.arena, p, n, heads, headDim, side.put(cos), side.put(sin));
        return side.f32(p, x.length);
      }, `rope n=${n} ${heads}×${headDim}`);
    }
  });

  test("add and moeCombine", () => {
    for (const count of [1, 7, 1536, 70001]) {
      const a = randoms(count, 1);
      const b = randoms(count, 2);
      both((side) => {
        const dst = side.arena.alloc(4 * count);
        side.kernels.add(side.arena, side.put(a), side.put(b), count, dst);
        return side.f32(dst, count);
      }, `add ${count}`);
    }
    for (const [n, k, hidden] of [[1, 4, 1536], [5, 3, 96], [4, 1, 13]] as const) {
      const y = randoms(n * k * hidden, 3);
      const w = randoms(n * k, 4);
      const res = randoms(n * hidden, 5);
      both((side) => {
        const out = side.arena.alloc(4 * n * hidden);
        side.kernels.moeCombine(side.arena, side.put(y), side.put(w), n, k, hidden, side.put(res), out);
        return side.f32(out, n * hidden);
      }, `moeCombine n=${n} k=${k} hidden=${hidden}`);
    }
  });

  test("dequantizeRows of every type", () => {
    for (const type of [...QUANT, ...FLOATS]) {
      const [n, cols] = [9, 96];
      const raw = rawMatrix(type, n, cols, 17);
      both((side) => {
        const dst = side.arena.alloc(4 * n * cols);
        side.kernels.dequantizeRows(side.arena, type, side.put(raw), n, cols, dst);
        return side.f32(dst, n * cols);
      }, `dequantize ${ggmlTypeName(type)}`);
    }
  });

  test("storeKv in f32 and f16 caches (f16 rounding as F16C, incl. ties, subnormals, overflow)", () => {
    const [capacity, kvHeads, headDim, n] = [10, 2, 16, 13];
    const width = kvHeads * headDim;
    const k = randoms(n * width, 1, 30);
    const v = randoms(n * width, 2, 1e-4);
    k.set([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 65520, 65519, -0, 1e-40, -6.1e-5, 2 ** -14 - 2 ** -25, 1e6, -65504]);
    const positions = Int32Array.from({ length: n }, (_, i) => 3 * i + 1);
    for (const type of ["f32", "f16"] as const) {
      both((side) => {
        const bytes = (type === "f32" ? 4 : 2) * capacity * width;
        const cache: KvLayerRef = { arena: side.arena, k: side.arena.alloc(bytes), v: side.arena.alloc(bytes), type, capacity, kvHeads, headDim };
        side.kernels.storeKv(cache, side.put(k), side.put(v), n, side.put(positions));
        const all = new Uint8Array(2 * bytes);
        all.set(side.arena.u8(cache.k, bytes), 0);
        all.set(side.arena.u8(cache.v, bytes), bytes);
        return new Float32Array(all.buffer);
      }, `storeKv ${type}`);
    }
  });

  test("f32 → f16 rounding over many values", () => {
    const count = 1 << 16;
    const bits = new Uint32Array(count);
    let s = 12345;
    for (let i = 0; i < count; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      // Exponents concentrated around the half range, mantissas random (ties included by the low bits).
      const exponent = 100 + (s % 50);
      bits[i] = ((s & 0x80000000) | (exponent << 23) | ((s >>> 3) & 0x7fffff)) >>> 0;
      if (i % 7 === 0) bits[i] = (bits[i]! & ~0x0fff) | 0x1000;
    }
    const values = new Float32Array(bits.buffer);
    const on = sideFor(wasm1);
    const cache: KvLayerRef = { arena: on.arena, k: on.arena.alloc(2 * count), v: on.arena.alloc(2 * count), type: "f16", capacity: 1, kvHeads: 1, headDim: count };
    on.kernels.storeKv(cache, on.put(values), on.put(values), 1, on.put(new Int32Array([0])));
    const got = new Uint16Array(on.arena.bytes.buffer.slice(cache.k, cache.k + 2 * count));
    for (let i = 0; i < count; i++) assert.equal(got[i], fp32ToFp16(values[i]!), `value ${values[i]}`);
  });
});

describe("the fused sparse expert", () => {
  /** One expert in a side's arena (raw GGUF bytes packed by that side's kernels). */
  function expertOn(side: Side, types: { gate: GgmlType; down: GgmlType }, layout: DownLayout, hidden: number, ffn: number, raws: Uint8Array[]): ExpertRef {
    const gate = side.matrix(types.gate, ffn, hidden, raws[0]!);
    const up = side.matrix(types.gate, ffn, hidden, raws[1]!);
    const [rows, cols] = layout === "upstream" ? [hidden, ffn] : [ffn, hidden];
    const src = side.put(raws[2]!);
    const ptr = side.arena.alloc(side.kernels.packedBytes("expert-down", types.down, rows, cols, layout));
    side.kernels.pack(side.arena, "expert-down", types.down, rows, cols, src, ptr, layout);
    return { gate, up, down: { arena: side.arena, ptr, type: types.down, hidden, ffn, layout } };
  }

  /** Runs tasks (expert, tokens) in one call; returns each task's outputs [token][hidden]. */
  function runTasks(side: Side, experts: ExpertRef[], tasks: { expert: number; tokens: number[] }[], x: Float32Array, available: number, sparse: boolean) {
    const hidden = experts[0]!.gate.cols;
    const ffn = experts[0]!.gate.rows;
    const xp = side.prepared(activationFormatFor(experts[0]!.gate.type), x, available, hidden);
    const total = tasks.reduce((sum, t) => sum + t.tokens.length, 0);
    // Output rows interleaved across tasks, as a layer's [token][slot] rows are.
    const outRows = tasks.map((t, i) => t.tokens.map((_, j) => j * tasks.length + i));
    const rowsNeeded = Math.max(...outRows.flat()) + 1;
    const out = side.arena.alloc(4 * rowsNeeded * hidden);
    const scratch = side.arena.alloc(side.kernels.expertScratchBytes(hidden, ffn, total, experts[0]!.gate.type, experts[0]!.down.type));
    const active = side.kernels.expertsForward(tasks.map((t, i) => ({
      expert: experts[t.expert]!, rows: side.put(Int32Array.from(t.tokens)), outRows: side.put(Int32Array.from(outRows[i]!)), count: t.tokens.length,
    })), xp, out, scratch, sparse);
    const all = side.f32(out, rowsNeeded * hidden);
    const ys = outRows.map((rows) => {
      const y = new Float32Array(rows.length * hidden);
      rows.forEach((row, j) => y.set(all.subarray(row * hidden, (row + 1) * hidden), j * hidden));
      return y;
    });
    return { ys, active };
  }

  function run(side: Side, expert: ExpertRef, x: Float32Array, tokens: number[], available: number, sparse: boolean) {
    const { ys, active } = runTasks(side, [expert], [{ expert: 0, tokens }], x, available, sparse);
    return { y: ys[0]!, active };
  }

  const cases: { gate: GgmlType; down: GgmlType }[] = [
    { gate: GgmlType.Q4_0, down: GgmlType.Q4_0 },
    { gate: GgmlType.Q8_0, down: GgmlType.Q8_0 },
    { gate: GgmlType.Q4_0, down: GgmlType.Q8_0 },
    { gate: GgmlType.F32, down: GgmlType.F32 },
    { gate: GgmlType.F16, down: GgmlType.F16 },
    { gate: GgmlType.BF16, down: GgmlType.BF16 },
  ];
  for (const types of cases) {
    for (const layout of ["upstream", "transposed"] as DownLayout[]) {
      test(`gate/up ${ggmlTypeName(types.gate)}, down ${ggmlTypeName(types.down)} ${layout}`, () => {
        const shapes: [number, number, number[]][] = [[64, 64, [0]], [96, 128, [2, 0, 3]], [128, 96, [5, 1, 4, 0, 2, 3]],
          [64, 416, [1]], [96, 288, [3, 0, 5, 2, 4, 1, 0, 3, 2, 5, 1]]];
        for (const [hidden, ffn, tokens] of shapes) {
          const available = 6;
          const [dRows, dCols] = layout === "upstream" ? [hidden, ffn] : [ffn, hidden];
          const raws = [rawMatrix(types.gate, ffn, hidden, 1 + hidden), rawMatrix(types.gate, ffn, hidden, 2 + ffn), rawMatrix(types.down, dRows, dCols, 3)];
          const x = randoms(available * hidden, 7 + tokens.length, 2);
          const results = [wasm1, wasm2].flatMap((kernels) => [true, false].map((sparse) => {
            const on = sideFor(kernels);
            return run(on, expertOn(on, types, layout, hidden, ffn, raws), x, tokens, available, sparse);
          }));
          const ref = (() => {
            const on = sideFor(reference);
            return run(on, expertOn(on, types, layout, hidden, ffn, raws), x, tokens, available, true);
          })();
          const what = `${hidden}×${ffn}, ${tokens.length} tokens`;
          for (const other of results.slice(1)) {
            assertBits(other.y, results[0]!.y, `${what}: threads and sparsity must not change results`);
            assert.equal(other.active, results[0]!.active);
          }
          const ours = results[0]!;
          if (QUANT.includes(types.gate)) {
            // Exact gate, up and h; the down product keeps the reference's integer blocks (upstream)
            // or its f32 axpys in neuron order (transposed), chunk by chunk: bit for bit.
            assert.equal(ours.active, ref.active, `${what}: active neurons`);
            assertBits(ours.y, ref.y, what);
          } else {
            // Float gate/up accumulate in another order than the reference's f64: within 1e-4 of
            // the output's largest magnitude (a neuron whose g is ≈ 0 may fall on the other side).
            const scale = ref.y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
            assertClose(ours.y, ref.y, () => 1e-4 * scale, what);
            assert.ok(Math.abs(ours.active - ref.active) <= 1, `${what}: active ${ours.active} vs ${ref.active}`);
          }
          assert.ok(ours.active > 0 && ours.active < tokens.length * ffn, `${what}: a sparse pattern (${ours.active})`);
        }
      });
    }
  }

  for (const type of BLOCK_TYPES) {
    for (const layout of ["upstream", "transposed"] as DownLayout[]) {
      test(`block format ${ggmlTypeName(type)} experts, down ${layout}: bit for bit the reference, sparse or dense, 1 or 2 threads`, () => {
        const types = { gate: type, down: type };
        const shapes: [number, number, number[]][] = [[256, 256, [0]], [256, 512, [2, 0, 3]], [512, 256, [3, 0, 5, 2, 4, 1, 0, 3, 2, 5, 1]]];
        for (const [hidden, ffn, tokens] of shapes) {
          const available = 6;
          const [dRows, dCols] = layout === "upstream" ? [hidden, ffn] : [ffn, hidden];
          const raws = [rawMatrix(type, ffn, hidden, 1 + hidden), rawMatrix(type, ffn, hidden, 2 + ffn), rawMatrix(type, dRows, dCols, 3)];
          const x = randoms(available * hidden, 7 + tokens.length, 2);
          const results = [wasm1, wasm2].flatMap((kernels) => [true, false].map((sparse) => {
            const on = sideFor(kernels);
            return run(on, expertOn(on, types, layout, hidden, ffn, raws), x, tokens, available, sparse);
          }));
          const ref = run(sideFor(reference), expertOn(sideFor(reference), types, layout, hidden, ffn, raws), x, tokens, available, true);
          const what = `${ggmlTypeName(type)} ${hidden}×${ffn}, ${tokens.length} tokens`;
          for (const other of results.slice(1)) {
            assertBits(other.y, results[0]!.y, `${what}: threads and sparsity must not change results`);
            assert.equal(other.active, results[0]!.active);
          }
          assert.equal(results[0]!.active, ref.active, `${what}: active neurons`);
          assertBits(results[0]!.y, ref.y, what);
          assert.ok(ref.active > 0 && ref.active < tokens.length * ffn, `${what}: a sparse pattern (${ref.active})`);
        }
      });
    }
  }

  test("a layer's experts in one call give each expert's own results, however the tasks are grouped", () => {
    const [hidden, ffn, available] = [96, 288, 8];
    const types = { gate: GgmlType.Q4_0, down: GgmlType.Q4_0 };
    const raws = Array.from({ length: 4 }, (_, e) => [rawMatrix(types.gate, ffn, hidden, 10 + e), rawMatrix(types.gate, ffn, hidden, 20 + e), rawMatrix(types.down, hidden, ffn, 30 + e)]);
    const x = randoms(available * hidden, 77, 2);
    // Few tokens (chunk partial sums) and many (rows after all neurons), mixed.
    for (const tasks of [
      [{ expert: 2, tokens: [0] }, { expert: 0, tokens: [0] }, { expert: 3, tokens: [0] }, { expert: 1, tokens: [0] }],
      [{ expert: 1, tokens: [0, 1, 2, 3, 4, 5, 6] }, { expert: 0, tokens: [7, 2, 5] }, { expert: 3, tokens: [4] }, { expert: 2, tokens: [1, 6, 0, 3] }],
    ]) {
      for (const kernels of [wasm1, wasm2, reference] as Kernels[]) {
        const on = sideFor(kernels);
        const experts = raws.map((r) => expertOn(on, types, "upstream", hidden, ffn, r));
        const together = runTasks(on, experts, tasks, x, available, true);
        const apart = tasks.map((t) => runTasks(on, experts, [t], x, available, true));
        assert.equal(together.active, apart.reduce((sum, a) => sum + a.active, 0));
        tasks.forEach((t, i) => assertBits(together.ys[i]!, apart[i]!.ys[0]!, `${kernels.name}: expert ${t.expert} alone vs together`));
        if (kernels !== reference) {
          const ref = runTasks(sideFor(reference), raws.map((r) => expertOn(sideFor(reference), types, "upstream", hidden, ffn, r)), tasks, x, available, true);
          tasks.forEach((_, i) => assertBits(together.ys[i]!, ref.ys[i]!, `${kernels.name} ×${kernels.threads} vs reference, task ${i}`));
        }
      }
    }
  });
});

describe("attention over the ring KV cache", () => {
  interface Case {
    kv: KvType;
    heads: number;
    kvHeads: number;
    headDim: number;
    capacity: number;
    window: number;
    positions: number[];
  }

  function attend(side: Side, c: Case, keys: Float32Array, values: Float32Array, q: Float32Array): Float32Array {
    const width = c.kvHeads * c.headDim;
    const bytes = (c.kv === "f32" ? 4 : 2) * c.capacity * width;
    const cache: KvLayerRef = { arena: side.arena, k: side.arena.alloc(bytes), v: side.arena.alloc(bytes), type: c.kv, capacity: c.capacity, kvHeads: c.kvHeads, headDim: c.headDim };
    // Fill the cache as a sequence would: every position up to the last query, in order.
    const last = Math.max(...c.positions);
    const count = last + 1;
    side.kernels.storeKv(cache, side.put(keys.subarray(0, count * width)), side.put(values.subarray(0, count * width)), count,
      side.put(Int32Array.from({ length: count }, (_, i) => i)));
    const n = c.positions.length;
    const out = side.arena.alloc(4 * n * c.heads * c.headDim);
    side.kernels.attention(cache, side.put(q), n, side.put(Int32Array.from(c.positions)), {
      heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, window: c.window, scale: 1 / Math.sqrt(c.headDim),
    }, out);
    return side.f32(out, n * c.heads * c.headDim);
  }

  const cases: Case[] = [
    { kv: "f32", heads: 12, kvHeads: 2, headDim: 128, capacity: 4096, window: Infinity, positions: [3000] },
    { kv: "f16", heads: 12, kvHeads: 2, headDim: 128, capacity: 4096, window: Infinity, positions: [2999, 3000] },
    { kv: "f16", heads: 7, kvHeads: 1, headDim: 16, capacity: 100, window: 64, positions: [250] },
    { kv: "f32", heads: 14, kvHeads: 2, headDim: 32, capacity: 600, window: 300, positions: [700, 701, 702, 703, 704] },
    { kv: "f32", heads: 4, kvHeads: 4, headDim: 64, capacity: 64, window: Infinity, positions: [0, 1, 2, 30, 63] },
    { kv: "f16", heads: 6, kvHeads: 1, headDim: 80, capacity: 1024, window: Infinity, positions: [513] },
  ];
  for (const c of cases) {
    test(`${c.kv} cache, ${c.heads}/${c.kvHeads} heads of ${c.headDim}, window ${c.window}, positions ${c.positions.join(",")}`, () => {
      const last = Math.max(...c.positions);
      const width = c.kvHeads * c.headDim;
      const keys = randoms((last + 1) * width, 1, 2);
      const values = randoms((last + 1) * width, 2);
      const q = randoms(c.positions.length * c.heads * c.headDim, 3, 2);
      const one = attend(sideFor(wasm1), c, keys, values, q);
      const two = attend(sideFor(wasm2), c, keys, values, q);
      const ref = attend(sideFor(reference), c, keys, values, q);
      assertBits(two, one, "2 threads vs 1");
      // exp and sums in f32 (the reference uses f64 sums): |Δ| ≤ 2e-6 · max |v|.
      const vmax = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assertClose(one, ref, () => 2e-6 * vmax, "vs reference");
      if (c.positions.length > 1) {
        // A query gets the same bits alone (a decode step) as inside a batch.
        const single = attend(sideFor(wasm2), { ...c, positions: [c.positions[1]!] }, keys, values,
          q.subarray(c.heads * c.headDim, 2 * c.heads * c.headDim));
        assertBits(single, one.subarray(c.heads * c.headDim, 2 * c.heads * c.headDim), "decode vs batch");
      }
    });
  }
});
