import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType, ggmlBlockBytes, ggmlBlockSize, isKnownGgmlType } from "../src/gguf/types.js";
import { ACTIVATION_FORMATS, ActivationFormat, WEIGHT_FORMATS, WeightFormat, activationRowBytes, quantizeQ5_0 } from "../src/quant/formats/index.js";
import { DOWN_CHUNK, activationFormatFor, downChunk } from "../src/kernels/api.js";
import { ReferenceKernels } from "../src/kernels/reference.js";
import { GgmlBase, GgmlCpuVariant, ggmlBase, ggmlCpuVariants } from "./helpers/ggml-ffi.js";

/**
 * The format table against ggml itself (libggml-base and the CPU backend llama.cpp would load
 * here, through koffi): dequantization and activation quantization bit for bit, products within
 * float reordering of ggml's vec_dot and within f32 rounding of an f64 evaluation.
 */

const INSTALL = "install it with `npm install` (node-llama-cpp's prebuilt @node-llama-cpp/linux-x64 package)";

/** The oracle, or a failure (not a skip): these tests are the formats' only check. */
function oracle(): { base: GgmlBase; cpu: GgmlCpuVariant } {
  const base = ggmlBase();
  const variants = ggmlCpuVariants();
  if (typeof base === "string") assert.fail(`${base}: ${INSTALL}`);
  if (typeof variants === "string") assert.fail(`${variants}: ${INSTALL}`);
  if (variants.length === 0) assert.fail(`no libggml-cpu variant runs on this machine: ${INSTALL}`);
  return { base, cpu: variants[0]! };
}

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
  const float = () => next() / 2 ** 32;
  // Roughly normal: the sum of four uniforms, centred.
  const normal = () => (float() + float() + float() + float() - 2) * 1.7;
  return { u32: next, float, normal, int: (n: number) => next() % n };
}

const ENTRIES = Object.values(WEIGHT_FORMATS) as WeightFormat[];
const QUANTIZED = ENTRIES.filter((f) => f.blockValues > 1);

/** ggml type id of each activation format (the vec_dot_type). */
const ACTIVATION_TYPE: Record<ActivationFormat, GgmlType> = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  bf16: GgmlType.BF16,
  q8_0: GgmlType.Q8_0,
  q8_1: GgmlType.Q8_1,
  q8_k: GgmlType.Q8_K,
};

/** Types whose ggml quantizer needs (IQ1_S, IQ2_XXS, IQ2_XS) or uses an importance matrix. */
const IMATRIX_TYPES = new Set([GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ1_S, GgmlType.IQ1_M]);

function hex(bits: number): string {
  return `0x${(bits >>> 0).toString(16).padStart(8, "0")}`;
}

function assertSameFloats(actual: Float32Array, expected: Float32Array, what: string): void {
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  assert.equal(a.length, e.length, `${what}: lengths`);
  for (let i = 0; i < e.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: value ${i}: got ${hex(a[i]!)} (${actual[i]}), ggml gives ${hex(e[i]!)} (${expected[i]})`);
  }
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, blockBytes: number, what: string, input?: Float32Array, blockValues = 0): void {
  for (let b = 0; b * blockBytes < expected.length; b++) {
    const x = actual.subarray(b * blockBytes, (b + 1) * blockBytes);
    const y = expected.subarray(b * blockBytes, (b + 1) * blockBytes);
    if (x.some((v, i) => v !== y[i])) {
      const values = input ? ` [${[...input.subarray(b * blockValues, (b + 1) * blockValues)].join(", ")}]` : "";
      assert.fail(`${what}: block ${b}${values}\n  got  ${Buffer.from(x).toString("hex")}\n  ggml ${Buffer.from(y).toString("hex")}`);
    }
  }
}

/**
 * Weight-like rows: each row with its own magnitude (some tiny, some huge), some rows all zero,
 * some with a few outliers or zeroed stretches.
 */
function weightRows(seed: number, rows: number, cols: number, huge = 1e30): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    const kind = row % 8;
    const scale = kind === 1 ? 1e-30 : kind === 2 ? huge : kind === 3 ? 1e-4 : 10 ** (r.float() * 4 - 2);
    for (let i = 0; i < cols; i++) {
      let v = r.normal() * scale;
      if (kind === 4) v = 0;
      if (kind === 5 && r.int(64) === 0) v *= 40;
      if (kind === 6 && (i >> 5) % 3 === 0) v = 0;
      out[row * cols + i] = v;
    }
  }
  return out;
}

/**
 * Types whose ggml_quantize_init builds neighbour tables for many seconds (IQ1_S alone takes
 * ~15 s of CPU): their blocks are made at random instead, every field random but the fp16
 * scale, kept finite and normal, so they are still valid blocks of realistic magnitude.
 */
const SLOW_QUANTIZERS = new Set([GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.IQ2_S, GgmlType.IQ2_XS]);

/** `rows` rows of `cols` values of `type`: ggml's quantization of `src`, or random valid blocks. */
function weightBlocks(base: GgmlBase, type: GgmlType, src: Float32Array, rows: number, cols: number, seed: number): Uint8Array {
  const r = rng(seed);
  if (!SLOW_QUANTIZERS.has(type)) {
    const imatrix = IMATRIX_TYPES.has(type) ? Float32Array.from({ length: cols }, () => 0.1 + r.float()) : undefined;
    return base.quantizeChunk(type, src, rows, cols, imatrix);
  }
  const format = WEIGHT_FORMATS[type]!;
  const bytes = Uint8Array.from({ length: ((rows * cols) / 256) * format.blockBytes }, () => r.int(256));
  for (let at = 0; at < bytes.length; at += format.blockBytes) {
    if (type === GgmlType.IQ1_M) {
      // The scale's nibbles top the four u16 at 48: exponent 12..15, positive.
      bytes[at + 53] = (bytes[at + 53]! & 0x3f) | 0xc0;
      bytes[at + 55] = (bytes[at + 55]! & 0x0f) | 0x30;
    } else {
      const half = ((8 + r.int(12)) << 10) | r.int(1024);
      bytes[at] = half & 0xff;
      bytes[at + 1] = half >> 8;
    }
  }
  return bytes;
}

test("every type ggml knows is a GgmlType with ggml's block layout", () => {
  const { base } = oracle();
  for (let type = 0; type < 64; type++) {
    const name = type < 43 ? base.typeName(type) : "";
    const retired = name === "" || name === "DEPRECATED" || name.includes("REMOVED");
    assert.equal(isKnownGgmlType(type), !retired, `type ${type} (${name || "beyond GGML_TYPE_COUNT"})`);
    if (retired) continue;
    assert.equal(GgmlType[type]!.toLowerCase(), name.toLowerCase(), `type ${type}`);
    assert.equal(ggmlBlockSize(type), base.blockSize(type), `${name} block size`);
    assert.equal(ggmlBlockBytes(type), base.typeSize(type), `${name} block bytes`);
  }
});

test("the format table holds every type ggml's CPU backend multiplies, with its vec_dot_type", () => {
  const { base, cpu } = oracle();
  for (let type = 0; type < 43; type++) {
    const vecDotType = cpu.vecDotType(type);
    const entry = WEIGHT_FORMATS[type as GgmlType];
    if (vecDotType === undefined) {
      assert.equal(entry, undefined, `type ${type}: ggml has no product, the table has ${entry?.name}`);
      continue;
    }
    assert.ok(entry, `${base.typeName(type)} (${type}) is missing from WEIGHT_FORMATS`);
    assert.equal(entry.type, type);
    assert.equal(entry.name.toLowerCase(), base.typeName(type).toLowerCase());
    assert.equal(entry.blockValues, base.blockSize(type), `${entry.name} blockValues`);
    assert.equal(entry.blockBytes, base.typeSize(type), `${entry.name} blockBytes`);
    assert.equal(ACTIVATION_TYPE[entry.activation], vecDotType, `${entry.name} activation format`);
  }
  for (const [format, spec] of Object.entries(ACTIVATION_FORMATS)) {
    const type = ACTIVATION_TYPE[format as ActivationFormat];
    assert.equal(spec.blockValues, base.blockSize(type), `${format} blockValues`);
    assert.equal(spec.blockBytes, base.typeSize(type), `${format} blockBytes`);
  }
});

test("every type llama-quantize can write (LLAMA_FTYPE in llama.h) has a table entry", () => {
  // The tensor types of each llama_ftype of this llama.cpp version (the mixes only combine them).
  const written = [
    "F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "IQ1_M", "BF16",
    "TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "Q1_0", "Q2_0",
  ];
  for (const name of written) {
    const type = GgmlType[name as keyof typeof GgmlType];
    assert.ok(type !== undefined && WEIGHT_FORMATS[type], `${name} has no entry`);
  }
});

test("dequantization is bit-identical to ggml's on blocks ggml's quantizer made (random blocks for the slow ones)", () => {
  const { base } = oracle();
  const rows = 16;
  const cols = 1024;
  for (const format of QUANTIZED) {
    // ggml's i-quant quantizers abort (GGML_ASSERT(grid_index >= 0)) on values far below 1e30 (3e15 already).
    const huge = IMATRIX_TYPES.has(format.type) ? 3e4 : 1e30;
    for (const seed of [1, 2]) {
      const bytes = weightBlocks(base, format.type, weightRows(seed, rows, cols, huge), rows, cols, seed);
      const ours = new Float32Array(rows * cols);
      format.dequantize(bytes, 0, ours);
      assertSameFloats(ours, base.dequantizeRow(format.type, bytes, rows * cols), `${format.name} seed ${seed}`);
    }
  }
});

test("dequantization is bit-identical to ggml's on arbitrary bytes: every scale (NaN, Inf, subnormal) and grid entry", () => {
  const { base } = oracle();
  const r = rng(3);
  for (const format of ENTRIES.filter((f) => f.type !== GgmlType.F32)) {
    // 4096 superblocks draw each i-quant grid entry many times over, so a wrong entry shows.
    const blocks = Math.max(64, (4096 * 256) / Math.max(format.blockValues, 32));
    const bytes = Uint8Array.from({ length: blocks * format.blockBytes }, () => r.int(256));
    const ours = new Float32Array(blocks * format.blockValues);
    format.dequantize(bytes, 0, ours);
    assertSameFloats(ours, base.dequantizeRow(format.type, bytes, ours.length), format.name);
  }
});

/** Where each format keeps its fp16 scales within a block (E8M0/UE4M3 bytes for the FP4 types). */
const SCALE_FIELDS: Partial<Record<GgmlType, { halves?: number[]; bytes?: number[] }>> = {
  [GgmlType.Q4_0]: { halves: [0] }, [GgmlType.Q4_1]: { halves: [0, 2] }, [GgmlType.Q5_0]: { halves: [0] },
  [GgmlType.Q5_1]: { halves: [0, 2] }, [GgmlType.Q8_0]: { halves: [0] }, [GgmlType.Q2_K]: { halves: [80, 82] },
  [GgmlType.Q3_K]: { halves: [108] }, [GgmlType.Q4_K]: { halves: [0, 2] }, [GgmlType.Q5_K]: { halves: [0, 2] },
  [GgmlType.Q6_K]: { halves: [208] }, [GgmlType.IQ2_XXS]: { halves: [0] }, [GgmlType.IQ2_XS]: { halves: [0] },
  [GgmlType.IQ2_S]: { halves: [0] }, [GgmlType.IQ3_XXS]: { halves: [0] }, [GgmlType.IQ3_S]: { halves: [0] },
  [GgmlType.IQ1_S]: { halves: [0] }, [GgmlType.IQ4_NL]: { halves: [0] }, [GgmlType.IQ4_XS]: { halves: [0] },
  [GgmlType.TQ1_0]: { halves: [52] }, [GgmlType.TQ2_0]: { halves: [64] }, [GgmlType.Q1_0]: { halves: [0] },
  [GgmlType.Q2_0]: { halves: [0] }, [GgmlType.MXFP4]: { bytes: [0] }, [GgmlType.NVFP4]: { bytes: [0, 1, 2, 3] },
};

test("dequantization matches ggml on blocks with extreme, infinite and NaN scales", () => {
  const { base } = oracle();
  const halves = [0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01, 0x7d55];
  const bytes = [0, 1, 2, 0x7e, 0x7f, 0x80, 0xfe, 0xff];
  for (const format of QUANTIZED) {
    const fields = SCALE_FIELDS[format.type];
    if (!fields) continue;
    const rows = 8;
    const cols = 256 * 4;
    const blocks = weightBlocks(base, format.type, weightRows(5, rows, cols, 1), rows, cols, 5);
    const count = blocks.length / format.blockBytes;
    for (let b = 0; b < count; b++) {
      const at = b * format.blockBytes;
      for (const [k, o] of (fields.halves ?? []).entries()) {
        const h = halves[(b + 3 * k) % halves.length]!;
        blocks[at + o] = h & 0xff;
        blocks[at + o + 1] = h >> 8;
      }
      for (const [k, o] of (fields.bytes ?? []).entries()) blocks[at + o] = bytes[(b + k) % bytes.length]!;
    }
    const ours = new Float32Array(rows * cols);
    format.dequantize(blocks, 0, ours);
    assertSameFloats(ours, base.dequantizeRow(format.type, blocks, rows * cols), format.name);
  }
});

test("the i-quant grids hold ggml's every entry (each index dequantized alone)", () => {
  // One block per grid index, the index in the block's first 8 values: a wrong entry names itself.
  const { base } = oracle();
  const layouts: Array<[GgmlType, number, (b: Uint8Array, at: number, index: number) => void]> = [
    [GgmlType.IQ2_XXS, 256, (b, at, i) => { b[at + 2] = i; }],
    [GgmlType.IQ2_XS, 512, (b, at, i) => { b[at + 2] = i & 0xff; b[at + 3] = i >> 8; }],
    [GgmlType.IQ2_S, 1024, (b, at, i) => { b[at + 2] = i & 0xff; b[at + 66] = i >> 8; }],
    [GgmlType.IQ3_XXS, 256, (b, at, i) => { b[at + 2] = i; b[at + 3] = (i * 7) & 0xff; }],
    [GgmlType.IQ3_S, 512, (b, at, i) => { b[at + 2] = i & 0xff; b[at + 66] = i >> 8; }],
    [GgmlType.IQ1_S, 2048, (b, at, i) => { b[at + 2] = i & 0xff; b[at + 34] = i >> 8; }],
    [GgmlType.IQ1_M, 2048, (b, at, i) => { b[at] = i & 0xff; b[at + 32] = i >> 8; }],
  ];
  for (const [type, entries, place] of layouts) {
    const format = WEIGHT_FORMATS[type]!;
    const bytes = new Uint8Array(entries * format.blockBytes);
    for (let i = 0; i < entries; i++) {
      const at = i * format.blockBytes;
      if (type !== GgmlType.IQ1_M) {
        bytes[at] = 0x00;
        bytes[at + 1] = 0x3c; // d = 1
      } else {
        bytes[at + 55] = 0x30; // the scattered fp16 scale's top nibble: d = 2^-3
      }
      place(bytes, at, i);
    }
    const ours = new Float32Array(entries * 256);
    format.dequantize(bytes, 0, ours);
    assertSameFloats(ours, base.dequantizeRow(type, bytes, ours.length), format.name);
  }
});

test("Q4_0, Q5_0 and Q8_0 quantization is byte-identical to ggml's quantize_row_*_ref", () => {
  const { base } = oracle();
  const input = weightRows(6, 64, 1024);
  const special = Float32Array.from({ length: 32 * 64 }, (_, i) => [NaN, Infinity, -Infinity, 0, -0, 1e-45, 3e38][(i * 7) % 97] ?? ((i % 37) - 18) / 3);
  for (const format of [WEIGHT_FORMATS[GgmlType.Q4_0]!, WEIGHT_FORMATS[GgmlType.Q5_0]!, WEIGHT_FORMATS[GgmlType.Q8_0]!]) {
    for (const src of [input, special]) {
      const ours = new Uint8Array((src.length / 32) * format.blockBytes);
      format.quantize!(src, ours, 0);
      assertSameBytes(ours, base.quantizeRowRef(format.type, src)!, format.blockBytes, format.name, src, 32);
    }
  }
  assert.throws(() => quantizeQ5_0(new Float32Array(31), new Uint8Array(22)), RangeError);
});

/**
 * Activation inputs: blocks of zeros, ties, lone extremes, subnormals, NaN/±Inf at lane
 * boundaries, NaNs with payloads, any bit patterns, and plain random values over the float range.
 */
function activationInputs(seed: number, values: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(values);
  const bits = new Uint32Array(out.buffer);
  for (let block = 0; block * 32 < values; block++) {
    const kind = r.int(20);
    const scale = 10 ** (r.float() * 76 - 38);
    for (let j = 0; j < 32 && block * 32 + j < values; j++) {
      const i = block * 32 + j;
      let v = r.normal() * scale;
      if (kind === 0) v = 0;
      if (kind === 1) v = j === 0 ? -0 : 0;
      if (kind === 2) v = Math.round(r.normal() * 8) / 2; // ties after scaling
      if (kind === 3) v = j === r.int(32) ? 1e-40 : 1e-42 * (j - 16); // subnormals
      if (kind === 4 && r.int(6) === 0) v = [NaN, Infinity, -Infinity][r.int(3)]!;
      if (kind === 5 && (j === 0 || j === 7 || j === 8 || j === 31)) v = [NaN, Infinity, -Infinity][r.int(3)]!;
      if (kind === 7) v = (j % 2 ? 1 : -1) * 127; // ± the same magnitude
      out[i] = v;
      if (kind === 6) bits[i] = r.u32(); // any bits: NaNs with payloads, signalling NaNs
      if (kind === 8 && r.int(4) === 0) bits[i] = 0x7f800000 | (r.u32() & 0x807fffff) | 1;
    }
  }
  return out;
}

test("activation quantization is bit-identical to the CPU backend's from_float (q8_0, q8_1, q8_k, f16, bf16, f32)", () => {
  const { cpu } = oracle();
  for (const [format, spec] of Object.entries(ACTIVATION_FORMATS)) {
    for (const seed of [11, 12, 13]) {
      // Lengths with a tail beyond whole vectors for the float formats (f16's last n mod 4 differ).
      const values = 256 * 96 + (spec.blockValues === 1 ? seed - 10 : 0);
      const src = activationInputs(seed, values);
      const bytes = activationRowBytes(format as ActivationFormat, values);
      const ours = new Uint8Array(bytes);
      spec.quantize(src, ours, 0);
      const theirs = cpu.fromFloat(ACTIVATION_TYPE[format as ActivationFormat], src, bytes);
      assertSameBytes(ours, theirs, spec.blockBytes * Math.max(1, 32 / spec.blockValues), `${format} vs libggml-cpu-${cpu.name}`, src, Math.max(32, spec.blockValues));
    }
  }
});

/** f32 values of an activation row: d · q per block (ggml's traits have no to_float for Q8_1/Q8_K). */
function activationValues(base: GgmlBase, format: ActivationFormat, bytes: Uint8Array, n: number): Float32Array {
  if (format !== "q8_1" && format !== "q8_k") return base.dequantizeRow(ACTIVATION_TYPE[format], bytes, n);
  const spec = ACTIVATION_FORMATS[format];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < n / spec.blockValues; b++) {
    const at = b * spec.blockBytes;
    const d = format === "q8_k" ? view.getFloat32(at, true) : base.fp16ToFp32Row(new Uint16Array([view.getUint16(at, true)]))[0]!;
    for (let j = 0; j < spec.blockValues; j++) out[b * spec.blockValues + j] = Math.fround(d * view.getInt8(at + 4 + j));
  }
  return out;
}

/**
 * Byte ranges of the quants in the formats whose values carry a per-block offset (the min):
 * zeroing them leaves blocks that dequantize to the offsets alone.
 */
const QUANT_BYTES: Partial<Record<GgmlType, [number, number]>> = {
  [GgmlType.Q4_1]: [4, 20], [GgmlType.Q5_1]: [4, 24], [GgmlType.Q2_K]: [16, 80], [GgmlType.Q4_K]: [16, 144], [GgmlType.Q5_K]: [16, 176],
};

/** Each weight's offset (its block's −dmin·m, or Q4_1/Q5_1's m) as ggml dequantizes it; zeros where none. */
function offsets(base: GgmlBase, format: WeightFormat, w: Uint8Array, n: number): Float32Array {
  const range = QUANT_BYTES[format.type];
  if (!range) return new Float32Array(n);
  const zeroed = w.slice();
  for (let at = 0; at < zeroed.length; at += format.blockBytes) zeroed.fill(0, at + range[0], at + range[1]);
  return base.dequantizeRow(format.type, zeroed, n);
}

/** Largest |ours − ggml| / Σ|terms| per type over the product tests, for the record. */
const worst = new Map<string, number>();

test("dot agrees with ggml's vec_dot (≤ 1e-5 of Σ|terms|) and with an f64 evaluation (within f32 rounding)", () => {
  const { base, cpu } = oracle();
  const rows = 24;
  const cols = 2048;
  for (const format of ENTRIES) {
    const spec = ACTIVATION_FORMATS[format.activation];
    for (const seed of [21, 22]) {
      // Magnitudes whose scales stay finite in every format (fp16 scales end at 65504).
      const weights = weightRows(seed, rows, cols, 300);
      const w = format.blockValues === 1 ? encodeFloat(format, weights) : weightBlocks(base, format.type, weights, rows, cols, seed);
      const wValues = format.type === GgmlType.F32 ? weights : base.dequantizeRow(format.type, w, rows * cols);
      const wOffsets = offsets(base, format, w, rows * cols);
      const rowBytes = (cols / format.blockValues) * format.blockBytes;
      const r = rng(seed + 100);
      for (let row = 0; row < rows; row++) {
        const x = Float32Array.from({ length: cols }, () => r.normal() * 10 ** (r.int(5) - 2));
        const xBytes = cpu.fromFloat(ACTIVATION_TYPE[format.activation], x, activationRowBytes(format.activation, cols));
        const xValues = format.activation === "f32" ? x : activationValues(base, format.activation, xBytes, cols);
        const wRow = w.subarray(row * rowBytes, (row + 1) * rowBytes);
        const ours = format.dot(wRow, 0, xBytes, 0, cols);
        const theirs = cpu.vecDot(format.type, cols, wRow, xBytes);
        // The same sum in f64: Σ (w − offset)·x plus the offsets' share, which q8_1 activations
        // carry as s = fp16(d·Σq) per block (not Σx: s is rounded).
        let exact = 0;
        let magnitude = 0;
        for (let i = 0; i < cols; i++) {
          const o = wOffsets[row * cols + i]!;
          const xi = xValues[i]!;
          exact += (wValues[row * cols + i]! - o) * xi + (format.activation === "q8_1" ? 0 : o * xi);
          magnitude += (Math.abs(wValues[row * cols + i]!) + Math.abs(o)) * Math.abs(xi);
        }
        if (format.activation === "q8_1") {
          const s = base.fp16ToFp32Row(Uint16Array.from({ length: cols / 32 }, (_, b) => xBytes[36 * b + 2]! | (xBytes[36 * b + 3]! << 8)));
          for (let b = 0; b < cols / 32; b++) {
            exact += wOffsets[row * cols + 32 * b]! * s[b]!;
            magnitude += Math.abs(wOffsets[row * cols + 32 * b]! * s[b]!);
          }
        }
        const what = `${format.name} seed ${seed} row ${row}: ours ${ours}, ggml ${theirs}, f64 ${exact}, Σ|terms| ${magnitude}`;
        assert.ok(Number.isFinite(ours), what);
        const error = magnitude === 0 ? Math.abs(ours - theirs) : Math.abs(ours - theirs) / magnitude;
        worst.set(format.name, Math.max(worst.get(format.name) ?? 0, error));
        assert.ok(error <= 1e-5, `${what}: relative error ${error} vs ggml`);
        // f32 rounding: a few roundings per block, and each dequantized weight's own rounding.
        const blocks = cols / Math.max(spec.blockValues, format.blockValues, 16);
        assert.ok(Math.abs(ours - exact) <= (blocks + 8) * 2 ** -24 * magnitude, `${what}: off the f64 value by ${Math.abs(ours - exact) / magnitude} of Σ|terms|`);
      }
    }
  }
  console.log(`dot vs ggml vec_dot, largest |ours − ggml| / Σ|terms|: ${[...worst].map(([n, e]) => `${n} ${e.toExponential(1)}`).join(", ")}`);
});

function encodeFloat(format: WeightFormat, values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * format.blockBytes);
  format.quantize!(values, out, 0);
  return out;
}

test("table entries reject partial blocks and buffers too short, naming the format", () => {
  const q4k = WEIGHT_FORMATS[GgmlType.Q4_K]!;
  assert.throws(() => q4k.dequantize(new Uint8Array(144), 0, new Float32Array(128)), /Q4_K: 128 values are not a whole number of 256-value blocks/);
  assert.throws(() => q4k.dequantize(new Uint8Array(143), 0, new Float32Array(256)), /Q4_K: bytes \[0, 144\) lie outside/);
  assert.throws(() => q4k.dot(new Uint8Array(144), 0, new Uint8Array(291), 0, 256), /Q4_K's q8_k activations: bytes \[0, 292\)/);
  assert.throws(() => activationRowBytes("q8_k", 320), /q8_k activations: 320 values/);
  assert.equal(WEIGHT_FORMATS[GgmlType.Q8_K], undefined);
});

test("reference kernels multiply every table type through the table, activations in ggml's layouts", () => {
  const { base, cpu } = oracle();
  const kernels = new ReferenceKernels();
  const rows = 4;
  const cols = 512;
  const n = 2;
  for (const format of ENTRIES) {
    const arena = kernels.createArena(1 << 20);
    const weights = weightRows(31, rows, cols, 300);
    const w = format.blockValues === 1 ? encodeFloat(format, weights) : weightBlocks(base, format.type, weights, rows, cols, 31);
    const wPtr = arena.alloc(w.length);
    arena.bytes.set(w, wPtr);
    const x = Float32Array.from({ length: n * cols }, (_, i) => Math.sin(i * 0.37) * 3);
    const xPtr = arena.alloc(4 * x.length);
    arena.f32(xPtr, x.length).set(x);
    const activation = activationFormatFor(format.type);
    assert.equal(activation, format.activation);
    const rowBytes = kernels.activationBytes(activation, cols);
    const prepared = arena.alloc(n * rowBytes);
    kernels.prepareActivations(arena, activation, xPtr, n, cols, prepared);
    const y = arena.alloc(4 * n * rows);
    kernels.matmul({ arena, ptr: wPtr, type: format.type, rows, cols }, prepared, n, y);
    for (let t = 0; t < n; t++) {
      const theirs = cpu.fromFloat(ACTIVATION_TYPE[activation], x.subarray(t * cols, (t + 1) * cols), rowBytes);
      assertSameBytes(arena.bytes.slice(prepared + t * rowBytes, prepared + (t + 1) * rowBytes), theirs, rowBytes, `${format.name} prepared row ${t}`);
      for (let r = 0; r < rows; r++) {
        const expected = format.dot(w, (r * cols * format.blockBytes) / format.blockValues, theirs, 0, cols);
        assert.equal(arena.f32(y, n * rows)[t * rows + r], expected, `${format.name} y[${t}][${r}]`);
      }
    }
  }
  // Q4_0, Q8_0 and the floats sum chunks of neurons (their WASM kernels split the work that way);
  // every other type's down product is one dot per row.
  for (const type of [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.F32, GgmlType.F16, GgmlType.BF16]) assert.equal(downChunk(type), DOWN_CHUNK);
  for (const type of [GgmlType.Q1_0, GgmlType.Q4_1, GgmlType.Q4_K, GgmlType.IQ2_XXS]) assert.equal(downChunk(type), Infinity);
  assert.throws(() => activationFormatFor(GgmlType.Q8_K), /no kernels for tensor type Q8_K/);
  assert.throws(() => activationFormatFor(57 as GgmlType), /no kernels for tensor type 57 \(unknown\)/);
});
