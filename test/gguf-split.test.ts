import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, truncateSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufError } from "../src/gguf/errors.js";
import { GgufFile } from "../src/gguf/reader.js";
import { splitSuffix } from "../src/gguf/split.js";
import { GgmlType, GgufValue, GgufValueType } from "../src/gguf/types.js";
import { GgufTensorSpec, fromBytes, gv, writeGguf, writeGgufSplit } from "../src/gguf/writer.js";
import { ggmlBase } from "./helpers/ggml-ffi.js";

const dir = mkdtempSync(join(tmpdir(), "gguf-split-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const ggml = ggmlBase();
const skipGgml = typeof ggml === "string" ? ggml : false;

/** F32 tensors of different sizes, each filled with values that identify it. */
function tensors(sizes: number[]): (GgufTensorSpec & { data: Uint8Array })[] {
  return sizes.map((values, i) => {
    const data = new Uint8Array(new Float32Array(values).map((_, j) => i * 1000 + j).buffer);
    return { name: `t${i}`, dims: [values], type: GgmlType.F32, data, produce: fromBytes(data) };
  });
}

const metadata: [string, GgufValue][] = [
  ["general.architecture", gv.str("smallthinker")],
  ["general.name", gv.str("split test")],
  ["some.count", gv.u32(7)],
  ["some.list", gv.strings(["a", "b", "c"])],
];

let cases = 0;
function prefix(): string {
  return join(dir, `model${++cases}`);
}

function assertRejected(path: string, field: string, message: RegExp): GgufError {
  try {
    GgufFile.open(path).close();
  } catch (error) {
    assert.ok(error instanceof GgufError, `expected a GgufError, got ${error}`);
    assert.equal(error.field, field, error.message);
    assert.match(error.message, message);
    return error;
  }
  assert.fail(`${path} was accepted`);
}

test("a split model opens from its first part as one file: the first part's metadata, every part's tensors", () => {
  const specs = tensors([64, 8, 8, 200, 8, 40, 8]);
  const paths = writeGgufSplit(prefix(), { metadata, tensors: specs }, { parts: 3 });
  assert.deepEqual(paths.map((p) => p.slice(-20)), ["-00001-of-00003.gguf", "-00002-of-00003.gguf", "-00003-of-00003.gguf"]);
  const file = GgufFile.open(paths[0]!);
  try {
    assert.deepEqual(file.paths, paths);
    assert.equal(file.fileSize, paths.reduce((sum, p) => sum + statSync(p).size, 0));
    assert.deepEqual([...file.metadata.keys()], [...metadata.map(([k]) => k), "split.no", "split.count", "split.tensors.count"]);
    assert.deepEqual(file.tensors.map((t) => t.name), specs.map((t) => t.name));
    // Each tensor in the third its middle byte falls in: t3 (200 of 336 values) is the second third.
    assert.deepEqual(file.tensors.map((t) => t.part), [0, 0, 0, 1, 2, 2, 2]);
    assert.deepEqual(file.parts.map((p) => p.tensorCount), [3, 1, 3]);
    for (const [i, t] of file.tensors.entries()) {
      const back = new Uint8Array(t.byteLength!);
      file.readTensor(t, back);
      assert.deepEqual(back, specs[i]!.data, t.name);
      assert.ok(t.offset >= file.parts[t.part]!.dataOffset, `${t.name} lies in its part's data section`);
    }
  } finally {
    file.close();
  }
});

test("every part is byte for byte what ggml's writer makes of llama-gguf-split's recipe, and ggml reads the split keys as u16, u16, i32", { skip: skipGgml }, () => {
  const base = typeof ggml === "string" ? undefined : ggml;
  const specs = tensors([32, 96, 64, 64, 32]);
  const paths = writeGgufSplit(prefix(), { metadata, tensors: specs }, { parts: 2 });
  const file = GgufFile.open(paths[0]!);
  const partOf = file.tensors.map((t) => t.part);
  file.close();
  // gguf-split: the first part gets every key (gguf_set_kv), then each part split.no, split.count, split.tensors.count.
  const u16 = (v: number) => new Uint8Array(new Uint16Array([v]).buffer);
  const i32 = (v: number) => new Uint8Array(new Int32Array([v]).buffer);
  paths.forEach((path, part) => {
    const kv = [
      ...(part === 0 ? [
        { key: "general.architecture", string: "smallthinker" },
        { key: "general.name", string: "split test" },
        { key: "some.count", type: GgufValueType.UINT32, bytes: new Uint8Array(new Uint32Array([7]).buffer) },
        { key: "some.list", strings: ["a", "b", "c"] },
      ] : []),
      { key: "split.no", type: GgufValueType.UINT16, bytes: u16(part) },
      { key: "split.count", type: GgufValueType.UINT16, bytes: u16(2) },
      { key: "split.tensors.count", type: GgufValueType.INT32, bytes: i32(specs.length) },
    ];
    const theirs = join(dir, `ggml-part${part}.gguf`);
    base!.writeGguf(theirs, { kv, tensors: specs.filter((_, i) => partOf[i] === part).map((t) => ({ name: t.name, type: t.type, ne: t.dims, data: t.data })) });
    assert.deepEqual(readFileSync(path), readFileSync(theirs), `part ${part + 1}`);
    const seen = base!.readGguf(path)!;
    assert.deepEqual([seen.kv.get("split.no")!.type, seen.kv.get("split.count")!.type, seen.kv.get("split.tensors.count")!.type], [GgufValueType.UINT16, GgufValueType.UINT16, GgufValueType.INT32]);
  });
});

test("the first part of as many parts as tensors, and a largest tensor that is most of the model", () => {
  for (const sizes of [[8, 8, 8], [4000, 8, 8, 8], [8, 8, 8, 4000]]) {
    const paths = writeGgufSplit(prefix(), { metadata, tensors: tensors(sizes) }, { parts: 3 });
    const file = GgufFile.open(paths[0]!);
    try {
      const parts = file.tensors.map((t) => t.part);
      assert.deepEqual([...new Set(parts)], [0, 1, 2], `${sizes}: every part holds a tensor, in order (${parts})`);
    } finally {
      file.close();
    }
  }
  assert.throws(() => writeGgufSplit(prefix(), { metadata, tensors: tensors([8, 8]) }, { parts: 3 }), /cannot split 2 tensors in 3 parts/);
  assert.throws(() => writeGgufSplit(prefix(), { metadata: [...metadata, ["split.count", gv.u16(2)]], tensors: tensors([8, 8]) }, { parts: 2 }), /split\.count: the metadata already has split keys/);
});

test("a later part, a missing part, a renamed first part: each refused naming the file and what to do", () => {
  const paths = writeGgufSplit(prefix(), { metadata, tensors: tensors([8, 8, 8]) }, { parts: 3 });
  assertRejected(paths[1]!, "split.no", /this is part 2 of a model split in 3: load it from its first part \(model\d+-00001-of-00003\.gguf\)/);
  const renamed = join(dir, "renamed.gguf");
  renameSync(paths[0]!, renamed);
  assertRejected(renamed, "split.count", /says it is part 1 of 3, but its name does not end in "-00001-of-00003\.gguf", so its other parts cannot be found/);
  renameSync(renamed, paths[0]!);
  unlinkSync(paths[2]!);
  const missing = assertRejected(paths[0]!, "file", /cannot open \(part 3 of 3 of .*-00001-of-00003\.gguf\)/);
  assert.ok(missing.file.endsWith("-00003-of-00003.gguf"), missing.file);
});

/** Writes parts with split keys of one's choosing (what a broken split holds). */
function writeParts(base: string, parts: { no: number; count: number; total: number; tensors: GgufTensorSpec[] }[]): string[] {
  return parts.map((p, i) => {
    const path = base + splitSuffix(i, parts.length);
    const keys: [string, GgufValue][] = [["split.no", gv.u16(p.no)], ["split.count", gv.u16(p.count)], ["split.tensors.count", gv.i32(p.total)]];
    writeGguf(path, { metadata: i === 0 ? [...metadata, ...keys] : keys, tensors: p.tensors });
    return path;
  });
}

test("parts that contradict each other are refused, naming the part and the key", () => {
  const [a, b, c] = tensors([8, 8, 8]);
  let paths = writeParts(prefix(), [{ no: 0, count: 2, total: 3, tensors: [a!, b!] }, { no: 0, count: 2, total: 3, tensors: [c!] }]);
  assertRejected(paths[0]!, "split.no", /expected 1 \(the file is named as part 2 of 2\), got 0/);
  paths = writeParts(prefix(), [{ no: 0, count: 2, total: 3, tensors: [a!, b!] }, { no: 1, count: 3, total: 3, tensors: [c!] }]);
  assertRejected(paths[0]!, "split.count", /part 2 of 2 says it is one of 3/);
  paths = writeParts(prefix(), [{ no: 0, count: 2, total: 4, tensors: [a!, b!] }, { no: 1, count: 2, total: 4, tensors: [c!] }]);
  const count = assertRejected(paths[0]!, "split.tensors.count", /says 4 tensors, but the 2 parts hold 3/);
  assert.ok(count.file.endsWith("-00001-of-00002.gguf"));
  paths = writeParts(prefix(), [{ no: 0, count: 2, total: 3, tensors: [a!, b!] }, { no: 1, count: 2, total: 3, tensors: [b!] }]);
  const twice = assertRejected(paths[0]!, "tensor t1", /also in .*-00001-of-00002\.gguf: a tensor may be in one part only/);
  assert.ok(twice.file.endsWith("-00002-of-00002.gguf"));
  paths = writeParts(prefix(), [{ no: 0, count: 2, total: 3, tensors: [a!, b!, c!] }]);
  assertRejected(paths[0]!, "split.count", /its name does not end in "-00001-of-00002\.gguf"/);
});

test("a truncated later part is refused naming that part; with checkData off it opens and says which tensors lie beyond the end", () => {
  const paths = writeGgufSplit(prefix(), { metadata, tensors: tensors([8, 64, 8]) }, { parts: 2 });
  truncateSync(paths[1]!, statSync(paths[1]!).size - 16);
  const error = assertRejected(paths[0]!, "tensor t2", /lies beyond the end of the file/);
  assert.ok(error.file.endsWith("-00002-of-00002.gguf"), error.file);
  const file = GgufFile.open(paths[0]!, { checkData: false });
  try {
    assert.deepEqual(file.tensorsBeyondEnd().map((t) => t.name), ["t2"]);
  } finally {
    file.close();
  }
});

test("a file whose split.count is 1 holds the whole model and opens as one; split keys that cannot be are refused", () => {
  const single = join(dir, `single${splitSuffix(0, 1)}`);
  const [a, b] = tensors([8, 8]);
  const keys = (no: number, count: number): [string, GgufValue][] => [["split.no", gv.u16(no)], ["split.count", gv.u16(count)], ["split.tensors.count", gv.i32(2)]];
  writeGguf(single, { metadata: [...metadata, ...keys(0, 1)], tensors: [a!, b!] });
  const file = GgufFile.open(single);
  try {
    assert.deepEqual([file.parts.length, file.tensors.length], [1, 2]);
  } finally {
    file.close();
  }
  const base = prefix();
  const path = base + splitSuffix(0, 2);
  writeGguf(path, { metadata: [...metadata, ...keys(2, 2)], tensors: [a!] });
  assertRejected(path, "split.no", /expected 0\.\.1 \(of split\.count 2\), got 2/);
  writeGguf(path, { metadata: [...metadata, ["split.count", gv.u16(2)]], tensors: [a!] });
  assertRejected(path, "split.no", /missing metadata key/);
});
