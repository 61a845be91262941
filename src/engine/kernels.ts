import { availableParallelism } from "node:os";
import { Kernels } from "../kernels/api.js";
import { ReferenceKernels } from "../kernels/reference.js";
import { createWasmKernels } from "../kernels/wasm/kernels.js";

export type KernelChoice = "auto" | "wasm" | "reference";

/** The kernels to run on: WebAssembly SIMD on a worker pool, or the plain-TS reference (slow, single-threaded). */
export async function createKernels(choice: KernelChoice, threads = availableParallelism()): Promise<Kernels> {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a whole number ≥ 1, got ${threads}`);
  return choice === "reference" ? new ReferenceKernels() : createWasmKernels({ threads });
}
