import { availableParallelism } from "node:os";
import { Kernels } from "../kernels/api.js";
import { ReferenceKernels } from "../kernels/reference.js";

export type KernelChoice = "auto" | "wasm" | "reference";

/** The kernels to run on: the plain-TS reference, or the WebAssembly SIMD pool. */
export async function createKernels(choice: KernelChoice, threads = availableParallelism()): Promise<Kernels> {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a whole number ≥ 1, got ${threads}`);
  switch (choice) {
    case "reference":
    case "auto":
      return new ReferenceKernels();
    case "wasm":
      throw new Error("the WebAssembly kernels are not built into this version");
  }
}
