import { GgmlType } from "../../gguf/types.js";
import { fp32ToFp16 } from "../half.js";
import { QK, WeightFormat, blockCount, checkRoom, f16, fround, i8, setU16, u32 } from "./common.js";

/**
 * The 32-value formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
 *
 * Products, per 32-value block (dw, mw: the weight block's fp16 scale and min; dx, sx: the
 * activation block's fp16 d and s; isum = Σ v_i·q_i over the block's signed weight integers v and
 * activation quants q):
 * - Q4_0, Q5_0, Q8_0 (× q8_0): f32(f32(dw·dx) · isum)
 * - Q4_1, Q5_1 (× q8_1, v unsigned): f32(f32(f32(dw·dx)·isum) + f32(mw·sx))
 *
 * Quantizers: bit-identical to ggml's quantize_row_q4_0_ref/q5_0_ref/q8_0_ref (llama-quantize's).
 * Their float → int8 conversions compile to cvttss2si plus the low byte, so NaN, ±Inf and values
 * beyond int32 give 0 there, exactly as JS's ToInt32 does.
 */

const Q4_0_BYTES = 18;
const Q4_1_BYTES = 20;
const Q5_0_BYTES = 22;
const Q5_1_BYTES = 24;
const Q8_0_BYTES = 34;
/** Where a q8_1 activation block's quants start (after d and s); q8_0's start at 2. */
const Q8_1_QS = 4;
const Q8_1_BYTES = 36;

/** C's truncating float → int8_t conversion as x86-64 compilers emit it (see above). */
function toInt8(v: number): number {
  return (v << 24) >> 24;
}

/**
 * f32(y + m) as ggml's compiled dequantization computes it: when both are NaN the result is y's
 * (x86 keeps the first operand's payload), which JS's + does not promise.
 */
function plusMin(y: number, m: number): number {
  return Number.isNaN(y) ? y : fround(y + m);
}

/** C's roundf: halves away from zero. */
function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** The signed value of the first element of largest magnitude; a NaN never compares larger. */
function signedAbsMax(src: Float32Array, base: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = src[base + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

export function quantizeQ4_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, QK, "Q4_0");
  checkRoom(dst, dstOffset, blocks * Q4_0_BYTES, "Q4_0");
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    const d = fround(signedAbsMax(src, base) / -8);
    const id = d !== 0 ? fround(1 / d) : 0;
    const out = dstOffset + b * Q4_0_BYTES;
    setU16(dst, out, fp32ToFp16(d));
    for (let j = 0; j < QK / 2; j++) {
      const x0 = fround(src[base + j]! * id);
      const x1 = fround(src[base + QK / 2 + j]! * id);
      // A denormal scale's inverse overflows: NaN and ±Inf then give 0 here, as in ggml.
      const q0 = Math.min(15, toInt8(fround(x0 + 8.5)));
      const q1 = Math.min(15, toInt8(fround(x1 + 8.5)));
      dst[out + 2 + j] = (q0 | (q1 << 4)) & 0xff;
    }
  }
}

export function quantizeQ5_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, QK, "Q5_0");
  checkRoom(dst, dstOffset, blocks * Q5_0_BYTES, "Q5_0");
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    const d = fround(signedAbsMax(src, base) / -16);
    const id = d !== 0 ? fround(1 / d) : 0;
    const out = dstOffset + b * Q5_0_BYTES;
    setU16(dst, out, fp32ToFp16(d));
    let qh = 0;
    for (let j = 0; j < QK / 2; j++) {
      // MIN(31, (int8_t)…) then uint8_t: a negative int8 wraps to its byte.
      const q0 = Math.min(31, toInt8(fround(fround(src[base + j]! * id) + 16.5))) & 0xff;
      const q1 = Math.min(31, toInt8(fround(fround(src[base + QK / 2 + j]! * id) + 16.5))) & 0xff;
      dst[out + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
    }
    dst[out + 2] = qh & 0xff;
    dst[out + 3] = (qh >>> 8) & 0xff;
    dst[out + 4] = (qh >>> 16) & 0xff;
    dst[out + 5] = qh >>> 24;
  }
}

export function quantizeQ8_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, QK, "Q8_0");
  checkRoom(dst, dstOffset, blocks * Q8_0_BYTES, "Q8_0");
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) {
      // ggml's MAX(a, b) is `a > b ? a : b`: a NaN is kept only if it is the last element.
      const a = Math.abs(src[base + j]!);
      amax = amax > a ? amax : a;
    }
    const d = fround(amax / 127);
    const id = d !== 0 ? fround(1 / d) : 0;
    const out = dstOffset + b * Q8_0_BYTES;
    setU16(dst, out, fp32ToFp16(d));
    // roundf, then the int8 conversion: modulo 256, and 0 for NaN, ±Inf and beyond int32.
    for (let j = 0; j < QK; j++) dst[out + 2 + j] = roundHalfAway(fround(src[base + j]! * id)) & 0xff;
  }
}

export const Q4_0: WeightFormat = {
  type: GgmlType.Q4_0,
  name: "Q4_0",
  blockValues: QK,
  blockBytes: Q4_0_BYTES,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * Q4_0_BYTES;
      const d = f16(bytes, at);
      for (let j = 0; j < QK / 2; j++) {
        const byte = bytes[at + 2 + j]!;
        out[b * QK + j] = fround(((byte & 0x0f) - 8) * d);
        out[b * QK + j + QK / 2] = fround(((byte >> 4) - 8) * d);
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * Q4_0_BYTES;
      const xb = xOffset + b * Q8_0_BYTES;
      let isum = 0;
      for (let j = 0; j < QK / 2; j++) {
        const byte = w[wb + 2 + j]!;
        isum += ((byte & 0x0f) - 8) * i8(x, xb + 2 + j) + ((byte >> 4) - 8) * i8(x, xb + 2 + j + QK / 2);
      }
      acc = fround(acc + fround(fround(f16(w, wb) * f16(x, xb)) * isum));
    }
    return acc;
  },
  quantize: quantizeQ4_0,
};

export const Q4_1: WeightFormat = {
  type: GgmlType.Q4_1,
  name: "Q4_1",
  blockValues: QK,
  blockBytes: Q4_1_BYTES,
  activation: "q8_1",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * Q4_1_BYTES;
      const d = f16(bytes, at);
      const m = f16(bytes, at + 2);
      for (let j = 0; j < QK / 2; j++) {
        const byte = bytes[at + 4 + j]!;
        out[b * QK + j] = plusMin(fround((byte & 0x0f) * d), m);
        out[b * QK + j + QK / 2] = plusMin(fround((byte >> 4) * d), m);
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * Q4_1_BYTES;
      const xb = xOffset + b * Q8_1_BYTES;
      let isum = 0;
      for (let j = 0; j < QK / 2; j++) {
        const byte = w[wb + 4 + j]!;
        isum += (byte & 0x0f) * i8(x, xb + Q8_1_QS + j) + (byte >> 4) * i8(x, xb + Q8_1_QS + j + QK / 2);
      }
      const scaled = fround(fround(f16(w, wb) * f16(x, xb)) * isum);
      acc = fround(acc + fround(scaled + fround(f16(w, wb + 2) * f16(x, xb + 2))));
    }
    return acc;
  },
};

export const Q5_0: WeightFormat = {
  type: GgmlType.Q5_0,
  name: "Q5_0",
  blockValues: QK,
  blockBytes: Q5_0_BYTES,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * Q5_0_BYTES;
      const d = f16(bytes, at);
      const qh = u32(bytes, at + 2);
      for (let j = 0; j < QK / 2; j++) {
        const byte = bytes[at + 6 + j]!;
        out[b * QK + j] = fround((((byte & 0x0f) | (((qh >>> j) & 1) << 4)) - 16) * d);
        out[b * QK + j + QK / 2] = fround((((byte >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d);
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * Q5_0_BYTES;
      const xb = xOffset + b * Q8_0_BYTES;
      const qh = u32(w, wb + 2);
      let isum = 0;
      for (let j = 0; j < QK / 2; j++) {
        const byte = w[wb + 6 + j]!;
        const v0 = ((byte & 0x0f) | (((qh >>> j) & 1) << 4)) - 16;
        const v1 = ((byte >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16;
        isum += v0 * i8(x, xb + 2 + j) + v1 * i8(x, xb + 2 + j + QK / 2);
      }
      acc = fround(acc + fround(fround(f16(w, wb) * f16(x, xb)) * isum));
    }
    return acc;
  },
  quantize: quantizeQ5_0,
};

export const Q5_1: WeightFormat = {
  type: GgmlType.Q5_1,
  name: "Q5_1",
  blockValues: QK,
  blockBytes: Q5_1_BYTES,
  activation: "q8_1",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * Q5_1_BYTES;
      const d = f16(bytes, at);
      const m = f16(bytes, at + 2);
      const qh = u32(bytes, at + 4);
      for (let j = 0; j < QK / 2; j++) {
        const byte = bytes[at + 8 + j]!;
        out[b * QK + j] = plusMin(fround(((byte & 0x0f) | (((qh >>> j) & 1) << 4)) * d), m);
        out[b * QK + j + QK / 2] = plusMin(fround(((byte >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d), m);
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * Q5_1_BYTES;
      const xb = xOffset + b * Q8_1_BYTES;
      const qh = u32(w, wb + 4);
      let isum = 0;
      for (let j = 0; j < QK / 2; j++) {
        const byte = w[wb + 8 + j]!;
        const v0 = (byte & 0x0f) | (((qh >>> j) & 1) << 4);
        const v1 = (byte >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        isum += v0 * i8(x, xb + Q8_1_QS + j) + v1 * i8(x, xb + Q8_1_QS + j + QK / 2);
      }
      const scaled = fround(fround(f16(w, wb) * f16(x, xb)) * isum);
      acc = fround(acc + fround(scaled + fround(f16(w, wb + 2) * f16(x, xb + 2))));
    }
    return acc;
  },
};

export const Q8_0: WeightFormat = {
  type: GgmlType.Q8_0,
  name: "Q8_0",
  blockValues: QK,
  blockBytes: Q8_0_BYTES,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * Q8_0_BYTES;
      const d = f16(bytes, at);
      for (let j = 0; j < QK; j++) out[b * QK + j] = fround(i8(bytes, at + 2 + j) * d);
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * Q8_0_BYTES;
      const xb = xOffset + b * Q8_0_BYTES;
      let isum = 0;
      for (let j = 0; j < QK; j++) isum += i8(w, wb + 2 + j) * i8(x, xb + 2 + j);
      acc = fround(acc + fround(fround(f16(w, wb) * f16(x, xb)) * isum));
    }
    return acc;
  },
  quantize: quantizeQ8_0,
};
