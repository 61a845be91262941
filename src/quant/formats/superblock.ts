import type { GgmlType } from "../../gguf/types.js";
import { ActivationFormat, QK_K, WeightFormat, f32, fround, i8 } from "./common.js";

/**
 * The machinery the 256-value superblock formats share (K-quants, IQ4_XS, the ternary types):
 * each decodes a superblock into integer values plus integer group scales (and mins), from which
 * both its dequantization and its product with Q8_K activations follow.
 *
 * Q8_K activation block (292 bytes): f32 d at 0, int8 qs[256] at 4, int16 bsums[16] at 260
 * (bsums[k] = Σ of qs[16k .. 16k+15]).
 */
export const Q8_K_BYTES = 292;
const Q8_K_QS = 4;
const Q8_K_BSUMS = 260;

function q8kBsum(x: Uint8Array, xb: number, k: number): number {
  return ((x[xb + Q8_K_BSUMS + 2 * k]! | (x[xb + Q8_K_BSUMS + 2 * k + 1]! << 8)) << 16) >> 16;
}

export function q8kQuant(x: Uint8Array, xb: number, i: number): number {
  return i8(x, xb + Q8_K_QS + i);
}

/** The activation block scale dx of the Q8_K block at xb. */
export function q8kScale(x: Uint8Array, xb: number): number {
  return f32(x, xb);
}

/** One superblock decoded: values v[0..255], and per group of `groupSize` a scale (and a min). */
export interface Decoded {
  v: Int32Array;
  scale: Int32Array;
  min: Int32Array;
}

export function decodedBuffers(groups: number): Decoded {
  return { v: new Int32Array(QK_K), scale: new Int32Array(groups), min: new Int32Array(groups) };
}

/** Σ_g scale_g · Σ_{i∈g} v_i·q_i over one superblock, exactly. */
export function scaledIntegerSum(dec: Decoded, groupSize: number, x: Uint8Array, xb: number): number {
  let isum = 0;
  for (let g = 0; g < QK_K / groupSize; g++) {
    let sum = 0;
    for (let i = g * groupSize; i < (g + 1) * groupSize; i++) sum += dec.v[i]! * q8kQuant(x, xb, i);
    isum += dec.scale[g]! * sum;
  }
  return isum;
}

export interface SuperblockSpec {
  type: GgmlType;
  name: string;
  blockBytes: number;
  groupSize: number;
  activation?: ActivationFormat;
  /** Decodes the superblock at byte `at` into `dec`; returns its fp16 scale d (and dmin) as f32. */
  decode(b: Uint8Array, at: number, dec: Decoded): { d: number; dmin: number };
  /**
   * How a value dequantizes, given the group's f32 scale dl = f32(d · scale_g) and
   * ml = f32(dmin · min_g): "scaled" f32(dl · v), "affine" f32(f32(dl · v) − ml).
   */
  form: "scaled" | "affine";
}

/**
 * A superblock format's table entry. Per superblock, with d = f32(dx · fp16 d) and
 * dmin = f32(dx · fp16 dmin), the contribution is
 * - "scaled": f32(d · isum), isum = Σ_g scale_g · Σ v_i·q_i (signed v and scales);
 * - "affine": f32(f32(d · isum) − f32(dmin · summs)), v and scales unsigned, summs = Σ_g min_g ·
 *   (the bsums covering group g), as ggml's K-quant products subtract the mins.
 */
export function superblockFormat(spec: SuperblockSpec): WeightFormat {
  const { groupSize, form } = spec;
  const groups = QK_K / groupSize;
  const dec = decodedBuffers(groups);
  return {
    type: spec.type,
    name: spec.name,
    blockValues: QK_K,
    blockBytes: spec.blockBytes,
    activation: spec.activation ?? "q8_k",
    dequantize(bytes, offset, out) {
      for (let b = 0; b < out.length / QK_K; b++) {
        const { d, dmin } = spec.decode(bytes, offset + b * spec.blockBytes, dec);
        for (let g = 0; g < groups; g++) {
          const dl = fround(d * dec.scale[g]!);
          const ml = fround(dmin * dec.min[g]!);
          for (let i = g * groupSize; i < (g + 1) * groupSize; i++) {
            const y = fround(dl * dec.v[i]!);
            // When both are NaN, ggml's result is y's (see plusMin in legacy.ts).
            out[b * QK_K + i] = form === "affine" && !Number.isNaN(y) ? fround(y - ml) : y;
          }
        }
      }
    },
    dot(w, wOffset, x, xOffset, cols) {
      let acc = 0;
      for (let b = 0; b < cols / QK_K; b++) {
        const xb = xOffset + b * Q8_K_BYTES;
        const dw = spec.decode(w, wOffset + b * spec.blockBytes, dec);
        const dx = q8kScale(x, xb);
        const isum = scaledIntegerSum(dec, groupSize, x, xb);
        const d = fround(dx * dw.d);
        if (form === "scaled") {
          acc = fround(acc + fround(d * fround(isum)));
          continue;
        }
        let summs = 0;
        const perGroup = groupSize / 16;
        for (let g = 0; g < groups; g++) {
          let bsum = 0;
          for (let k = g * perGroup; k < (g + 1) * perGroup; k++) bsum += q8kBsum(x, xb, k);
          summs += dec.min[g]! * bsum;
        }
        const dmin = fround(dx * dw.dmin);
        acc = fround(acc + fround(fround(d * fround(isum)) - fround(dmin * fround(summs))));
      }
      return acc;
    },
  };
}
