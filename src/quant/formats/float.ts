import { GgmlType } from "../../gguf/types.js";
import { bf16ToFp32, fp16ToFp32, fp16ToFp32Bits, fp32BitsToBf16, fp32BitsToFp16 } from "../half.js";
import { WeightFormat, bitsOf, checkRoom, setU16, u16 } from "./common.js";

/**
 * F32, F16 and BF16 weights. Their products are not ggml's (whose SIMD sums in float lanes): the
 * reference sums the exact f64 products in element order and rounds once to f32.
 */

function quantizeF16(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 2 * src.length, "F16");
  const bits = bitsOf(src);
  for (let i = 0; i < bits.length; i++) setU16(dst, dstOffset + 2 * i, fp32BitsToFp16(bits[i]!));
}

function quantizeBf16(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 2 * src.length, "BF16");
  const bits = bitsOf(src);
  for (let i = 0; i < bits.length; i++) setU16(dst, dstOffset + 2 * i, fp32BitsToBf16(bits[i]!));
}

function quantizeF32(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 4 * src.length, "F32");
  dst.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), dstOffset);
}

/** `n` floats at byte `offset`: a view where aligned (arena pointers are), else a copy. */
function floatsAt(bytes: Uint8Array, offset: number, n: number): Float32Array {
  const at = bytes.byteOffset + offset;
  if (at % 4 === 0) return new Float32Array(bytes.buffer, at, n);
  return new Float32Array(bytes.slice(offset, offset + 4 * n).buffer);
}

function halvesAt(bytes: Uint8Array, offset: number, n: number): Uint16Array {
  const at = bytes.byteOffset + offset;
  if (at % 2 === 0) return new Uint16Array(bytes.buffer, at, n);
  return new Uint16Array(bytes.slice(offset, offset + 2 * n).buffer);
}

export const F32: WeightFormat = {
  type: GgmlType.F32,
  name: "F32",
  blockValues: 1,
  blockBytes: 4,
  activation: "f32",
  dequantize(bytes, offset, out) {
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes.subarray(offset, offset + 4 * out.length));
  },
  dot(w, wOffset, x, xOffset, cols) {
    const a = floatsAt(w, wOffset, cols);
    const b = floatsAt(x, xOffset, cols);
    let sum = 0;
    for (let i = 0; i < cols; i++) sum += a[i]! * b[i]!;
    return Math.fround(sum);
  },
  quantize: quantizeF32,
};

export const F16: WeightFormat = {
  type: GgmlType.F16,
  name: "F16",
  blockValues: 1,
  blockBytes: 2,
  activation: "f16",
  dequantize(bytes, offset, out) {
    // Through bit patterns, so NaN payloads survive as ggml's conversion keeps them.
    const outBits = bitsOf(out);
    for (let i = 0; i < out.length; i++) outBits[i] = fp16ToFp32Bits(u16(bytes, offset + 2 * i));
  },
  dot(w, wOffset, x, xOffset, cols) {
    const a = halvesAt(w, wOffset, cols);
    const b = halvesAt(x, xOffset, cols);
    let sum = 0;
    for (let i = 0; i < cols; i++) sum += fp16ToFp32(a[i]!) * fp16ToFp32(b[i]!);
    return Math.fround(sum);
  },
  quantize: quantizeF16,
};

export const BF16: WeightFormat = {
  type: GgmlType.BF16,
  name: "BF16",
  blockValues: 1,
  blockBytes: 2,
  activation: "bf16",
  dequantize(bytes, offset, out) {
    const outBits = bitsOf(out);
    for (let i = 0; i < out.length; i++) outBits[i] = u16(bytes, offset + 2 * i) << 16;
  },
  dot(w, wOffset, x, xOffset, cols) {
    const a = halvesAt(w, wOffset, cols);
    const b = halvesAt(x, xOffset, cols);
    let sum = 0;
    for (let i = 0; i < cols; i++) sum += bf16ToFp32(a[i]!) * bf16ToFp32(b[i]!);
    return Math.fround(sum);
  },
  quantize: quantizeBf16,
};
