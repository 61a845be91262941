import type { DownLayout, WeightKind } from "./api.js";
import type { GgmlType } from "../gguf/types.js";
import type { Ptr } from "./arena.js";

/** Packs raw GGUF bytes at `src` into a kernel layout at `dst` (as `Kernels.pack`), on the calling thread. */
export type PackFunction = (kind: WeightKind, type: GgmlType, rows: number, cols: number, src: Ptr, dst: Ptr, layout?: DownLayout) => void;

/**
 * How another thread (an expert reader) can pack for a kernel set: import `url`, call its
 * `createPacker(memory, scratch, options)` with `scratchBytes` of that memory for its own use.
 * `options` crosses threads by structured clone (it may hold a WebAssembly.Module).
 */
export interface PackerDescriptor {
  url: string;
  options: unknown;
  scratchBytes: number;
}

export type CreatePacker = (memory: WebAssembly.Memory, scratch: Ptr, options: unknown) => PackFunction;
