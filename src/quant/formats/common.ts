import type { GgmlType } from "../../gguf/types.js";
import { fp16ToFp32 } from "../half.js";

/**
 * What every format module shares: the two table entry shapes and little byte readers.
 *
 * The reference dot arithmetic (a contract with the WebAssembly kernels, which reproduce it bit for
 * bit): for each block (the 32-value block of the legacy types, MXFP4 and IQ4_NL, the 256-value
 * superblock of the K, I and TQ types; the modules name theirs), every integer sum is computed
 * exactly, then the block's contribution is computed in f32 — rounding after every single
 * operation, integer sums converted to f32 first (which rounds only beyond 2^24), no fused
 * operations — and added to an f32 accumulator in block order: acc = f32(acc + contribution),
 * from acc = 0. `dx` is the activation block's scale as f32. Each module states its
 * contribution formula.
 */

/** How activations are prepared for a product with a weight type (ggml's CPU vec_dot_type). */
export type ActivationFormat = "f32" | "f16" | "bf16" | "q8_0" | "q8_1" | "q8_k";

export interface WeightFormat {
  type: GgmlType;
  name: string;
  blockValues: number;
  blockBytes: number;
  /** ggml's CPU vec_dot_type for this weight type: how activations are prepared. */
  activation: ActivationFormat;
  /** Bit-identical to ggml's dequantize_row_<type> (out.length a whole number of blocks). */
  dequantize(bytes: Uint8Array, offset: number, out: Float32Array): void;
  /**
   * One weight row (cols values at wOffset) · one activation row prepared in ggml's block layout
   * of `activation` (at xOffset), in the reference arithmetic described above.
   */
  dot(w: Uint8Array, wOffset: number, x: Uint8Array, xOffset: number, cols: number): number;
  /** Bit-identical to ggml's quantize_row_<type>_ref, where provided. */
  quantize?(src: Float32Array, dst: Uint8Array, dstOffset: number): void;
}

export interface ActivationFormatSpec {
  format: ActivationFormat;
  blockValues: number;
  blockBytes: number;
  /** Bit-identical to the from_float of ggml's x86 CPU backend for this vec_dot_type. */
  quantize(src: Float32Array, dst: Uint8Array, dstOffset: number): void;
}

export const fround = Math.fround;
export const QK = 32;
export const QK_K = 256;

export function checkRoom(bytes: Uint8Array, offset: number, needed: number, what: string): void {
  if (!(offset >= 0 && offset + needed <= bytes.length)) {
    throw new RangeError(`${what}: bytes [${offset}, ${offset + needed}) lie outside a buffer of ${bytes.length} bytes`);
  }
}

/** How many `blockValues`-value blocks `values` makes, or a RangeError naming the format. */
export function blockCount(values: number, blockValues: number, what: string): number {
  if (values % blockValues !== 0) throw new RangeError(`${what}: ${values} values are not a whole number of ${blockValues}-value blocks`);
  return values / blockValues;
}

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

export function i8(b: Uint8Array, o: number): number {
  return (b[o]! << 24) >> 24;
}

/** The little-endian half at byte o, widened to f32 as ggml's GGML_FP16_TO_FP32 does. */
export function f16(b: Uint8Array, o: number): number {
  return fp16ToFp32(b[o]! | (b[o + 1]! << 8));
}

const scratch = new DataView(new ArrayBuffer(4));

/** The little-endian f32 at byte o. */
export function f32(b: Uint8Array, o: number): number {
  scratch.setUint32(0, u32(b, o));
  return scratch.getFloat32(0);
}

/** The float32 bit pattern of `value` rounded to f32. */
export function f32Bits(value: number): number {
  scratch.setFloat32(0, value);
  return scratch.getUint32(0);
}

export function setU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function setF32(b: Uint8Array, o: number, v: number): void {
  scratch.setFloat32(0, v);
  const bits = scratch.getUint32(0);
  b[o] = bits & 0xff;
  b[o + 1] = (bits >>> 8) & 0xff;
  b[o + 2] = (bits >>> 16) & 0xff;
  b[o + 3] = bits >>> 24;
}

/** Float32 bits of `src`, read without passing through JS numbers (which could quiet NaNs). */
export function bitsOf(src: Float32Array): Uint32Array {
  return new Uint32Array(src.buffer, src.byteOffset, src.length);
}

/** The 16 signed values a 4-bit index selects (IQ4_NL/IQ4_XS: kvalues_iq4nl in ggml-common.h). */
export const KVALUES_IQ4NL: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** E2M1 values doubled (kvalues_mxfp4/kvalues_fp4 in ggml-common.h), shared by MXFP4 and NVFP4. */
export const KVALUES_FP4: readonly number[] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];
