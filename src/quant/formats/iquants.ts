import { GgmlType } from "../../gguf/types.js";
import { fp16ToFp32 } from "../half.js";
import { KVALUES_IQ4NL, QK, QK_K, WeightFormat, f16, fround, i8, u16, u32 } from "./common.js";
import { IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID } from "./iq-grids.js";
import { Decoded, Q8_K_BYTES, decodedBuffers, q8kQuant, q8kScale, scaledIntegerSum, superblockFormat } from "./superblock.js";

/**
 * The i-quants. IQ4_NL (32-value blocks × q8_0) and IQ4_XS (superblocks × q8_K) index the 16
 * non-linear values kvalues_iq4nl; the others (× q8_K) index codebooks of 8 (IQ3: 4) values with
 * 8 sign bits per 8 values, under odd integer group scales ls = 2s + 1.
 *
 * Products:
 * - IQ4_NL: f32(f32(dw·dx) · isum), as Q4_0.
 * - IQ4_XS: f32(d · isum), d = f32(dx · fp16 d), isum = Σ_g (ls_g − 32) · Σ v_i·q_i.
 * - IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: ggml's dequantization is d·(s + ½)·¼ (IQ2), d·(s + ½)·½
 *   (IQ3_XXS) and d·(2s + 1) (IQ3_S), i.e. d·ls·k with k = ⅛, ¼, 1; its products multiply the
 *   integer sum by k at the end. The power of two is folded into the block scale:
 *   d = f32(f32(dx · fp16 d) · k), contribution f32(d · isum), isum = Σ_g ls_g · Σ v_i·q_i with v
 *   the signed grid values.
 * - IQ1_S, IQ1_M: values are grid + δ with grid ∈ {−1, 0, 1} and δ = ±⅛ per 32 (IQ1_M: 8) values,
 *   which ggml computes as d · (sumi + ⅛·sumi1). The exact integer isum = 8·sumi + sumi1
 *   (sumi = Σ_g ls_g·Σ grid_i·q_i, sumi1 = Σ_g ls_g·Σ_u δ_u·Σ_{i∈u} q_i with δ_u = ±1) and
 *   d = f32(f32(dx · scale) · ⅛), contribution f32(d · isum).
 */

/** ksigns_iq2xs[i]: 7 stored sign bits plus an 8th that makes the count of minus signs even. */
const KSIGNS = Uint8Array.from({ length: 128 }, (_, i) => {
  let parity = 0;
  for (let v = i; v; v >>= 1) parity ^= v & 1;
  return i | (parity << 7);
});

/** IQ4_NL: d at 0, qs[16] at 2 (value j: low nibble of byte j, value j + 16: high nibble). */
export const IQ4_NL: WeightFormat = {
  type: GgmlType.IQ4_NL,
  name: "IQ4_NL",
  blockValues: QK,
  blockBytes: 18,
  activation: "q8_0",
  dequantize(bytes, offset, out) {
    for (let b = 0; b < out.length / QK; b++) {
      const at = offset + b * 18;
      const d = f16(bytes, at);
      for (let j = 0; j < QK / 2; j++) {
        const byte = bytes[at + 2 + j]!;
        out[b * QK + j] = fround(d * KVALUES_IQ4NL[byte & 0x0f]!);
        out[b * QK + j + QK / 2] = fround(d * KVALUES_IQ4NL[byte >> 4]!);
      }
    }
  },
  dot(w, wOffset, x, xOffset, cols) {
    let acc = 0;
    for (let b = 0; b < cols / QK; b++) {
      const wb = wOffset + b * 18;
      const xb = xOffset + b * 34;
      let isum = 0;
      for (let j = 0; j < QK / 2; j++) {
        const byte = w[wb + 2 + j]!;
        isum += KVALUES_IQ4NL[byte & 0x0f]! * i8(x, xb + 2 + j) + KVALUES_IQ4NL[byte >> 4]! * i8(x, xb + 2 + j + QK / 2);
      }
      acc = fround(acc + fround(fround(f16(w, wb) * f16(x, xb)) * isum));
    }
    return acc;
  },
};

/** IQ4_XS: d at 0, scales_h (u16, 2 bits a group) at 2, scales_l[4] (nibbles) at 4, qs[128] at 8. */
export const IQ4_XS = superblockFormat({
  type: GgmlType.IQ4_XS,
  name: "IQ4_XS",
  blockBytes: 136,
  groupSize: 32,
  form: "scaled",
  decode(b, at, dec) {
    const high = u16(b, at + 2);
    for (let ib = 0; ib < 8; ib++) {
      const ls = ((b[at + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 0x0f) | (((high >> (2 * ib)) & 3) << 4);
      dec.scale[ib] = ls - 32;
      dec.min[ib] = 0;
      for (let j = 0; j < 16; j++) {
        const byte = b[at + 8 + 16 * ib + j]!;
        dec.v[32 * ib + j] = KVALUES_IQ4NL[byte & 0x0f]!;
        dec.v[32 * ib + 16 + j] = KVALUES_IQ4NL[byte >> 4]!;
      }
    }
    return { d: f16(b, at), dmin: 0 };
  },
});

/** Writes 8 grid values with their signs (bit j of `signs` set: value j negative) at v[p..p+7]. */
function signed8(v: Int32Array, p: number, grid: Uint8Array, entry: number, signs: number): void {
  for (let j = 0; j < 8; j++) v[p + j] = signs & (1 << j) ? -grid[8 * entry + j]! : grid[8 * entry + j]!;
}

/** The same for two 4-value entries (the IQ3 grids). */
function signed4x2(v: Int32Array, p: number, grid: Uint8Array, first: number, second: number, signs: number): void {
  for (let j = 0; j < 4; j++) {
    v[p + j] = signs & (1 << j) ? -grid[4 * first + j]! : grid[4 * first + j]!;
    v[p + 4 + j] = signs & (1 << (j + 4)) ? -grid[4 * second + j]! : grid[4 * second + j]!;
  }
}

interface GridSpec {
  type: GgmlType;
  name: string;
  blockBytes: number;
  groupSize: number;
  /** Decodes v (signed grid values) and scale (ls); returns the fp16 d as f32. */
  decode(b: Uint8Array, at: number, dec: Decoded): number;
  /** ggml's f32 group scale for dequantization, from d and ls (its float order). */
  groupScale(d: number, ls: number): number;
  /** The power of two ggml's product applies at the end (folded into the block scale). */
  k: number;
}

function gridFormat(spec: GridSpec): WeightFormat {
  const groups = QK_K / spec.groupSize;
  const dec = decodedBuffers(groups);
  return {
    type: spec.type,
    name: spec.name,
    blockValues: QK_K,
    blockBytes: spec.blockBytes,
    activation: "q8_k",
    dequantize(bytes, offset, out) {
      for (let b = 0; b < out.length / QK_K; b++) {
        const d = spec.decode(bytes, offset + b * spec.blockBytes, dec);
        for (let g = 0; g < groups; g++) {
          const db = spec.groupScale(d, dec.scale[g]!);
          // ggml's db·|grid|·(±1.0f) compiles to a sign flip, which flips a NaN's sign too.
          for (let i = g * spec.groupSize; i < (g + 1) * spec.groupSize; i++) {
            const v = dec.v[i]!;
            out[b * QK_K + i] = v < 0 ? -fround(db * -v) : fround(db * v);
          }
        }
      }
    },
    dot(w, wOffset, x, xOffset, cols) {
      let acc = 0;
      for (let b = 0; b < cols / QK_K; b++) {
        const xb = xOffset + b * Q8_K_BYTES;
        const dw = spec.decode(w, wOffset + b * spec.blockBytes, dec);
        const d = fround(fround(q8kScale(x, xb) * dw) * spec.k);
        acc = fround(acc + fround(d * fround(scaledIntegerSum(dec, spec.groupSize, x, xb))));
      }
      return acc;
    },
  };
}

/** IQ2_XXS: d at 0, then per 32 values 8 bytes: 4 grid indices, and a u32 of 4×7 sign bits plus s (top 4 bits). */
export const IQ2_XXS = gridFormat({
  type: GgmlType.IQ2_XXS,
  name: "IQ2_XXS",
  blockBytes: 66,
  groupSize: 32,
  k: 0.125,
  groupScale: (d, ls) => fround(fround(d * (ls / 2)) * 0.25),
  decode(b, at, dec) {
    for (let ib = 0; ib < 8; ib++) {
      const base = at + 2 + 8 * ib;
      const aux = u32(b, base + 4);
      dec.scale[ib] = 2 * (aux >>> 28) + 1;
      for (let l = 0; l < 4; l++) signed8(dec.v, 32 * ib + 8 * l, IQ2XXS_GRID, b[base + l]!, KSIGNS[(aux >>> (7 * l)) & 127]!);
    }
    return f16(b, at);
  },
});

/** IQ2_XS: d at 0, qs[32] (u16: 9-bit grid index, 7 sign bits) at 2, scales[8] (two 4-bit s) at 66. */
export const IQ2_XS = gridFormat({
  type: GgmlType.IQ2_XS,
  name: "IQ2_XS",
  blockBytes: 74,
  groupSize: 16,
  k: 0.125,
  groupScale: (d, ls) => fround(fround(d * (ls / 2)) * 0.25),
  decode(b, at, dec) {
    for (let g = 0; g < 16; g++) dec.scale[g] = 2 * ((b[at + 66 + (g >> 1)]! >> (4 * (g & 1))) & 0x0f) + 1;
    for (let u = 0; u < 32; u++) {
      const q = u16(b, at + 2 + 2 * u);
      signed8(dec.v, 8 * u, IQ2XS_GRID, q & 511, KSIGNS[q >> 9]!);
    }
    return f16(b, at);
  },
});

/**
 * IQ2_S: d at 0, qs[32] (grid index low bits) at 2, signs[32] at 34, qh[8] (2 high index bits per
 * 8 values) at 66, scales[8] (two 4-bit s) at 74.
 */
export const IQ2_S = gridFormat({
  type: GgmlType.IQ2_S,
  name: "IQ2_S",
  blockBytes: 82,
  groupSize: 16,
  k: 0.125,
  groupScale: (d, ls) => fround(fround(d * (ls / 2)) * 0.25),
  decode(b, at, dec) {
    for (let g = 0; g < 16; g++) dec.scale[g] = 2 * ((b[at + 74 + (g >> 1)]! >> (4 * (g & 1))) & 0x0f) + 1;
    for (let u = 0; u < 32; u++) {
      const ib = u >> 2;
      const l = u & 3;
      const entry = b[at + 2 + u]! | ((b[at + 66 + ib]! << (8 - 2 * l)) & 0x300);
      signed8(dec.v, 8 * u, IQ2S_GRID, entry, b[at + 34 + u]!);
    }
    return f16(b, at);
  },
});

/** IQ3_XXS: d at 0, 64 grid indices at 2, then per 32 values a u32 of 4×7 sign bits plus s at 66. */
export const IQ3_XXS = gridFormat({
  type: GgmlType.IQ3_XXS,
  name: "IQ3_XXS",
  blockBytes: 98,
  groupSize: 32,
  k: 0.25,
  groupScale: (d, ls) => fround(fround(d * (ls / 2)) * 0.5),
  decode(b, at, dec) {
    for (let ib = 0; ib < 8; ib++) {
      const aux = u32(b, at + 66 + 4 * ib);
      dec.scale[ib] = 2 * (aux >>> 28) + 1;
      for (let l = 0; l < 4; l++) {
        const q = at + 2 + 8 * ib + 2 * l;
        signed4x2(dec.v, 32 * ib + 8 * l, IQ3XXS_GRID, b[q]!, b[q + 1]!, KSIGNS[(aux >>> (7 * l)) & 127]!);
      }
    }
    return f16(b, at);
  },
});

/**
 * IQ3_S: d at 0, qs[64] (grid index low bits) at 2, qh[8] (the 9th bits) at 66, signs[32] at 74,
 * scales[4] (two 4-bit s) at 106. Its dequantization has no ½ or ¼: k = 1.
 */
export const IQ3_S = gridFormat({
  type: GgmlType.IQ3_S,
  name: "IQ3_S",
  blockBytes: 110,
  groupSize: 32,
  k: 1,
  groupScale: (d, ls) => fround(d * ls),
  decode(b, at, dec) {
    for (let ib = 0; ib < 8; ib++) {
      dec.scale[ib] = 2 * ((b[at + 106 + (ib >> 1)]! >> (4 * (ib & 1))) & 0x0f) + 1;
      const qh = b[at + 66 + ib]!;
      for (let l = 0; l < 4; l++) {
        const q = at + 2 + 8 * ib + 2 * l;
        const first = b[q]! | ((qh << (8 - 2 * l)) & 256);
        const second = b[q + 1]! | ((qh << (7 - 2 * l)) & 256);
        signed4x2(dec.v, 32 * ib + 8 * l, IQ3S_GRID, first, second, b[at + 74 + 4 * ib + l]!);
      }
    }
    return f16(b, at);
  },
});

/** An IQ1 superblock decoded: grid values, the ls of each group, δ = ±1 for each 8 values. */
interface Iq1Decoded extends Decoded {
  delta: Int32Array;
}

interface Iq1Spec {
  type: GgmlType;
  name: string;
  blockBytes: number;
  groupSize: number;
  /** Decodes v, scale and delta; returns the f32 block scale. */
  decode(b: Uint8Array, at: number, dec: Iq1Decoded): number;
}

function iq1Format(spec: Iq1Spec): WeightFormat {
  const groups = QK_K / spec.groupSize;
  const dec: Iq1Decoded = { ...decodedBuffers(groups), delta: new Int32Array(QK_K / 8) };
  return {
    type: spec.type,
    name: spec.name,
    blockValues: QK_K,
    blockBytes: spec.blockBytes,
    activation: "q8_k",
    dequantize(bytes, offset, out) {
      for (let b = 0; b < out.length / QK_K; b++) {
        const d = spec.decode(bytes, offset + b * spec.blockBytes, dec);
        for (let i = 0; i < QK_K; i++) {
          const dl = fround(d * dec.scale[Math.floor(i / spec.groupSize)]!);
          out[b * QK_K + i] = fround(dl * (dec.v[i]! + 0.125 * dec.delta[i >> 3]!));
        }
      }
    },
    dot(w, wOffset, x, xOffset, cols) {
      let acc = 0;
      for (let b = 0; b < cols / QK_K; b++) {
        const xb = xOffset + b * Q8_K_BYTES;
        const scale = spec.decode(w, wOffset + b * spec.blockBytes, dec);
        const sumi = scaledIntegerSum(dec, spec.groupSize, x, xb);
        let sumi1 = 0;
        for (let u = 0; u < QK_K / 8; u++) {
          let sum = 0;
          for (let i = 8 * u; i < 8 * u + 8; i++) sum += q8kQuant(x, xb, i);
          sumi1 += dec.scale[Math.floor((8 * u) / spec.groupSize)]! * dec.delta[u]! * sum;
        }
        const d = fround(fround(q8kScale(x, xb) * scale) * 0.125);
        acc = fround(acc + fround(d * fround(8 * sumi + sumi1)));
      }
      return acc;
    },
  };
}

/** IQ1_S: d at 0, qs[32] (grid index low bits) at 2, qh[8] (u16: 4×3 index bits, s, δ sign) at 34. */
export const IQ1_S = iq1Format({
  type: GgmlType.IQ1_S,
  name: "IQ1_S",
  blockBytes: 50,
  groupSize: 32,
  decode(b, at, dec) {
    for (let ib = 0; ib < 8; ib++) {
      const qh = u16(b, at + 34 + 2 * ib);
      dec.scale[ib] = 2 * ((qh >> 12) & 7) + 1;
      for (let l = 0; l < 4; l++) {
        const entry = b[at + 2 + 4 * ib + l]! | (((qh >> (3 * l)) & 7) << 8);
        for (let j = 0; j < 8; j++) dec.v[32 * ib + 8 * l + j] = IQ1S_GRID[8 * entry + j]!;
        dec.delta[4 * ib + l] = qh & 0x8000 ? -1 : 1;
      }
    }
    return f16(b, at);
  },
});

/**
 * IQ1_M: qs[32] at 0, qh[16] (per 8 values 3 index bits and the δ sign) at 32, scales[8] at 48:
 * four u16 holding two 3-bit s per 32 values in their low 12 bits, and the fp16 block scale
 * scattered over their top nibbles.
 */
export const IQ1_M = iq1Format({
  type: GgmlType.IQ1_M,
  name: "IQ1_M",
  blockBytes: 56,
  groupSize: 16,
  decode(b, at, dec) {
    const sc = [0, 1, 2, 3].map((k) => u16(b, at + 48 + 2 * k));
    const scaleBits = (sc[0]! >> 12) | ((sc[1]! >> 8) & 0x00f0) | ((sc[2]! >> 4) & 0x0f00) | (sc[3]! & 0xf000);
    for (let ib = 0; ib < 8; ib++) {
      const s = sc[ib >> 1]! >> (6 * (ib & 1));
      dec.scale[2 * ib] = 2 * (s & 7) + 1;
      dec.scale[2 * ib + 1] = 2 * ((s >> 3) & 7) + 1;
      for (let l = 0; l < 4; l++) {
        const qh = b[at + 32 + 2 * ib + (l >> 1)]!;
        const high = l & 1 ? qh >> 4 : qh;
        const entry = b[at + 4 * ib + l]! | ((high & 7) << 8);
        for (let j = 0; j < 8; j++) dec.v[32 * ib + 8 * l + j] = IQ1S_GRID[8 * entry + j]!;
        dec.delta[4 * ib + l] = high & 0x08 ? -1 : 1;
      }
    }
    return fp16ToFp32(scaleBits);
  },
});
