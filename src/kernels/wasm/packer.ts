import type { CreatePacker } from "../packer.js";
import { instantiate } from "./exports.js";

/** Packing with the kernel module's own code, on a thread outside the pool (e.g. an expert reader). */
export const createPacker: CreatePacker = (memory, scratch, options) => {
  const exports = instantiate((options as { module: WebAssembly.Module }).module, memory);
  return (kind, type, rows, cols, src, dst, layout) => {
    if (kind === "matrix") exports.packMatrix(type, src, dst, rows, cols, scratch);
    else exports.packDown(type, layout === "upstream" ? 1 : 0, src, dst, rows, cols, scratch);
  };
};
