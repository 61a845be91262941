import { GgufFile } from "../../src/gguf/reader.js";
import { GgufValue, tensorByteLength } from "../../src/gguf/types.js";
import { GgufTensorSpec, writeGguf } from "../../src/gguf/writer.js";

export interface Rewrite {
  dropKeys?: string[];
  setKeys?: [string, GgufValue][];
  dropTensors?: string[];
  /** New dims for a tensor (data is cut or zero-padded to fit). */
  reshape?: Record<string, number[]>;
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
