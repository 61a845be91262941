import { GgmlType, ggmlTypeName } from "../gguf/types.js";
import { bf16ToFp32, fp16ToFp32, fp32ToBf16, fp32ToFp16 } from "./half.js";

/**
 * Weight quantization and dequantization for the tensor types smallthinker computes with,
 * bit-identical to ggml's reference (`quantize_row_*_ref`, which llama-quantize uses).
 */
export const QK = 32;
export const Q4_0_BLOCK_BYTES = 18;
export const Q8_0_BLOCK_BYTES = 34;

export const COMPUTE_TYPES: readonly GgmlType[] = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0];

export function isComputeType(type: GgmlType): boolean {
  return COMPUTE_TYPES.includes(type);
}

const fround = Math.fround;

/** C's roundf: halves away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

export function quantizeQ4_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const blocks = src.length / QK;
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = src[base + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -8);
    const id = d ? fround(1 / d) : 0;
    const out = dstOffset + b * Q4_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const x0 = fround(src[base + j]! * id);
      const x1 = fround(src[base + QK / 2 + j]! * id);
      const q0 = Math.min(15, Math.trunc(fround(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(fround(x1 + 8.5)));
      dst[out + 2 + j] = q0 | (q1 << 4);
    }
  }
}

export function quantizeQ8_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const blocks = src.length / QK;
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(src[base + j]!));
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    const out = dstOffset + b * Q8_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(d), true);
    for (let j = 0; j < QK; j++) view.setInt8(out + 2 + j, roundAway(fround(src[base + j]! * id)));
  }
}

export function quantizeF16(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let i = 0; i < src.length; i++) view.setUint16(dstOffset + 2 * i, fp32ToFp16(src[i]!), true);
}

export function quantizeBf16(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let i = 0; i < src.length; i++) view.setUint16(dstOffset + 2 * i, fp32ToBf16(src[i]!), true);
}

export function quantizeF32(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let i = 0; i < src.length; i++) view.setFloat32(dstOffset + 4 * i, src[i]!, true);
}

/** Encodes `src` (a whole number of blocks) as `type` into dst at dstOffset. */
export function quantize(type: GgmlType, src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  switch (type) {
    case GgmlType.F32: return quantizeF32(src, dst, dstOffset);
    case GgmlType.F16: return quantizeF16(src, dst, dstOffset);
    case GgmlType.BF16: return quantizeBf16(src, dst, dstOffset);
    case GgmlType.Q8_0: return quantizeQ8_0(src, dst, dstOffset);
    case GgmlType.Q4_0: return quantizeQ4_0(src, dst, dstOffset);
    default: throw new Error(`cannot quantize to ${ggmlTypeName(type)}`);
  }
}

/** Decodes `out.length` values of `type` starting at byte `offset` of `bytes`. */
export function dequantize(type: GgmlType, bytes: Uint8Array, offset: number, out: Float32Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = out.length;
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(offset + 4 * i, true);
      return;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) out[i] = fp16ToFp32(view.getUint16(offset + 2 * i, true));
      return;
    case GgmlType.BF16:
      for (let i = 0; i < n; i++) out[i] = bf16ToFp32(view.getUint16(offset + 2 * i, true));
      return;
    case GgmlType.Q8_0:
      for (let b = 0; b < n / QK; b++) {
        const at = offset + b * Q8_0_BLOCK_BYTES;
        const d = fp16ToFp32(view.getUint16(at, true));
        for (let j = 0; j < QK; j++) out[b * QK + j] = fround(view.getInt8(at + 2 + j) * d);
      }
      return;
    case GgmlType.Q4_0:
      for (let b = 0; b < n / QK; b++) {
        const at = offset + b * Q4_0_BLOCK_BYTES;
        const d = fp16ToFp32(view.getUint16(at, true));
        for (let j = 0; j < QK / 2; j++) {
          const byte = bytes[at + 2 + j]!;
          out[b * QK + j] = fround(((byte & 0x0f) - 8) * d);
          out[b * QK + j + QK / 2] = fround(((byte >> 4) - 8) * d);
        }
      }
      return;
    default:
      throw new Error(`cannot dequantize ${ggmlTypeName(type)}`);
  }
}
