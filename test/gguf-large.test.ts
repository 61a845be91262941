import { after, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufFile } from "../src/gguf/reader.js";
import { gv, layoutGguf } from "../src/gguf/writer.js";
import { GgmlType } from "../src/gguf/types.js";

const dir = mkdtempSync(join(tmpdir(), "gguf-large-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const GiB = 2 ** 30;

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff);
}

/**
 * A 6 GiB model as the writer would lay it out, created sparse: the header and the few bytes the
 * test checks are written, the rest is a hole. Two 2 GiB filler tensors push the next tensors
 * past 2^31 and past 2^32 bytes; the 2 GiB filler is also the target of a single 2 GiB read.
 */
const path = join(dir, "large.gguf");
const shapes = [
  { name: "head", dims: [16], type: GgmlType.F32 },
  { name: "filler.a", dims: [2 * GiB], type: GgmlType.I8 },
  { name: "beyond_2gib", dims: [32, 8], type: GgmlType.Q8_0 },
  { name: "filler.b", dims: [GiB, 2], type: GgmlType.I8 },
  { name: "beyond_4gib", dims: [1024], type: GgmlType.F32 },
];
const layout = layoutGguf(path, { metadata: [["general.name", gv.str("large")]], tensors: shapes });
const headerBytes = layout.header.length;
const absolute = (name: string) => headerBytes + layout.tensors[shapes.findIndex((s) => s.name === name)]!.relativeOffset;

/** Bytes the test writes, by absolute position; every other byte of the file is zero. */
const written = new Map<number, Uint8Array>([
  [absolute("head"), pattern(64, 1)],
  [absolute("beyond_2gib"), pattern(8 * 34, 2)],
  [absolute("beyond_4gib"), pattern(4096, 3)],
]);
// Marks in filler.a at its ends and on both sides of the 1 GiB slices a single read is cut into.
const fillerMarks = [0, GiB - 1, GiB, 2 * GiB - 1];
for (const [i, at] of fillerMarks.entries()) written.set(absolute("filler.a") + at, Uint8Array.of(0xa0 + i));

const fd = openSync(path, "w");
writeSync(fd, layout.header, 0, headerBytes, 0);
for (const [position, bytes] of written) writeSync(fd, bytes, 0, bytes.length, position);
ftruncateSync(fd, layout.fileSize);
closeSync(fd);

test("tensors past 2^31 and 2^32 bytes have exact offsets and read back exactly", () => {
  const file = GgufFile.open(path);
  try {
    assert.equal(file.fileSize, layout.fileSize);
    assert.ok(file.tensor("beyond_2gib").offset > 2 ** 31 && file.tensor("beyond_2gib").offset < 2 ** 32);
    assert.ok(file.tensor("beyond_4gib").offset > 2 ** 32);
    for (const name of ["head", "beyond_2gib", "beyond_4gib"]) {
      const t = file.tensor(name);
      assert.equal(t.offset, absolute(name));
      const back = new Uint8Array(t.byteLength!);
      file.readTensor(t, back);
      assert.deepEqual(back, written.get(t.offset), name);
    }
    const tail = new Uint8Array(100);
    file.readTensor(file.tensor("beyond_4gib"), tail, 4096 - 100);
    assert.deepEqual(tail, written.get(absolute("beyond_4gib"))!.subarray(4096 - 100));
  } finally {
    file.close();
  }
});

test("a 2 GiB tensor is read in one call (fs.readSync alone refuses 2 GiB)", () => {
  const file = GgufFile.open(path);
  try {
    const filler = file.tensor("filler.a");
    assert.equal(filler.byteLength, 2 * GiB);
    const target = new Uint8Array(filler.byteLength);
    file.readTensor(filler, target);
    for (const [i, at] of fillerMarks.entries()) assert.equal(target[at], 0xa0 + i, `byte ${at}`);
    // Everything else is the hole's zeros: a mark read to the wrong place would show up here.
    assert.equal(target[1], 0);
    assert.equal(target[GiB + 1], 0);
    assert.equal(target[2 * GiB - 2], 0);
  } finally {
    file.close();
  }
});
