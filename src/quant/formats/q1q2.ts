import { GgmlType } from "../../gguf/types.js";
import { QK, WeightFormat, f16, fround, i8 } from "./common.js";

/**
 * Q1_0 (128 values of ±d) and Q2_0 (64 values of d·{−1, 0, 1, 2}), both × q8_0, so one weight
 * block spans 4 (2) activation blocks. ggml's product sums d1·isum over those blocks in f32 and
 * multiplies by the weight scale last; the reference instead treats each 32-value activation
 * block as a Q4_0 block would: contribution f32(f32(dw·dx) · isum), added to the accumulator in
 * activation-block order. (The same terms; only the rounding order differs.)
 */

const Q8_0_BYTES = 34;

/** Q1_0: d at 0, qs[16] at 2, value j being bit j mod 8 of byte j/8 (set: +d, clear: −d). */
export const Q1_0: WeightFormat = {
  type: GgmlType.Q1_0,
  name: "Q1_0",
  blockValues: 128,
  blockBytes: 18,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / 128; b++) {
      const at = offset + b * 18;
      const d = f16(bytes, at);
      for (let j = 0; j < 128; j++) out[b * 128 + j] = (bytes[at + 2 + (j >> 3)]! >> (j & 7)) & 1 ? d : -d;
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let k = 0; k < cols / QK; k++) {
      const wb = wOffset + (k >> 2) * 18;
      const xb = xOffset + k * Q8_0_BYTES;
      let isum = 0;
      for (let j = 0; j < QK; j++) {
        const q = i8(x, xb + 2 + j);
        isum += (w[wb + 2 + 4 * (k & 3) + (j >> 3)]! >> (j & 7)) & 1 ? q : -q;
      }
      acc = fround(acc + fround(fround(f16(w, wb) * f16(x, xb)) * isum));
    }
    return acc;
  },
};

/** Q2_0: d at 0, qs[16] at 2, value j being bits 2·(j mod 4) of byte j/4, minus 1. */
export const Q2_0: WeightFormat = {
  type: GgmlType.Q2_0,
  name: "Q2_0",
  blockValues: 64,
  blockBytes: 18,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / 64; b++) {
      const at = offset + b * 18;
      const d = f16(bytes, at);
      for (let j = 0; j < 64; j++) out[b * 64 + j] = fround((((bytes[at + 2 + (j >> 2)]! >> (2 * (j & 3))) & 3) - 1) * d);
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let k = 0; k < cols / QK; k++) {
      const wb = wOffset + (k >> 1) * 18;
      const xb = xOffset + k * Q8_0_BYTES;
      let isum = 0;
      for (let j = 0; j < QK; j++) {
        const v = ((w[wb + 2 + 8 * (k & 1) + (j >> 2)]! >> (2 * (j & 3))) & 3) - 1;
        isum += v * i8(x, xb + 2 + j);
      }
      acc = fround(acc + fround(fround(f16(w, wb) * f16(x, xb)) * isum));
    }
    return acc;
  },
};
