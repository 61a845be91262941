import { readFile } from "node:fs/promises";
import { setFlagsFromString } from "node:v8";

/** The kernel module's exports (src/kernels/assembly/index.ts); pointers are byte offsets. */
export interface KernelExports {
  initConstants(): void;
  activationRowBytes(format: number, cols: number): number;
  prepareRows(format: number, src: number, cols: number, dst: number, r0: number, r1: number): void;
  packMatrix(type: number, src: number, dst: number, rows: number, cols: number, scratch: number): void;
  packDown(type: number, upstream: number, src: number, dst: number, rows: number, cols: number, scratch: number): void;
  quantMatmul(type: number, w: number, cols: number, rows: number, x: number, xStride: number, xIndex: number, n: number,
    y: number, yStride: number, g0: number, g1: number): void;
  matmulPiece(table: number, count: number, n: number, piece: number, scratch: number): void;
  blockMatmul(type: number, w: number, cols: number, x: number, xStride: number, xIndex: number, n: number,
    y: number, yStride: number, yIndex: number, r0: number, r1: number, scratch: number): void;
  q4kMatmul(w: number, cols: number, rows: number, x: number, xStride: number, xIndex: number, n: number,
    y: number, yStride: number, yIndex: number, g0: number, g1: number): void;
  q6kMatmul(w: number, cols: number, rows: number, x: number, xStride: number, xIndex: number, n: number,
    y: number, yStride: number, yIndex: number, g0: number, g1: number): void;
  iq4xsMatmul(w: number, cols: number, rows: number, x: number, xStride: number, xIndex: number, n: number,
    y: number, yStride: number, yIndex: number, g0: number, g1: number): void;
  floatMatmul(type: number, w: number, cols: number, rows: number, x: number, xStride: number, xIndex: number, n: number,
    y: number, yStride: number, r0: number, r1: number): void;
  expertTokenBytes(ffn: number): number;
  chunkCount(ffn: number): number;
  expertChunks(table: number, task: number, c0: number, c1: number, type: number, downType: number, quantUpstream: number, downKind: number,
    hidden: number, ffn: number, x: number, xStride: number, scratch: number, tokenStride: number, partials: number, list: number, sparse: number): number;
  expertRows(table: number, task: number, downType: number, quantUpstream: number, downKind: number, hidden: number, ffn: number, scratch: number,
    tokenStride: number, out: number, list: number, r0: number, r1: number): void;
  expertReduce(table: number, tasks: number, hidden: number, ffn: number, partials: number, out: number): void;
  attendChunks(k: number, v: number, half: number, slotBytes: number, capacity: number, q: number, group: number, headDim: number,
    scale: number, position: number, window: number, chunkSize: number, c0: number, c1: number, scratch: number, partials: number): void;
  attendBlock(k: number, v: number, half: number, slotBytes: number, capacity: number, q: number, qStride: number, group: number, headDim: number,
    scale: number, positions: number, t0: number, t1: number, window: number, chunkSize: number, scratch: number, out: number): void;
  foldStored(partials: number, count: number, group: number, headDim: number, out: number): void;
  rmsNorm(src: number, weight: number, cols: number, eps: number, dst: number, r0: number, r1: number): void;
  rope(x: number, heads: number, headDim: number, cos: number, sin: number, t0: number, t1: number): void;
  add(a: number, b: number, dst: number, i0: number, i1: number): void;
  moeCombine(y: number, weights: number, k: number, hidden: number, residual: number, out: number, t0: number, t1: number): void;
  storeKv(kCache: number, vCache: number, half: number, capacity: number, width: number, k: number, v: number, positions: number,
    n: number, s0: number, s1: number): void;
  dequantizeRows(type: number, src: number, cols: number, dst: number, r0: number, r1: number, scratch: number): void;
  sumBlocks(src: number, b0: number, b1: number): number;
}

/** Activation format numbers as the module knows them. */
export const FORMAT_NUMBER = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q8_1: 4, q8_k: 5 } as const;

export type SimdLevel = "relaxed" | "simd128";

const BINARY_DIR = new URL("../../../../build/kernels/", import.meta.url);

let relaxedFlagSet = false;

/**
 * Compiles the kernel module: the relaxed-SIMD build when this engine validates it (Node 20 needs
 * the flag, set before compiling; workers inherit it), else the plain SIMD128 build.
 */
export async function compileKernels(prefer: SimdLevel = "relaxed"): Promise<{ module: WebAssembly.Module; level: SimdLevel }> {
  if (prefer === "relaxed") {
    if (!relaxedFlagSet) {
      setFlagsFromString("--experimental-wasm-relaxed-simd");
      relaxedFlagSet = true;
    }
    const bytes = await readFile(new URL("relaxed.wasm", BINARY_DIR));
    if (WebAssembly.validate(bytes)) return { module: await WebAssembly.compile(bytes), level: "relaxed" };
  }
  const bytes = await readFile(new URL("simd128.wasm", BINARY_DIR));
  return { module: await WebAssembly.compile(bytes), level: "simd128" };
}

/** An instance of the module on one arena's memory, constants written. */
export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
  exports.initConstants();
  return exports;
}
