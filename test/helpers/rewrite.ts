import { readFileSync, writeFileSync } from "node:fs";
import { GgufFile } from "../../src/gguf/reader.js";
import { GgmlType, GgufValue, tensorByteLength } from "../../src/gguf/types.js";
import { GgufTensorSpec, writeGguf } from "../../src/gguf/writer.js";

export interface Rewrite {
  dropKeys?: string[];
  setKeys?: [string, GgufValue][];
  dropTensors?: string[];
  /** New dims for a tensor (data is cut or zero-padded to fit). */
  reshape?: Record<string, number[]>;
  /** F32 tensors stored as another type, encoded by `quantize` (rows of `perRow` values). */
  retype?: { types: Record<string, GgmlType>; quantize: (type: GgmlType, values: Float32Array, rows: number, perRow: number) => Uint8Array };
}

/** Copies a GGUF with some metadata or tensors changed, to make deliberately broken files. */
export function rewriteGguf(source: string, target: string, change: Rewrite): void {
  const file = GgufFile.open(source);
  try {
    const metadata = new Map(file.metadata.entries);
    for (const key of change.dropKeys ?? []) metadata.delete(key);
    for (const [key, value] of change.setKeys ?? []) metadata.set(key, value);
    const tensors: GgufTensorSpec[] = file.tensors
      .filter((t) => !(change.dropTensors ?? []).includes(t.name))
      .map((t) => {
        const dims = change.reshape?.[t.name] ?? t.dims;
        const type = change.retype?.types[t.name];
        if (type !== undefined) {
          if (t.type !== GgmlType.F32) throw new Error(`retype: ${t.name} is not F32`);
          return {
            name: t.name,
            dims,
            type,
            produce(emit) {
              const values = new Float32Array(t.elementCount);
              file.readTensor(t, new Uint8Array(values.buffer));
              emit(change.retype!.quantize(type, values, t.elementCount / t.dims[0]!, t.dims[0]!));
            },
          };
        }
        return {
          name: t.name,
          dims,
          type: t.type,
          produce(emit) {
            const bytes = new Uint8Array(tensorByteLength(t));
            file.readTensor(t, bytes);
            const elements = dims.reduce((a, b) => a * b, 1);
            const size = (bytes.length / t.elementCount) * elements;
            const out = new Uint8Array(size);
            out.set(bytes.subarray(0, Math.min(size, bytes.length)));
            emit(out);
          },
        };
      });
    writeGguf(target, { metadata, tensors, alignment: file.alignment, version: file.version as 2 | 3 });
  } finally {
    file.close();
  }
}

/**
 * Copies a GGUF with the type ids of some tensors changed in its header and nothing else (offsets,
 * data and sizes on disk stay): for files of types no writer makes, such as ids this ggml does not
 * know, or a type of fewer bytes than the data (F32 → F16).
 */
export function patchTensorTypes(source: string, target: string, types: Record<string, number>): void {
  const bytes = new Uint8Array(readFileSync(source));
  const view = new DataView(bytes.buffer);
  const file = GgufFile.open(source);
  try {
    const header = bytes.subarray(0, file.dataOffset);
    for (const [name, type] of Object.entries(types)) {
      const t = file.tensor(name);
      // A tensor's info: u64 name length, the name, u32 n_dims, n_dims u64 dims, u32 type.
      const encoded = new Uint8Array(8 + name.length);
      new DataView(encoded.buffer).setBigUint64(0, BigInt(name.length), true);
      encoded.set(new TextEncoder().encode(name), 8);
      const at = indexOf(header, encoded);
      if (at < 0) throw new Error(`${source}: tensor info of ${name} not found`);
      view.setUint32(at + encoded.length + 4 + 8 * t.dims.length, type, true);
    }
  } finally {
    file.close();
  }
  writeFileSync(target, bytes);
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
