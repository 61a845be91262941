import { GgmlType, ggmlBlockSize, ggmlRowBytes, ggmlTypeName } from "../../gguf/types.js";
import { DownLayout, WeightKind } from "../api.js";

/**
 * The bottom of every arena belongs to the kernels:
 *   [0, 1 KiB)            vector constants (written by each instance)
 *   [1 KiB, 4 KiB)        the table of a multi-product job (see Op.Matmuls)
 *   per thread            THREAD_SCRATCH_BYTES of scratch (attention chunks, neuron lists)
 *   PARTIALS_BYTES        chunk summaries of a decode step's attention, spread over threads
 */
const CONSTANTS_BYTES = 4096;
/** The i-quant codebooks (see assembly/iquants.ts TABLES), right after the constants. */
export const TABLES_OFFSET = CONSTANTS_BYTES;
export const TABLES_BYTES = 36864;
const FIXED_BYTES = CONSTANTS_BYTES + TABLES_BYTES;
export const THREAD_SCRATCH_BYTES = 384 << 10;
export const PARTIALS_BYTES = 2 << 20;

export function reservedBytes(threads: number): number {
  return FIXED_BYTES + threads * THREAD_SCRATCH_BYTES + PARTIALS_BYTES;
}

/** Where a multi-product job's table lives, and how many products it holds at most. */
export const PRODUCT_TABLE = 1024;
export const PRODUCT_FIELDS = 12;
export const MAX_PRODUCTS = Math.floor((CONSTANTS_BYTES - PRODUCT_TABLE) / (4 * PRODUCT_FIELDS));

export function threadScratch(index: number): number {
  return FIXED_BYTES + index * THREAD_SCRATCH_BYTES;
}

export function partialsArea(threads: number): number {
  return FIXED_BYTES + threads * THREAD_SCRATCH_BYTES;
}

/** Positions per attention chunk: fixed, so results never depend on how chunks are shared out. */
export const ATTENTION_CHUNK = 128;

/** Scratch of one attention chunk: group × chunk scores, then the chunk's keys and values as f32. */
export function attentionChunkScratch(group: number, headDim: number): number {
  return 4 * (group * ATTENTION_CHUNK + 2 * ATTENTION_CHUNK * headDim);
}

export function partialBytes(group: number, headDim: number): number {
  return 4 * group * (headDim + 2);
}

/** Bytes of a Q4_K or IQ4_XS group's scales per superblock (assembly/q4k.ts, iq4xs.ts). */
const Q4K_META_BYTES = 80;
const IQ4XS_META_BYTES = 40;

/** Row-blocks of a type per 64-byte line of a packed 4-row group (see assembly/quantized.ts). */
const BLOCKS_PER_LINE: Partial<Record<GgmlType, number>> = { [GgmlType.Q4_0]: 4, [GgmlType.Q8_0]: 2 };
const FLOAT_TYPES = new Set([GgmlType.F32, GgmlType.F16, GgmlType.BF16]);
/** Formats the kernels decode block by block to the canonical form (assembly/blocks.ts). */
const BLOCK_TYPES = new Set([
  GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL, GgmlType.MXFP4,
  GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_XS, GgmlType.TQ1_0, GgmlType.TQ2_0,
  GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ1_S, GgmlType.IQ1_M,
  GgmlType.Q1_0, GgmlType.Q2_0,
]);

/** How the kernels lay out and multiply a matrix (numbered as MATRIX_* in assembly/quantized.ts). */
export const MatrixKind = { Float: 0, Quant: 1, Block: 2, Q4K: 3, Q6K: 4, IQ4XS: 5 } as const;

/** How the kernels hold a matrix (not an expert's down) of `type` (as matrixKindOf in assembly/quantized.ts). */
export function matrixKind(type: GgmlType): number {
  if (type === GgmlType.Q4_0 || type === GgmlType.Q8_0) return MatrixKind.Quant;
  if (type === GgmlType.Q4_K) return MatrixKind.Q4K;
  if (type === GgmlType.Q6_K) return MatrixKind.Q6K;
  if (type === GgmlType.IQ4_XS) return MatrixKind.IQ4XS;
  if (BLOCK_TYPES.has(type)) return MatrixKind.Block;
  return MatrixKind.Float;
}

export function isQuant(type: GgmlType): boolean {
  return matrixKind(type) === MatrixKind.Quant;
}

/** Whether `type` is one of the block formats (decoded to the canonical block in its down product and dequantization). */
export function isBlock(type: GgmlType): boolean {
  return BLOCK_TYPES.has(type);
}

export function supportsType(type: GgmlType): boolean {
  return isQuant(type) || isBlock(type) || FLOAT_TYPES.has(type);
}

export function checkType(type: GgmlType, cols: number): void {
  if (!supportsType(type)) throw new Error(`wasm kernels: no kernels for ${ggmlTypeName(type)}`);
  const blockSize = ggmlBlockSize(type);
  if (cols % blockSize !== 0) throw new Error(`wasm kernels: ${ggmlTypeName(type)} rows of ${cols} values are not whole ${blockSize}-value blocks`);
}

/**
 * Packed sizes. Q4_0/Q8_0 matrices group rows by four (so a matrix packed 64 rows at a time is the
 * same as packed whole): per group the f16 scales, then the values in whole 64-byte lines (the file's
 * size when a row is a whole number of lines). Q4_K matrices take the same groups, with 80 bytes of
 * scales per superblock (see assembly/q4k.ts). Every other packing keeps the file's size.
 */
export function packedBytes(kind: WeightKind, type: GgmlType, rows: number, cols: number, layout?: DownLayout): number {
  checkType(type, cols);
  const perLine = BLOCKS_PER_LINE[type];
  if (kind === "matrix" && perLine !== undefined) {
    const blocks = cols / 32;
    return Math.ceil(rows / 4) * (8 * blocks + 256 * Math.ceil(blocks / perLine));
  }
  if (kind === "matrix" && type === GgmlType.Q4_K) {
    const blocks = cols / 32;
    return Math.ceil(rows / 4) * ((cols / 256) * Q4K_META_BYTES + 256 * Math.ceil(blocks / 4));
  }
  if (kind === "matrix" && type === GgmlType.IQ4_XS) {
    const blocks = cols / 32;
    return Math.ceil(rows / 4) * ((cols / 256) * IQ4XS_META_BYTES + 256 * Math.ceil(blocks / 4));
  }
  // Q6_K's groups hold the file's bytes, rearranged (assembly/q6k.ts).
  if (kind === "matrix" && type === GgmlType.Q6_K) return Math.ceil(rows / 4) * 4 * ggmlRowBytes(type, cols);
  if (kind === "expert-down" && layout === "upstream" && rows % 32 !== 0) {
    throw new Error(`wasm kernels: expert down with ${rows} hidden rows (a multiple of 32 is needed)`);
  }
  // Neuron-major, 148 bytes per row and superblock (assembly/downq4k.ts).
  if (kind === "expert-down" && layout === "upstream" && type === GgmlType.Q4_K) return rows * (cols / 256) * 148;
  return ggmlRowBytes(type, cols) * rows;
}
