import { test } from "node:test";
import assert from "node:assert/strict";
import {
  bf16ToFp32,
  fp16ToFp32,
  fp32BitsToBf16,
  fp32BitsToFp16,
  fp32ToBf16,
  fp32ToFp16,
} from "../src/quant/half.js";
import { GgmlType } from "../src/gguf/types.js";
import { dequantize, quantize, quantizeQ4_0, quantizeQ8_0, quantizeQ8_0Activations } from "../src/quant/formats/index.js";
import { GgmlCpuVariant, ggmlBase as base, ggmlCpuVariants as variants } from "./helpers/ggml-ffi.js";
import { needsOracle } from "./helpers/oracle.js";

/** xorshift32: reproducible inputs, so a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  return { u32: next, float: () => next() / 2 ** 32, int: (n: number) => next() % n };
}

function floatsFromBits(bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

/**
 * Float32 bit patterns that exercise every rounding decision of a conversion to half or bfloat16:
 * for every sign and exponent, mantissas just below, at and above the halfway point of every
 * rounding position (bit 13 for normal halves, 14..24 for subnormal ones, 16 for bfloat16),
 * plus extremes and random patterns (NaNs with payloads, signalling NaNs included).
 */
function roundingBitPatterns(seed: number, randomCount: number): Float32Array {
  const r = rng(seed);
  const bits: number[] = [];
  for (let signExponent = 0; signExponent < 512; signExponent++) {
    const high = ((signExponent & 0x100) << 23) | ((signExponent & 0xff) << 23);
    for (const mantissa of [0, 1, 0x400000, 0x7fffff]) bits.push(high | mantissa);
    for (let position = 13; position <= 24; position++) {
      const halfway = 2 ** (position - 1);
      const above = r.u32() & 0x7fffff & ~(2 ** position - 1);
      for (const delta of [-1, 0, 1]) bits.push(high | ((above + halfway + delta) & 0x7fffff));
    }
  }
  for (let i = 0; i < randomCount; i++) bits.push(r.u32());
  return floatsFromBits(bits);
}

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function hex(bits: number): string {
  return `0x${(bits >>> 0).toString(16).padStart(8, "0")}`;
}

function assertSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, input: Float32Array | undefined, what: string): void {
  const i = firstDifference(actual, expected);
  if (i < 0) return;
  const inputBits = input ? ` for input ${hex(new Uint32Array(input.buffer, input.byteOffset)[i]!)}` : "";
  assert.fail(`${what}: element ${i}${inputBits}: got ${hex(actual[i]!)}, ggml gives ${hex(expected[i]!)}`);
}

test("fp16 round trip of every half value", () => {
  for (let h = 0; h < 65536; h++) {
    const v = fp16ToFp32(h);
    if (Number.isNaN(v)) continue;
    assert.equal(fp32ToFp16(v), h, `half 0x${h.toString(16)}`);
  }
});

test("bf16 round trip of every bfloat16 value", () => {
  for (let h = 0; h < 65536; h++) {
    const v = bf16ToFp32(h);
    if (Number.isNaN(v)) continue;
    assert.equal(fp32ToBf16(v), h);
  }
});

test("float32 → half matches ggml_fp32_to_fp16_row, and the CPU backend's conversion except on NaN", needsOracle, () => {
  const input = roundingBitPatterns(1, 300_000);
  const bits = new Uint32Array(input.buffer);
  const expected = base().fp32ToFp16Row(input);
  assertSameBits(bits.map(fp32BitsToFp16), expected, input, "fp32BitsToFp16");
  const encoded = new Uint8Array(2 * input.length);
  quantize(GgmlType.F16, input, encoded);
  assertSameBits(new Uint16Array(encoded.buffer), expected, input, "quantize(F16)");

  // ggml_cpu_fp32_to_fp16 (F32 → F16 activations) uses vcvtps2ph, which keeps NaN payload bits.
  const numbers = input.filter((v) => !Number.isNaN(v));
  const numberBits = new Uint32Array(numbers.buffer);
  for (const variant of variants()) {
    assertSameBits(numberBits.map(fp32BitsToFp16), variant.fp32ToFp16(numbers), numbers, `fp32BitsToFp16 vs ${variant.name}`);
  }
});

test("half and bfloat16 → float32 match ggml's row conversions for every value, NaN payloads included", needsOracle, () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  for (const [type, expected] of [
    [GgmlType.F16, base().fp16ToFp32Row(all)],
    [GgmlType.BF16, base().bf16ToFp32Row(all)],
  ] as const) {
    const decoded = new Float32Array(65536);
    dequantize(type, new Uint8Array(all.buffer), 0, decoded);
    assertSameBits(new Uint32Array(decoded.buffer), new Uint32Array(expected.buffer), undefined, `dequantize(${GgmlType[type]})`);
  }
});

test("float32 → bfloat16 matches ggml_fp32_to_bf16_row and its _ref", needsOracle, () => {
  const input = roundingBitPatterns(2, 300_000);
  const bits = new Uint32Array(input.buffer);
  const expected = base().fp32ToBf16RowRef(input);
  assertSameBits(base().fp32ToBf16Row(input), expected, input, "ggml_fp32_to_bf16_row vs _ref");
  assertSameBits(bits.map(fp32BitsToBf16), expected, input, "fp32BitsToBf16");
  const encoded = new Uint8Array(2 * input.length);
  quantize(GgmlType.BF16, input, encoded);
  assertSameBits(new Uint16Array(encoded.buffer), expected, input, "quantize(BF16)");
});

test("F32 is stored bit for bit, signalling NaNs included", () => {
  const input = floatsFromBits([0x7f800001, 0xffbfffff, 0x80000000, 0x00000001, 0x3f800000]);
  const encoded = new Uint8Array(4 * input.length);
  quantize(GgmlType.F32, input, encoded);
  assert.deepEqual(encoded, new Uint8Array(input.buffer));
  const decoded = new Float32Array(input.length);
  dequantize(GgmlType.F32, encoded, 0, decoded);
  assert.deepEqual(new Uint32Array(decoded.buffer), new Uint32Array(input.buffer));
});

const QK = 32;

/**
 * Blocks chosen to hit every branch of the Q4_0/Q8_0 quantizers: zeros of both signs, exact ties
 * after scaling, a positive and a negative maximum of equal magnitude in both orders, huge and
 * tiny (denormal) values, and NaN and infinities at positions that ggml's maximum reductions
 * treat differently (first, lane-boundary, last).
 */
function adversarialBlocks(): Float32Array[] {
  const blocks: Float32Array[] = [];
  const block = (f: (j: number) => number) => blocks.push(Float32Array.from({ length: QK }, (_, j) => f(j)));
  block(() => 0);
  block(() => -0);
  block((j) => (j === 7 ? 1 : 0));
  block((j) => (j === 31 ? -3 : 0));
  // amax 127 makes the Q8_0 multiplier exactly 1, so the halves below are exact ties.
  block((j) => (j === 0 ? 127 : j - 15.5));
  block((j) => (j === 0 ? -127 : (j % 2 ? 1 : -1) * (j + 0.5)));
  // amax 8 makes the Q4_0 multiplier exactly ±1: quarter steps land on and between buckets.
  block((j) => (j === 0 ? 8 : -8 + j * 0.5));
  block((j) => (j === 0 ? -8 : 8 - j * 0.25));
  block((j) => (j === 3 ? 5 : j === 9 ? -5 : j / 10));
  block((j) => (j === 3 ? -5 : j === 9 ? 5 : j / 10));
  block((j) => (j % 2 ? 3.4028234663852886e38 : -3.4028234663852886e38 * (j / 32)));
  block((j) => 1e30 * (j - 16));
  block((j) => 1.401298464324817e-45 * (j - 16));
  block((j) => 1e-40 * (j + 1));
  block((j) => 1e-38 * (j % 3 - 1));
  block((j) => 6.1e-5 * (j - 10)); // d = amax/127 lands among half subnormals
  block((j) => 65504 * 127 * (j === 5 ? 1 : j / 64)); // d at the top of the half range
  block((j) => 65520 * 127 * (j === 5 ? -1 : j / 64)); // d just rounds to half infinity
  for (const special of [NaN, Infinity, -Infinity]) {
    for (const at of [0, 1, 7, 8, 15, 16, 23, 24, 30, 31]) block((j) => (j === at ? special : j - 10));
  }
  block((j) => (j === 4 ? Infinity : j === 12 ? NaN : j));
  block((j) => (j % 8 === 3 ? NaN : 1));
  block(() => NaN);
  block((j) => (j === 0 ? 100 : j === 1 ? -100 : j === 2 ? 3e9 : j === 7 ? NaN : 0.5));
  // NaNs with payloads and signs, and a signalling NaN, as raw bits.
  blocks.push(floatsFromBits(Array.from({ length: QK }, (_, j) => (j === 31 ? 0xffc12345 : j === 30 ? 0x7f800001 : 0x3f800000 + j))));
  blocks.push(floatsFromBits(Array.from({ length: QK }, (_, j) => (j === 6 ? 0x7fa5a5a5 : 0x40000000 + j * 0x1000))));
  return blocks;
}

/** Random blocks with magnitudes spread over the whole float32 range, some with special values. */
function randomBlocks(seed: number, count: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(count * QK);
  for (let b = 0; b < count; b++) {
    const scale = 10 ** (r.float() * 76 - 38);
    const kind = r.int(16);
    for (let j = 0; j < QK; j++) {
      let v = (r.float() * 2 - 1) * scale;
      if (kind === 0) v = Math.round(v / scale * 8) / 8 * scale; // coarse grid: many ties
      if (kind === 1 && r.int(8) === 0) v = [NaN, Infinity, -Infinity, 0, -0][r.int(5)]!;
      if (kind === 2) v = new Float32Array(new Uint32Array([r.u32()]).buffer)[0]!; // any bits
      out[b * QK + j] = v;
    }
  }
  return out;
}

function concat(blocks: Float32Array[]): Float32Array {
  const out = new Float32Array(blocks.length * QK);
  blocks.forEach((b, i) => out.set(b, i * QK));
  return out;
}

/** Compares two encodings block by block, naming the first block that differs and its input. */
function assertSameBlocks(actual: Uint8Array, expected: Uint8Array, blockBytes: number, input: Float32Array, what: string): void {
  for (let b = 0; b * blockBytes < expected.length; b++) {
    const a = actual.subarray(b * blockBytes, (b + 1) * blockBytes);
    const e = expected.subarray(b * blockBytes, (b + 1) * blockBytes);
    if (firstDifference(a, e) >= 0) {
      const values = [...input.subarray(b * QK, (b + 1) * QK)].join(", ");
      assert.fail(`${what}: block ${b} [${values}]\n  got  ${Buffer.from(a).toString("hex")}\n  ggml ${Buffer.from(e).toString("hex")}`);
    }
  }
}

const adversarial = concat(adversarialBlocks());
const random = randomBlocks(3, 50_000);

test("Q4_0 quantization is byte-identical to quantize_row_q4_0_ref", needsOracle, () => {
  for (const input of [adversarial, random]) {
    const ours = new Uint8Array((input.length / QK) * 18);
    quantizeQ4_0(input, ours);
    assertSameBlocks(ours, base().quantizeRowQ4_0Ref(input), 18, input, "Q4_0");
  }
});

test("Q8_0 quantization is byte-identical to quantize_row_q8_0_ref", needsOracle, () => {
  for (const input of [adversarial, random]) {
    const ours = new Uint8Array((input.length / QK) * 34);
    quantizeQ8_0(input, ours);
    assertSameBlocks(ours, base().quantizeRowQ8_0Ref(input), 34, input, "Q8_0");
  }
});

test("Q4_0 and Q8_0 dequantization match ggml bit for bit on arbitrary blocks", needsOracle, () => {
  const r = rng(4);
  const blocks = 4096;
  for (const [type, blockBytes, reference] of [
    [GgmlType.Q4_0, 18, base().dequantizeRowQ4_0],
    [GgmlType.Q8_0, 34, base().dequantizeRowQ8_0],
  ] as const) {
    // Random bytes: every scale, including half NaNs, infinities and subnormals, turns up.
    const bytes = Uint8Array.from({ length: blocks * blockBytes }, () => r.int(256));
    const ours = new Float32Array(blocks * QK);
    dequantize(type, bytes, 0, ours);
    const expected = reference(bytes, blocks * QK);
    assertSameBits(new Uint32Array(ours.buffer), new Uint32Array(expected.buffer), undefined, `dequantize(${GgmlType[type]})`);
  }
});

test("quantizers reject partial blocks and short buffers instead of reading or writing past them", () => {
  assert.throws(() => quantizeQ8_0(new Float32Array(33), new Uint8Array(68)), RangeError);
  assert.throws(() => quantizeQ4_0(new Float32Array(64), new Uint8Array(35)), RangeError);
  assert.throws(() => quantizeQ8_0Activations(new Float32Array(32), new Uint8Array(40), 7), RangeError);
  assert.throws(() => dequantize(GgmlType.Q8_0, new Uint8Array(33), 0, new Float32Array(32)), RangeError);
});

test("activation Q8_0 rounds ties to even with multiplier 127/amax, unlike the reference", () => {
  // amax 127: both multipliers are exactly 1, so 2.5 and -3.5 are ties.
  const input = Float32Array.from({ length: QK }, (_, j) => [127, 2.5, -3.5, 0.5][j] ?? 0);
  const activation = new Uint8Array(34);
  const reference = new Uint8Array(34);
  quantizeQ8_0Activations(input, activation);
  quantizeQ8_0(input, reference);
  assert.deepEqual([...new Int8Array(activation.buffer, 2, 4)], [127, 2, -4, 0]);
  assert.deepEqual([...new Int8Array(reference.buffer, 2, 4)], [127, 3, -4, 1]);
});

function assertActivationsLike(variant: GgmlCpuVariant): void {
  for (const input of [adversarial, random]) {
    const ours = new Uint8Array((input.length / QK) * 34);
    quantizeQ8_0Activations(input, ours);
    assertSameBlocks(ours, variant.quantizeRowQ8_0(input), 34, input, `activations vs ${variant.name}`);
  }
}

test("activation Q8_0 is byte-identical to quantize_row_q8_0 of libggml-cpu-haswell (AVX2)", needsOracle, () => {
  const haswell = variants().find((v) => v.name === "haswell");
  assert.ok(haswell, `libggml-cpu-haswell does not run on this machine (runnable: ${variants().map((v) => v.name).join(", ")})`);
  assertActivationsLike(haswell);
});

test("activation Q8_0 is byte-identical to quantize_row_q8_0 of the CPU variant llama.cpp loads here", needsOracle, (t) => {
  const runtime = variants()[0]!;
  t.diagnostic(`libggml-cpu-${runtime.name}`);
  assertActivationsLike(runtime);
});
