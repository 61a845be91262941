import { ggmlRowBytes } from "../gguf/types.js";
import type { CreatePacker } from "./packer.js";

/** The reference kernels keep weights in their GGUF layout: packing is a copy. */
export const createPacker: CreatePacker = (memory) => (_kind, type, rows, cols, src, dst) => {
  const bytes = new Uint8Array(memory.buffer);
  bytes.copyWithin(dst, src, src + ggmlRowBytes(type, cols) * rows);
};
