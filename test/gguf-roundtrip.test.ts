import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufError } from "../src/gguf/errors.js";
import { GgufFile } from "../src/gguf/reader.js";
import { GgufTensorSpec, gv, writeGguf } from "../src/gguf/writer.js";
import { GgmlType, GgufValue, GgufValueType, ggmlRowBytes } from "../src/gguf/types.js";
import { ggmlBase } from "./helpers/ggml-ffi.js";
import { needsOracle } from "./helpers/oracle.js";

const dir = mkdtempSync(join(tmpdir(), "gguf-roundtrip-"));
after(() => rmSync(dir, { recursive: true, force: true }));


function f32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}
function f64FromBits(bits: bigint): number {
  return new Float64Array(new BigUint64Array([bits]).buffer)[0]!;
}

/** A comparable form of a value in which floats are their exact bit patterns, so -0 and NaN payloads count. */
function exact(value: GgufValue): unknown {
  const scalar = (type: GgufValueType, v: unknown): unknown => {
    if (type === GgufValueType.FLOAT32) return `f32:${new Uint32Array(new Float32Array([v as number]).buffer)[0]!.toString(16)}`;
    if (type === GgufValueType.FLOAT64) return `f64:${new BigUint64Array(new Float64Array([v as number]).buffer)[0]!.toString(16)}`;
    if (typeof v === "bigint") return `${v}n`;
    return v;
  };
  if (value.type !== GgufValueType.ARRAY) return { type: value.type, value: scalar(value.type, value.value) };
  const items = value.value as unknown[];
  return {
    type: value.type,
    itemType: value.itemType,
    value: items.map((item) => (value.itemType === GgufValueType.ARRAY ? exact(item as GgufValue) : scalar(value.itemType, item))),
  };
}

/** Every value type with its edge values; quiet NaNs with payloads are representable as JS numbers, signalling ones are not. */
const metadata: [string, GgufValue][] = [
  ["general.architecture", gv.str("smallthinker")],
  ["u8.min", gv.u8(0)],
  ["u8.max", gv.u8(255)],
  ["i8.min", gv.i8(-128)],
  ["i8.max", gv.i8(127)],
  ["u16.max", gv.u16(65535)],
  ["i16.min", gv.i16(-32768)],
  ["u32.max", gv.u32(0xffffffff)],
  ["i32.min", gv.i32(-0x80000000)],
  ["i32.max", gv.i32(0x7fffffff)],
  ["f32.negative_zero", gv.f32(-0)],
  ["f32.nan_payload", gv.f32(f32FromBits(0x7fc12345))],
  ["f32.negative_nan", gv.f32(f32FromBits(0xffc00001))],
  ["f32.infinity", gv.f32(-Infinity)],
  ["f32.denormal", gv.f32(f32FromBits(1))],
  ["f32.max", gv.f32(f32FromBits(0x7f7fffff))],
  ["f32.inexact", gv.f32(Math.fround(0.1))],
  ["bool.true", gv.bool(true)],
  ["bool.false", gv.bool(false)],
  ["string.empty", gv.str("")],
  ["string.unicode", gv.str("Grüße, 世界! 𝄞😀 \u0000 after NUL")],
  ["string.bom", gv.str("\uFEFFstarts with a byte order mark")],
  ["string.long", gv.str("x".repeat(100_000))],
  // Headers grow past the writer's first buffer on string bytes above, and on numbers here.
  ["array.long", gv.u32s(Array.from({ length: 70_000 }, (_, i) => i * 7))],
  ["array.many_strings", gv.strings(Array.from({ length: 20_000 }, (_, i) => `tok${i}`))],
  ["u64.max", gv.u64(2n ** 64n - 1n)],
  ["u64.above_2^53", gv.u64(2n ** 53n + 1n)],
  ["i64.min", gv.i64(-(2n ** 63n))],
  ["i64.max", gv.i64(2n ** 63n - 1n)],
  ["f64.negative_zero", gv.f64(-0)],
  ["f64.nan_payload", gv.f64(f64FromBits(0x7ff80000deadbeefn))],
  ["f64.negative_nan", gv.f64(f64FromBits(0xfff8000000000001n))],
  ["f64.denormal", gv.f64(5e-324)],
  ["f64.max", gv.f64(Number.MAX_VALUE)],
  ["array.u8", gv.array(GgufValueType.UINT8, [0, 1, 255])],
  ["array.i8", gv.array(GgufValueType.INT8, [-128, 0, 127])],
  ["array.u16", gv.array(GgufValueType.UINT16, [0, 65535])],
  ["array.i16", gv.array(GgufValueType.INT16, [-32768, 32767])],
  ["array.u32", gv.u32s([0, 0xffffffff])],
  ["array.i32", gv.i32s([-0x80000000, 0x7fffffff, 0])],
  ["array.f32", gv.f32s([-0, f32FromBits(0x7fc12345), Infinity, 1.5])],
  ["array.bool", gv.array(GgufValueType.BOOL, [true, false, true])],
  ["array.u64", gv.array(GgufValueType.UINT64, [0n, 2n ** 64n - 1n])],
  ["array.i64", gv.array(GgufValueType.INT64, [-(2n ** 63n), 2n ** 63n - 1n])],
  ["array.f64", gv.array(GgufValueType.FLOAT64, [-0, f64FromBits(0x7ff80000deadbeefn), 1e300])],
  ["array.strings", gv.strings(["", "a", "Grüße", "𝄞", "\uFEFF", "tok\u0120en"])],
  ["array.empty", gv.array(GgufValueType.UINT32, [])],
  ["array.nested", gv.array(GgufValueType.ARRAY, [gv.i32s([1, 2]), gv.i32s([]), gv.i32s([-3])])],
  ["array.nested_strings", gv.array(GgufValueType.ARRAY, [gv.strings(["a", "b"]), gv.strings(["ü"])])],
  ["array.nested_deep", gv.array(GgufValueType.ARRAY, [gv.array(GgufValueType.ARRAY, [gv.array(GgufValueType.UINT8, [7])])])],
  ["ключ.юникод", gv.str("значение")],
  ["模型.名字", gv.u32(7)],
  ["emoji.😀", gv.bool(true)],
];

function randomBytes(length: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24));
}

interface TestTensor {
  name: string;
  dims: number[];
  type: GgmlType;
}

const tensorShapes: TestTensor[] = [
  { name: "odd.f32", dims: [7], type: GgmlType.F32 },
  { name: "token_embd.weight", dims: [64, 3], type: GgmlType.Q4_0 },
  { name: "blk.0.ffn_gate_exps.weight", dims: [32, 2, 2], type: GgmlType.Q8_0 },
  { name: "four.dims.bf16", dims: [3, 1, 2, 5], type: GgmlType.BF16 },
  { name: "empty.q8_0", dims: [32, 0], type: GgmlType.Q8_0 },
  { name: "k.quant", dims: [256, 2], type: GgmlType.Q4_K },
  { name: "ünïcode.тензор", dims: [5], type: GgmlType.F16 },
  { name: "bytes.i8", dims: [13], type: GgmlType.I8 },
];

/** The tensors with data, emitted by each producer in uneven chunks. */
function tensorSpecs(seed: number): (GgufTensorSpec & { data: Uint8Array })[] {
  return tensorShapes.map((t, i) => {
    const data = randomBytes(ggmlRowBytes(t.type, t.dims[0]!) * t.dims.slice(1).reduce((a, b) => a * b, 1), seed + i);
    return {
      ...t,
      data,
      produce(emit) {
        for (let at = 0; at < data.length; at += 11) emit(data.subarray(at, Math.min(data.length, at + 11)));
      },
    };
  });
}

for (const version of [2, 3] as const) {
  for (const alignment of [32, 64, 4096]) {
    test(`GGUF v${version}, alignment ${alignment}: write then read gives back metadata, tensors and data`, () => {
      const path = join(dir, `v${version}-a${alignment}.gguf`);
      const entries: [string, GgufValue][] = alignment === 32 ? metadata : [...metadata, ["general.alignment", gv.u32(alignment)]];
      const tensors = tensorSpecs(version * 10000 + alignment);
      writeGguf(path, { version, alignment, metadata: entries, tensors });

      const file = GgufFile.open(path);
      try {
        assert.equal(file.version, version);
        assert.equal(file.alignment, alignment);
        assert.deepEqual([...file.metadata.keys()], entries.map(([k]) => k));
        for (const [key, value] of entries) assert.deepEqual(exact(file.metadata.get(key)!), exact(value), key);
        assert.equal(typeof file.metadata.get("u64.above_2^53")!.value, "bigint");

        assert.equal(file.dataOffset % alignment, 0);
        assert.deepEqual(file.tensors.map((t) => t.name), tensors.map((t) => t.name));
        // Offsets as ggml's reader demands: consecutive, each tensor padded to the alignment.
        let expectedOffset = 0;
        for (const [i, t] of file.tensors.entries()) {
          const spec = tensors[i]!;
          assert.deepEqual(t.dims, spec.dims);
          assert.equal(t.type, spec.type);
          assert.equal(t.relativeOffset, expectedOffset, `${t.name} offset`);
          assert.equal(t.offset, file.dataOffset + t.relativeOffset);
          assert.equal(t.byteLength, spec.data.length);
          assert.equal(t.elementCount, spec.dims.reduce((a, b) => a * b, 1));
          const back = new Uint8Array(t.byteLength!);
          file.readTensor(t, back);
          assert.deepEqual(back, spec.data, `${t.name} data`);
          expectedOffset += Math.ceil(t.byteLength / alignment) * alignment;
        }
        assert.equal(statSync(path).size, file.dataOffset + expectedOffset, "the last tensor is padded too");
      } finally {
        file.close();
      }
    });
  }
}

test("a tensor read can start inside the tensor and a closed file refuses reads", () => {
  const path = join(dir, "partial-read.gguf");
  const data = randomBytes(4 * 64, 5);
  writeGguf(path, { metadata: [], tensors: [{ name: "t", dims: [64], type: GgmlType.F32, produce: (emit) => emit(data) }] });
  const file = GgufFile.open(path);
  const t = file.tensor("t");
  const middle = new Uint8Array(100);
  file.readTensor(t, middle, 17);
  assert.deepEqual(middle, data.subarray(17, 117));
  file.close();
  assert.throws(() => file.readTensor(t, middle), /read after close/);
});

test("with checkData off, a header alone opens (the data need not be there yet)", () => {
  const path = join(dir, "header-only.gguf");
  const tensors = tensorSpecs(3);
  writeGguf(path, { metadata: [["general.name", gv.str("h")]], tensors });
  const whole = GgufFile.open(path);
  const headerOnly = join(dir, "header-only-cut.gguf");
  writeFileSync(headerOnly, readFileSync(path).subarray(0, whole.dataOffset));
  assert.throws(() => GgufFile.open(headerOnly), /lies beyond the end of the file/);
  const header = GgufFile.open(headerOnly, { checkData: false });
  assert.deepEqual(
    header.tensors.map((t) => [t.name, t.offset, t.byteLength]),
    whole.tensors.map((t) => [t.name, t.offset, t.byteLength]),
  );
  header.close();
  whole.close();
});

test("the writer refuses values it would otherwise store changed, and inconsistent layouts", () => {
  const path = join(dir, "refused.gguf");
  const write = (metadata: [string, GgufValue][], options: { alignment?: number; tensors?: GgufTensorSpec[] } = {}) => () =>
    writeGguf(path, { metadata, tensors: options.tensors ?? [], ...(options.alignment ? { alignment: options.alignment } : {}) });
  const refused = (field: string, problem: RegExp) => (e: unknown) =>
    e instanceof GgufError && e.file === path && e.field === field && problem.test(e.message);
  assert.throws(write([["k", gv.u8(256)]]), refused("k", /256 is not representable as UINT8/));
  assert.throws(write([["k", gv.i32(1.5)]]), refused("k", /not representable as INT32/));
  assert.throws(write([["k", gv.u64(-1n)]]), refused("k", /not representable as UINT64/));
  assert.throws(write([["k", gv.i32s([1, 2 ** 31])]]), refused("k[1]", /not representable as INT32/));
  assert.throws(write([["k", gv.str("lone \ud800 surrogate")]]), refused("k", /lone surrogate/));
  assert.throws(write([["k", gv.u8(1)], ["k", gv.u8(2)]]), refused("k", /duplicate/));
  assert.throws(write([["k", gv.array(GgufValueType.ARRAY, [gv.u8(1)])]]), refused("k[0]", /array values/));
  assert.throws(write([], { alignment: 64 }), refused("general.alignment", /must be recorded/));
  assert.throws(write([["general.alignment", gv.u32(64)]], { alignment: 128 }), refused("general.alignment", /must be recorded/));
  assert.throws(write([["general.alignment", gv.u32(48)]]), refused("general.alignment", /power of two/));
  assert.throws(write([["general.alignment", gv.u64(32n)]]), refused("general.alignment", /UINT32/));
  const tensor = (name: string, dims: number[], type = GgmlType.F32, bytes = 4 * dims.reduce((a, b) => a * b, 1)): GgufTensorSpec => ({
    name,
    dims,
    type,
    produce: (emit) => emit(new Uint8Array(bytes)),
  });
  assert.throws(write([], { tensors: [tensor("t", [1]), tensor("t", [1])] }), refused("tensor t", /duplicate/));
  assert.throws(write([], { tensors: [tensor("t", [1, 1, 1, 1, 1])] }), refused("tensor t.n_dims", /1..4/));
  assert.throws(write([], { tensors: [tensor("t", [31], GgmlType.Q4_0, 18)] }), refused("tensor t.dims[0]", /block size/));
  assert.throws(write([], { tensors: [tensor("t", [4], GgmlType.F32, 15)] }), refused("tensor t", /wrote 15 bytes, expected 16/));
});

/** ggml rejects nested arrays, and strings cross the FFI as C strings, which end at a NUL. */
const ggmlComparable = metadata.filter(
  ([, v]) =>
    !(v.type === GgufValueType.ARRAY && v.itemType === GgufValueType.ARRAY) &&
    !(v.type === GgufValueType.STRING && (v.value as string).includes("\0")),
);

test("ggml's own GGUF reader reads what the writer wrote", needsOracle, () => {
  const base = ggmlBase();
  const path = join(dir, "for-ggml.gguf");
  const entries: [string, GgufValue][] = [...ggmlComparable, ["general.alignment", gv.u32(64)]];
  const tensors = tensorSpecs(77);
  writeGguf(path, { metadata: entries, tensors });
  const seen = base.readGguf(path);
  assert.ok(seen, "ggml rejected the file");
  const ours = GgufFile.open(path);
  try {
    assert.equal(seen.version, 3);
    assert.equal(seen.alignment, 64);
    assert.equal(seen.dataOffset, ours.dataOffset);
    assert.deepEqual([...seen.kv.keys()], entries.map(([k]) => k));
    for (const [key, value] of entries) {
      const theirs: { type: number; itemType?: number; bytes?: Uint8Array; strings?: string[] } = seen.kv.get(key)!;
      assert.equal(theirs.type, value.type, key);
      if (value.type === GgufValueType.ARRAY) assert.equal(theirs.itemType, value.itemType, key);
      assert.deepEqual(theirs.strings ?? theirs.bytes, encodedPayload(value), key);
    }
    assert.deepEqual(
      seen.tensors,
      ours.tensors.map((t) => ({ name: t.name, type: t.type, ne: [0, 1, 2, 3].map((d) => t.dims[d] ?? 1), offset: t.relativeOffset, size: t.byteLength })),
    );
  } finally {
    ours.close();
  }
});

/** What ggml stores for a value: strings as text, everything else as little-endian bytes. */
function encodedPayload(value: GgufValue): string[] | Uint8Array {
  const items = (value.type === GgufValueType.ARRAY ? value.value : [value.value]) as unknown[];
  const type = value.type === GgufValueType.ARRAY ? value.itemType : value.type;
  if (type === GgufValueType.STRING) return items as string[];
  const width = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 }[type as number]!;
  const bytes = new Uint8Array(items.length * width);
  const view = new DataView(bytes.buffer);
  items.forEach((v, i) => {
    const at = i * width;
    switch (type) {
      case GgufValueType.UINT8: return view.setUint8(at, v as number);
      case GgufValueType.INT8: return view.setInt8(at, v as number);
      case GgufValueType.UINT16: return view.setUint16(at, v as number, true);
      case GgufValueType.INT16: return view.setInt16(at, v as number, true);
      case GgufValueType.UINT32: return view.setUint32(at, v as number, true);
      case GgufValueType.INT32: return view.setInt32(at, v as number, true);
      case GgufValueType.FLOAT32: return view.setFloat32(at, v as number, true);
      case GgufValueType.BOOL: return view.setUint8(at, v ? 1 : 0);
      case GgufValueType.UINT64: return view.setBigUint64(at, v as bigint, true);
      case GgufValueType.INT64: return view.setBigInt64(at, v as bigint, true);
      case GgufValueType.FLOAT64: return view.setFloat64(at, v as number, true);
    }
  });
  return bytes;
}

test("the reader reads what ggml's own GGUF writer wrote", needsOracle, () => {
  const base = ggmlBase();
  const path = join(dir, "from-ggml.gguf");
  const flat = ggmlComparable;
  // ggml's writer asserts that every tensor has data, which an empty tensor has not.
  const tensors = tensorSpecs(99).filter((t) => t.data.length > 0);
  base.writeGguf(path, {
    kv: flat.map(([key, value]) => {
      if (value.type === GgufValueType.STRING) return { key, string: value.value as string };
      if (value.type !== GgufValueType.ARRAY) return { key, type: value.type, bytes: encodedPayload(value) as Uint8Array };
      if (value.itemType === GgufValueType.STRING) return { key, strings: value.value as string[] };
      return { key, itemType: value.itemType, bytes: encodedPayload(value) as Uint8Array, n: value.value.length };
    }),
    tensors: tensors.map((t) => ({ name: t.name, type: t.type, ne: t.dims, data: t.data })),
  });
  const file = GgufFile.open(path);
  try {
    assert.equal(file.alignment, 32);
    assert.deepEqual([...file.metadata.keys()], flat.map(([k]) => k));
    for (const [key, value] of flat) assert.deepEqual(exact(file.metadata.get(key)!), exact(value), key);
    assert.deepEqual(file.tensors.map((t) => [t.name, t.dims, t.type]), tensors.map((t) => [t.name, t.dims, t.type]));
    for (const [i, t] of file.tensors.entries()) {
      const back = new Uint8Array(t.byteLength!);
      file.readTensor(t, back);
      assert.deepEqual(back, tensors[i]!.data, t.name);
    }
  } finally {
    file.close();
  }
});
