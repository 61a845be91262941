import { GgmlType } from "../../gguf/types.js";
import { QK_K, f16, i8 } from "./common.js";
import { Decoded, superblockFormat } from "./superblock.js";

/**
 * The K-quants Q2_K … Q6_K: 256-value superblocks of 16- or 32-value groups, each with an integer
 * scale (and, for Q2_K/Q4_K/Q5_K, an integer min) under the superblock's fp16 d (and dmin). Value p
 * of a superblock is laid out in ggml's order: 128-value halves (Q2_K, Q3_K, Q6_K) or 64-value
 * quarters (Q4_K, Q5_K) whose bytes carry successive bit planes.
 *
 * Products (see superblock.ts): Q2_K, Q4_K, Q5_K are "affine", f32(f32(d·isum) − f32(dmin·summs))
 * with unsigned values and scales; Q3_K (values −4..3, scales sc−32) and Q6_K (values −32..31,
 * int8 scales) are "scaled", f32(d·isum).
 */

/** Q2_K: scales[16] (low nibble scale, high nibble min) at 0, qs[64] at 16, d at 80, dmin at 82. */
function decodeQ2_K(b: Uint8Array, at: number, dec: Decoded) {
  for (let g = 0; g < 16; g++) {
    const s = b[at + g]!;
    dec.scale[g] = s & 0x0f;
    dec.min[g] = s >> 4;
  }
  for (let p = 0; p < QK_K; p++) {
    const half = p >> 7;
    const plane = (p >> 5) & 3;
    dec.v[p] = (b[at + 16 + half * 32 + (p & 31)]! >> (2 * plane)) & 3;
  }
  return { d: f16(b, at + 80), dmin: f16(b, at + 82) };
}

/**
 * Q3_K: hmask[32] at 0 (bit 4·half + plane: the value's high bit, set meaning "no −4"), qs[64]
 * (low 2 bits) at 32, 16 6-bit scales packed into 12 bytes at 96, d at 108.
 */
function decodeQ3_K(b: Uint8Array, at: number, dec: Decoded) {
  const s = at + 96;
  for (let i = 0; i < 4; i++) {
    const hi = b[s + 8 + i]!;
    dec.scale[i] = ((b[s + i]! & 0x0f) | ((hi & 3) << 4)) - 32;
    dec.scale[4 + i] = ((b[s + 4 + i]! & 0x0f) | (((hi >> 2) & 3) << 4)) - 32;
    dec.scale[8 + i] = ((b[s + i]! >> 4) | (((hi >> 4) & 3) << 4)) - 32;
    dec.scale[12 + i] = ((b[s + 4 + i]! >> 4) | (((hi >> 6) & 3) << 4)) - 32;
  }
  for (let p = 0; p < QK_K; p++) {
    const half = p >> 7;
    const plane = (p >> 5) & 3;
    const l = p & 31;
    const low = (b[at + 32 + half * 32 + l]! >> (2 * plane)) & 3;
    const high = (b[at + l]! >> (4 * half + plane)) & 1;
    dec.v[p] = low - (high ? 0 : 4);
  }
  dec.min.fill(0);
  return { d: f16(b, at + 108), dmin: 0 };
}

/** ggml's get_scale_min_k4: group j's 6-bit scale and min from the 12 packed bytes at s. */
function scaleMinK4(b: Uint8Array, s: number, j: number, dec: Decoded): void {
  if (j < 4) {
    dec.scale[j] = b[s + j]! & 63;
    dec.min[j] = b[s + j + 4]! & 63;
  } else {
    dec.scale[j] = (b[s + j + 4]! & 0x0f) | ((b[s + j - 4]! >> 6) << 4);
    dec.min[j] = (b[s + j + 4]! >> 4) | ((b[s + j]! >> 6) << 4);
  }
}

/** Q4_K: d at 0, dmin at 2, 8 scales and mins in 12 bytes at 4, qs[128] at 16 (nibbles). */
function decodeQ4_K(b: Uint8Array, at: number, dec: Decoded) {
  for (let j = 0; j < 8; j++) scaleMinK4(b, at + 4, j, dec);
  for (let p = 0; p < QK_K; p++) {
    const byte = b[at + 16 + (p >> 6) * 32 + (p & 31)]!;
    dec.v[p] = (p >> 5) & 1 ? byte >> 4 : byte & 0x0f;
  }
  return { d: f16(b, at), dmin: f16(b, at + 2) };
}

/** Q5_K: as Q4_K, with qh[32] at 16 (bit 2·quarter + nibble: the 5th bit) and qs[128] at 48. */
function decodeQ5_K(b: Uint8Array, at: number, dec: Decoded) {
  for (let j = 0; j < 8; j++) scaleMinK4(b, at + 4, j, dec);
  for (let p = 0; p < QK_K; p++) {
    const quarter = p >> 6;
    const upper = (p >> 5) & 1;
    const l = p & 31;
    const byte = b[at + 48 + quarter * 32 + l]!;
    const high = (b[at + 16 + l]! >> (2 * quarter + upper)) & 1;
    dec.v[p] = (upper ? byte >> 4 : byte & 0x0f) + 16 * high;
  }
  return { d: f16(b, at), dmin: f16(b, at + 2) };
}

/** Q6_K: ql[128] at 0 (low 4 bits), qh[64] at 128 (high 2 bits), int8 scales[16] at 192, d at 208. */
function decodeQ6_K(b: Uint8Array, at: number, dec: Decoded) {
  for (let g = 0; g < 16; g++) dec.scale[g] = i8(b, at + 192 + g);
  for (let p = 0; p < QK_K; p++) {
    const half = p >> 7;
    const plane = (p >> 5) & 3;
    const l = p & 31;
    const low = b[at + half * 64 + l + (plane & 1) * 32]!;
    const nibble = plane >= 2 ? low >> 4 : low & 0x0f;
    const high = (b[at + 128 + half * 32 + l]! >> (2 * plane)) & 3;
    dec.v[p] = (nibble | (high << 4)) - 32;
  }
  dec.min.fill(0);
  return { d: f16(b, at + 208), dmin: 0 };
}

export const Q2_K = superblockFormat({ type: GgmlType.Q2_K, name: "Q2_K", blockBytes: 84, groupSize: 16, form: "affine", decode: decodeQ2_K });
export const Q3_K = superblockFormat({ type: GgmlType.Q3_K, name: "Q3_K", blockBytes: 110, groupSize: 16, form: "scaled", decode: decodeQ3_K });
export const Q4_K = superblockFormat({ type: GgmlType.Q4_K, name: "Q4_K", blockBytes: 144, groupSize: 32, form: "affine", decode: decodeQ4_K });
export const Q5_K = superblockFormat({ type: GgmlType.Q5_K, name: "Q5_K", blockBytes: 176, groupSize: 32, form: "affine", decode: decodeQ5_K });
export const Q6_K = superblockFormat({ type: GgmlType.Q6_K, name: "Q6_K", blockBytes: 210, groupSize: 16, form: "scaled", decode: decodeQ6_K });
