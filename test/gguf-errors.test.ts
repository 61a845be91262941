import { after, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufError } from "../src/gguf/errors.js";
import { GgufFile } from "../src/gguf/reader.js";
import { gv, writeGguf } from "../src/gguf/writer.js";
import { GgmlType, GgufValueType, ggmlTypeName } from "../src/gguf/types.js";

const dir = mkdtempSync(join(tmpdir(), "gguf-errors-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const T = GgufValueType;

/** Little-endian bytes, built field by field, so a test can write any header, valid or not. */
class Bytes {
  private readonly parts: number[] = [];
  u8(v: number) { this.parts.push(v & 0xff); return this; }
  u32(v: number) { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); return this; }
  u64(v: bigint | number) {
    const b = BigInt.asUintN(64, BigInt(v));
    for (let i = 0n; i < 8n; i++) this.parts.push(Number((b >> (8n * i)) & 0xffn));
    return this;
  }
  raw(bytes: ArrayLike<number>) { for (let i = 0; i < bytes.length; i++) this.parts.push(bytes[i]!); return this; }
  str(s: string) { const b = new TextEncoder().encode(s); return this.u64(b.length).raw(b); }
  get length() { return this.parts.length; }
  build() { return Uint8Array.from(this.parts); }
}

interface RawTensor {
  name: string;
  dims: (number | bigint)[];
  type: number;
  offset: number | bigint;
}

/**
 * A GGUF file with exactly the given fields: key/value pairs are written by callbacks (type tag
 * included), counts default to the real ones, and `dataBytes` of zeros follow the header, which
 * is padded to `alignment`.
 */
function rawGguf(spec: {
  magic?: number;
  version?: number;
  tensorCount?: bigint | number;
  kvCount?: bigint | number;
  kvs?: [string, (b: Bytes) => void][];
  tensors?: RawTensor[];
  alignment?: number;
  dataBytes?: number;
}): Uint8Array {
  const kvs = spec.kvs ?? [];
  const tensors = spec.tensors ?? [];
  const b = new Bytes().u32(spec.magic ?? 0x46554747).u32(spec.version ?? 3);
  b.u64(spec.tensorCount ?? tensors.length).u64(spec.kvCount ?? kvs.length);
  for (const [key, value] of kvs) value(b.str(key));
  for (const t of tensors) {
    b.str(t.name).u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  const alignment = spec.alignment ?? 32;
  b.raw(new Uint8Array((alignment - (b.length % alignment)) % alignment));
  return b.raw(new Uint8Array(spec.dataBytes ?? 0)).build();
}

let fileCounter = 0;
function save(bytes: Uint8Array): string {
  const path = join(dir, `case-${fileCounter++}.gguf`);
  writeFileSync(path, bytes);
  return path;
}

/** Opening must fail with a GgufError naming this file and `field`, whose message matches `problem`. */
function assertRejected(bytes: Uint8Array | string, field: string | RegExp, problem: RegExp): GgufError {
  const path = typeof bytes === "string" ? bytes : save(bytes);
  let caught: unknown;
  try {
    GgufFile.open(path).close();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof GgufError, `expected a GgufError, got ${String(caught)}`);
  assert.equal(caught.file, path);
  assert.ok(caught.message.startsWith(`${path}: `), caught.message);
  if (typeof field === "string") assert.equal(caught.field, field, caught.message);
  else assert.match(caught.field, field, caught.message);
  assert.ok(caught.message.includes(caught.field), caught.message);
  assert.match(caught.message, problem);
  return caught;
}

const u32kv = (v: number) => (b: Bytes) => b.u32(T.UINT32).u32(v);
const f32Tensor = (name: string, elements: number, offset: number | bigint): RawTensor => ({ name, dims: [elements], type: GgmlType.F32, offset });

test("a well-formed raw file opens, so the failures below come from the one field each changes", () => {
  const path = save(rawGguf({ kvs: [["a", u32kv(1)]], tensors: [f32Tensor("t", 8, 0)], dataBytes: 32 }));
  const file = GgufFile.open(path);
  assert.equal(file.metadata.getInteger("a"), 1);
  assert.equal(file.tensor("t").byteLength, 32);
  file.close();
});

test("not a GGUF file, or not a readable one", () => {
  assertRejected(rawGguf({ magic: 0x47554747 }), "magic", /expected "GGUF", got "GGUG"/);
  assertRejected(new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1]), "magic", /got "\\x7fELF"/);
  assertRejected(new Uint8Array(0), "magic", /truncated/);
  assertRejected(join(dir, "does-not-exist.gguf"), "file", /cannot open/);
  const directory = join(dir, "a-directory.gguf");
  mkdirSync(directory);
  assertRejected(directory, "file", /not a regular file/);
});

test("unsupported versions", () => {
  for (const version of [0, 1, 4, 0x03000000]) {
    assertRejected(rawGguf({ version }), "version", new RegExp(`unsupported GGUF version ${version}, expected 2 or 3`));
  }
  assertRejected(rawGguf({ version: 0x03000000 }), "version", /big-endian/);
});

test("a file cut anywhere before the end of its last tensor is rejected; cut in the padding after, it opens", () => {
  const path = join(dir, "whole.gguf");
  writeGguf(path, {
    metadata: [["general.name", gv.str("cut")], ["list", gv.strings(["a", "bc"])], ["nested", gv.array(T.ARRAY, [gv.u32s([1])])]],
    tensors: [
      { name: "a", dims: [5], type: GgmlType.F32, produce: (emit) => emit(new Uint8Array(20)) },
      { name: "b", dims: [32], type: GgmlType.Q8_0, produce: (emit) => emit(new Uint8Array(34)) },
    ],
  });
  const whole = GgufFile.open(path);
  const end = whole.tensor("b").offset + 34;
  whole.close();
  const bytes = new Uint8Array(readFileSync(path));
  const cutPath = join(dir, "cut.gguf");
  for (let cut = 0; cut < bytes.length; cut++) {
    writeFileSync(cutPath, bytes.subarray(0, cut));
    if (cut >= end) {
      GgufFile.open(cutPath).close();
      continue;
    }
    const inHeader = /truncated header|is impossible in a file of|beyond the end/;
    const error = assertRejected(cutPath, /./, cut < whole.dataOffset ? inHeader : /beyond the end/);
    if (cut < 24) assert.match(error.field, /^(magic|version|tensor_count|metadata_kv_count)$/);
  }
});

test("tensor data beyond the end of the file, or outside any possible file", () => {
  assertRejected(rawGguf({ tensors: [f32Tensor("t", 8, 0)], dataBytes: 31 }), "tensor t", /\[\d+, \d+\) lies beyond the end of the file/);
  assertRejected(rawGguf({ tensors: [f32Tensor("t", 8, 2 ** 40)], dataBytes: 32 }), "tensor t", /beyond the end/);
  assertRejected(rawGguf({ tensors: [f32Tensor("t", 8, 2n ** 63n)], dataBytes: 32 }), "tensor t.offset", /offset 9223372036854775808 is beyond 2\^53/);
});

test("a tensor of a type this ggml does not know is kept, named, and unreadable", () => {
  for (const type of [4, 5, 31, 43, 57, 1000]) {
    const path = save(rawGguf({ tensors: [{ name: "t", dims: [33], type, offset: 0 }, f32Tensor("after", 8, 64)], dataBytes: 96 }));
    const file = GgufFile.open(path);
    try {
      const t = file.tensor("t");
      assert.equal(t.type, type);
      assert.equal(t.byteLength, undefined);
      assert.equal(ggmlTypeName(t.type), `${type} (unknown)`);
      assert.throws(() => file.readTensor(t, new Uint8Array(4)), new RegExp(`tensor t: type ${type} \\(unknown\\): its size is unknown`));
      assert.equal(file.tensor("after").offset, file.dataOffset + 64);
    } finally {
      file.close();
    }
  }
  // Its start must still lie in the file and outside other tensors.
  assertRejected(rawGguf({ tensors: [{ name: "t", dims: [32], type: 57, offset: 64 }], dataBytes: 32 }), "tensor t", /beyond the end of the file/);
  assertRejected(rawGguf({ tensors: [f32Tensor("a", 16, 0), { name: "t", dims: [32], type: 57, offset: 32 }], dataBytes: 96 }), "tensor a", /overlaps tensor t/);
});

test("unknown value types", () => {
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(13).u32(0)]] }), "k", /unknown value type 13 \(expected 0..12\)/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(0xffffffff)]] }), "k", /unknown value type 4294967295/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.ARRAY).u32(99).u64(0)]] }), "k", /unknown array element type 99/);
});

test("overlapping, misaligned and duplicate tensors", () => {
  assertRejected(rawGguf({ tensors: [f32Tensor("a", 16, 0), f32Tensor("b", 8, 32)], dataBytes: 96 }), "tensor a", /overlaps tensor b/);
  assertRejected(rawGguf({ tensors: [f32Tensor("a", 8, 32), f32Tensor("b", 16, 0)], dataBytes: 96 }), "tensor b", /overlaps tensor a/);
  assertRejected(rawGguf({ tensors: [f32Tensor("a", 8, 0), f32Tensor("b", 8, 0)], dataBytes: 64 }), /^tensor [ab]$/, /overlaps/);
  assertRejected(rawGguf({ tensors: [f32Tensor("a", 8, 16)], dataBytes: 64 }), "tensor a.offset", /16 is not a multiple of the alignment 32/);
  const aligned64 = rawGguf({ kvs: [["general.alignment", u32kv(64)]], tensors: [f32Tensor("a", 8, 32)], alignment: 64, dataBytes: 128 });
  assertRejected(aligned64, "tensor a.offset", /32 is not a multiple of the alignment 64/);
  assertRejected(rawGguf({ tensors: [f32Tensor("a", 8, 0), f32Tensor("a", 8, 32)], dataBytes: 64 }), "tensor a", /duplicate tensor name/);
  // Empty tensors take no bytes, so sharing an offset with one is no overlap.
  const path = save(rawGguf({ tensors: [f32Tensor("a", 8, 0), { name: "empty", dims: [0, 4], type: GgmlType.F32, offset: 0 }], dataBytes: 32 }));
  GgufFile.open(path).close();
});

test("absurd counts and lengths are refused before anything is allocated for them", () => {
  assertRejected(rawGguf({ tensorCount: 2n ** 60n }), "tensor_count", /tensor count 1152921504606846976 is impossible in a file of \d+ bytes/);
  assertRejected(rawGguf({ kvCount: 2n ** 64n - 1n }), "metadata_kv_count", /metadata count 18446744073709551615 is impossible/);
  const longKey = new Bytes().u32(0x46554747).u32(3).u64(0).u64(1).u64(2n ** 63n).raw(new Uint8Array(64)).build();
  assertRejected(longKey, "metadata[0].key", /string length 9223372036854775808 is impossible/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.STRING).u64(2n ** 63n)]] }), "k", /string length 9223372036854775808 is impossible/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.ARRAY).u32(T.UINT8).u64(2n ** 40n)]] }), "k", /array length 1099511627776 is impossible/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.ARRAY).u32(T.STRING).u64(4).u64(1).raw([65]).u64(2n ** 62n)]] }), "k[1]", /string length/);
  const hugeDims = { name: "t", dims: [2n ** 32n, 2n ** 32n], type: GgmlType.F32, offset: 0 };
  assertRejected(rawGguf({ tensors: [hugeDims], dataBytes: 32 }), "tensor t.dims", /more than 2\^53 elements/);
  const wrapping = { name: "t", dims: [2n ** 63n, 2n], type: GgmlType.I8, offset: 0 };
  assertRejected(rawGguf({ tensors: [wrapping], dataBytes: 32 }), "tensor t.dims[0]", /dimension 9223372036854775808 is beyond 2\^53/);
  // A zero dimension makes the product small, but every dimension must still be exact.
  const hiddenByZero = { name: "t", dims: [0, 2n ** 60n], type: GgmlType.F32, offset: 0 };
  assertRejected(rawGguf({ tensors: [hiddenByZero], dataBytes: 32 }), "tensor t.dims[1]", /beyond 2\^53/);
  let deep = (b: Bytes) => b.u32(T.UINT8).u64(0);
  for (let i = 0; i < 10; i++) {
    const inner = deep;
    deep = (b) => inner(b.u32(T.ARRAY).u64(1));
  }
  assertRejected(rawGguf({ kvs: [["k", (b) => deep(b.u32(T.ARRAY))]] }), /^k(\[0\])*$/, /nested more than 8 deep/);
});

test("lengths a big file could hold but no JS string or sane array can are refused too", () => {
  // Sparse files: the lengths fit in them, so only the limits stop the allocation.
  const sparse = (header: Uint8Array, size: number) => {
    const path = join(dir, `sparse-${fileCounter++}.gguf`);
    const fd = openSync(path, "w");
    writeSync(fd, header);
    ftruncateSync(fd, size);
    closeSync(fd);
    return path;
  };
  const stringHeader = new Bytes().u32(0x46554747).u32(3).u64(0).u64(1).str("k").u32(T.STRING).u64(2 ** 28 + 1).build();
  assertRejected(sparse(stringHeader, 2 ** 28 + 4096), "k", /string length 268435457 exceeds the limit of 268435456 bytes/);
  const arrayHeader = new Bytes().u32(0x46554747).u32(3).u64(0).u64(1).str("k").u32(T.ARRAY).u32(T.UINT8).u64(2 ** 26 + 1).build();
  assertRejected(sparse(arrayHeader, 2 ** 26 + 4096), "k", /array length 67108865 exceeds the limit of 67108864 elements/);
});

test("dimension counts and block sizes", () => {
  for (const dims of [[], [1, 1, 1, 1, 1]]) {
    assertRejected(rawGguf({ tensors: [{ name: "t", dims, type: GgmlType.F32, offset: 0 }], dataBytes: 32 }), "tensor t.n_dims", new RegExp(`expected 1..4 dimensions, got ${dims.length}`));
  }
  const q4 = { name: "t", dims: [31, 2], type: GgmlType.Q4_0, offset: 0 };
  assertRejected(rawGguf({ tensors: [q4], dataBytes: 64 }), "tensor t.dims[0]", /31 is not a multiple of the Q4_0 block size 32/);
  const k = { name: "t", dims: [128], type: GgmlType.Q4_K, offset: 0 };
  assertRejected(rawGguf({ tensors: [k], dataBytes: 256 }), "tensor t.dims[0]", /128 is not a multiple of the Q4_K block size 256/);
});

test("duplicate keys, bad bools", () => {
  assertRejected(rawGguf({ kvs: [["k", u32kv(1)], ["k", u32kv(2)]] }), "k", /duplicate metadata key/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.BOOL).u8(2)]] }), "k", /bool must be 0 or 1, got 2/);
  assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.ARRAY).u32(T.BOOL).u64(3).raw([0, 1, 255])]] }), "k[2]", /bool must be 0 or 1, got 255/);
});

test("strings must be UTF-8 (strictly: llama.cpp does not check, but U+FFFD replacement would merge vocabulary entries)", () => {
  const bad = [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80]];
  for (const bytes of bad) {
    const asKey = new Bytes().u32(0x46554747).u32(3).u64(0).u64(1).u64(bytes.length).raw(bytes).u32(T.UINT8).u8(0);
    assertRejected(asKey.build(), "metadata[0].key", /not valid UTF-8/);
    assertRejected(rawGguf({ kvs: [["k", (b) => b.u32(T.STRING).u64(bytes.length).raw(bytes)]] }), "k", /not valid UTF-8/);
    const inArray = (b: Bytes) => b.u32(T.ARRAY).u32(T.STRING).u64(2).str("fine").u64(bytes.length).raw(bytes);
    assertRejected(rawGguf({ kvs: [["k", inArray]] }), "k[1]", /not valid UTF-8/);
    const name = new Bytes().u32(0x46554747).u32(3).u64(1).u64(0).u64(bytes.length).raw(bytes).u32(1).u64(8).u32(0).u64(0);
    assertRejected(name.raw(new Uint8Array(64)).build(), "tensor[0].name", /not valid UTF-8/);
  }
});

test("general.alignment must be a u32 power of two", () => {
  for (const alignment of [0, 3, 48, 0xc0000000]) {
    assertRejected(rawGguf({ kvs: [["general.alignment", u32kv(alignment)]] }), "general.alignment", new RegExp(`expected a power of two, got ${alignment}`));
  }
  const wrongType: [string, (b: Bytes) => void][] = [
    ["UINT64", (b) => b.u32(T.UINT64).u64(32)],
    ["INT32", (b) => b.u32(T.INT32).u32(32)],
    ["STRING", (b) => b.u32(T.STRING).str("32")],
    ["array of UINT32", (b) => b.u32(T.ARRAY).u32(T.UINT32).u64(1).u32(32)],
  ];
  for (const [name, value] of wrongType) {
    assertRejected(rawGguf({ kvs: [["general.alignment", value]] }), "general.alignment", new RegExp(`expected a UINT32, got ${name}`));
  }
});

test("accessors name the missing or wrongly typed key and what they expected", () => {
  const path = save(
    rawGguf({
      kvs: [
        ["s", (b) => b.u32(T.STRING).str("text")],
        ["n", u32kv(5)],
        ["big", (b) => b.u32(T.UINT64).u64(2n ** 60n)],
        ["bigs", (b) => b.u32(T.ARRAY).u32(T.UINT64).u64(2).u64(1).u64(2n ** 64n - 1n)],
        ["floats", (b) => b.u32(T.ARRAY).u32(T.FLOAT32).u64(1).u32(0x3f800000)],
      ],
    }),
  );
  const file = GgufFile.open(path);
  const m = file.metadata;
  const named = (key: string, problem: RegExp) => (e: unknown) =>
    e instanceof GgufError && e.file === path && e.field === key && e.message.includes(`${path}: ${key}`) && problem.test(e.message);
  assert.throws(() => m.getString("general.missing"), named("general.missing", /missing metadata key \(expected a string\)/));
  assert.throws(() => m.getInteger("gone"), named("gone", /missing metadata key \(expected an integer\)/));
  assert.throws(() => m.getString("n"), named("n", /expected a string, got UINT32/));
  assert.throws(() => m.getInteger("s"), named("s", /expected an integer, got STRING/));
  assert.throws(() => m.getNumber("s"), named("s", /expected a number, got STRING/));
  assert.throws(() => m.getBool("n"), named("n", /expected a bool, got UINT32/));
  assert.throws(() => m.getStringArray("floats"), named("floats", /expected an array of strings, got array of FLOAT32/));
  assert.throws(() => m.getNumberArray("s"), named("s", /expected an array of numbers, got STRING/));
  assert.throws(() => m.getIntegerOrArray("floats"), named("floats", /expected an integer or an array of integers/));
  assert.throws(() => m.getInteger("big"), named("big", /integer 1152921504606846976 is out of range/));
  assert.throws(() => m.getNumberArray("bigs"), named("bigs[1]", /integer 18446744073709551615 is out of range/));
  assert.throws(() => file.tensor("absent"), named("tensor absent", /missing from the file/));
  assert.equal(m.getNumber("n"), 5);
  assert.deepEqual(m.getNumberArray("floats"), [1]);
  assert.equal(m.optionalString("general.missing"), undefined);
  file.close();
});

test("reads outside a tensor are refused", () => {
  const path = save(rawGguf({ tensors: [f32Tensor("t", 8, 0)], dataBytes: 32 }));
  const file = GgufFile.open(path);
  const t = file.tensor("t");
  assert.throws(() => file.readTensor(t, new Uint8Array(33)), (e: unknown) => e instanceof GgufError && /read of \[0, 33\) outside its 32 bytes/.test(e.message));
  assert.throws(() => file.readTensor(t, new Uint8Array(1), 32), GgufError);
  assert.throws(() => file.readAt(0, file.fileSize - 4, new Uint8Array(8)), (e: unknown) => e instanceof GgufError && /file ends before byte/.test(e.message));
  file.close();
});
