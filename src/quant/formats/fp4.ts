import { GgmlType } from "../../gguf/types.js";
import { KVALUES_FP4, QK, WeightFormat, f16, fround, i8 } from "./common.js";

/**
 * The 4-bit float formats, both × q8_0, both indexing the doubled E2M1 values kvalues_mxfp4:
 * - MXFP4: 32 values under one E8M0 exponent, read as half its power of two (undoing the
 *   doubling). Per block: d = f32(dx · e8m0_half(e)), contribution f32(d · isum).
 * - NVFP4: 64 values in 4 sub-blocks of 16, each under a UE4M3 scale (halved likewise). ggml's
 *   product sums dy·d·isum per sub-block, so the sub-block is the unit here: d =
 *   f32(dx · ue4m3(s)) with dx the scale of the q8_0 block holding the sub-block, contribution
 *   f32(d · isum), added to the accumulator in sub-block order.
 */

const f32View = new DataView(new ArrayBuffer(4));

function fromBits(bits: number): number {
  f32View.setUint32(0, bits);
  return f32View.getFloat32(0);
}

/** ggml_e8m0_to_fp32_half: 2^(e − 128), with e = 0 and 1 as the f32 subnormals ggml builds. */
function e8m0Half(e: number): number {
  return fromBits(e < 2 ? 0x00200000 << e : (e - 1) << 23);
}

/**
 * ggml_ue4m3_to_fp32 (halved): 4 exponent bits (bias 7) and 3 mantissa bits; the top bit is
 * ignored, and 0 and 0x7F (its NaN) read as 0.
 */
function ue4m3Half(x: number): number {
  if (x === 0 || x === 0x7f) return 0;
  const exp = (x >> 3) & 0x0f;
  const man = x & 7;
  const raw = exp === 0 ? man * 2 ** -9 : (1 + man / 8) * 2 ** (exp - 7);
  return raw * 0.5;
}

const MXFP4_BYTES = 17;
const NVFP4_BYTES = 36;
const Q8_0_BYTES = 34;

/** MXFP4: the exponent e at 0, qs[16] at 1 (value j: low nibble of byte j, value j + 16: high). */
export const MXFP4: WeightFormat = {
  type: GgmlType.MXFP4,
  name: "MXFP4",
  blockValues: QK,
  blockBytes: MXFP4_BYTES,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * MXFP4_BYTES;
      const d = e8m0Half(bytes[at]!);
      for (let j = 0; j < QK / 2; j++) {
        const byte = bytes[at + 1 + j]!;
        out[b * QK + j] = fround(KVALUES_FP4[byte & 0x0f]! * d);
        out[b * QK + j + QK / 2] = fround(KVALUES_FP4[byte >> 4]! * d);
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * MXFP4_BYTES;
      const xb = xOffset + b * Q8_0_BYTES;
      let isum = 0;
      for (let j = 0; j < QK / 2; j++) {
        const byte = w[wb + 1 + j]!;
        isum += KVALUES_FP4[byte & 0x0f]! * i8(x, xb + 2 + j) + KVALUES_FP4[byte >> 4]! * i8(x, xb + 2 + j + QK / 2);
      }
      acc = fround(acc + fround(fround(f16(x, xb) * e8m0Half(w[wb]!)) * isum));
    }
    return acc;
  },
};

/**
 * NVFP4: scales[4] (UE4M3) at 0, qs[32] at 4; sub-block s holds bytes 4 + 8s … (value j: low
 * nibble of byte j, value j + 8: high nibble).
 */
export const NVFP4: WeightFormat = {
  type: GgmlType.NVFP4,
  name: "NVFP4",
  blockValues: 64,
  blockBytes: NVFP4_BYTES,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / 64; b++) {
      const at = offset + b * NVFP4_BYTES;
      for (let s = 0; s < 4; s++) {
        const d = ue4m3Half(bytes[at + s]!);
        for (let j = 0; j < 8; j++) {
          const byte = bytes[at + 4 + 8 * s + j]!;
          out[b * 64 + 16 * s + j] = fround(KVALUES_FP4[byte & 0x0f]! * d);
          out[b * 64 + 16 * s + j + 8] = fround(KVALUES_FP4[byte >> 4]! * d);
        }
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / 64; b++) {
      const wb = wOffset + b * NVFP4_BYTES;
      for (let s = 0; s < 4; s++) {
        const xb = xOffset + (2 * b + (s >> 1)) * Q8_0_BYTES;
        const q = xb + 2 + 16 * (s & 1);
        let isum = 0;
        for (let j = 0; j < 8; j++) {
          const byte = w[wb + 4 + 8 * s + j]!;
          isum += KVALUES_FP4[byte & 0x0f]! * i8(x, q + j) + KVALUES_FP4[byte >> 4]! * i8(x, q + j + 8);
        }
        acc = fround(acc + fround(fround(f16(x, xb) * ue4m3Half(w[wb + s]!)) * isum));
      }
    }
    return acc;
  },
};
