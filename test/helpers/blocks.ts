import { GgmlType, ggmlBlockSize, ggmlRowBytes } from "../../src/gguf/types.js";

/**
 * Where each block format keeps its f16 scales (byte offsets in a block). Random bytes elsewhere are
 * valid blocks of any of these formats; the scales are set to normal halves of moderate size
 * (2^-7 … 2^5) so that products stay finite.
 */
const F16_SCALES: Partial<Record<GgmlType, readonly number[]>> = {
  [GgmlType.Q4_1]: [0, 2], [GgmlType.Q5_0]: [0], [GgmlType.Q5_1]: [0, 2], [GgmlType.IQ4_NL]: [0],
  [GgmlType.Q2_K]: [80, 82], [GgmlType.Q3_K]: [108], [GgmlType.Q4_K]: [0, 2], [GgmlType.Q5_K]: [0, 2], [GgmlType.Q6_K]: [208],
  [GgmlType.IQ2_XXS]: [0], [GgmlType.IQ2_XS]: [0], [GgmlType.IQ2_S]: [0], [GgmlType.IQ3_XXS]: [0], [GgmlType.IQ3_S]: [0],
  [GgmlType.IQ1_S]: [0], [GgmlType.IQ4_XS]: [0], [GgmlType.TQ1_0]: [52], [GgmlType.TQ2_0]: [64],
  [GgmlType.Q1_0]: [0], [GgmlType.Q2_0]: [0],
  // MXFP4 has an E8M0 exponent and IQ1_M assembles its scale (both set below).
  [GgmlType.MXFP4]: [], [GgmlType.IQ1_M]: [],
};

/** The block formats (beyond Q4_0/Q8_0) the kernels decode block by block. */
export const BLOCK_TYPES = Object.keys(F16_SCALES).map(Number) as GgmlType[];

/** `rows` rows of `cols` random values of a block format (deterministic in `seed`). */
export function randomBlocks(type: GgmlType, rows: number, cols: number, seed: number): Uint8Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const rowBytes = ggmlRowBytes(type, cols);
  const bytes = Uint8Array.from({ length: rows * rowBytes }, () => next() & 0xff);
  const blockBytes = rowBytes / (cols / ggmlBlockSize(type));
  for (let at = 0; at < bytes.length; at += blockBytes) {
    for (const offset of F16_SCALES[type]!) {
      const half = ((8 + (next() % 12)) << 10) | (next() & 1023) | (next() & 0x8000);
      bytes[at + offset] = half & 0xff;
      bytes[at + offset + 1] = half >> 8;
    }
    // An E8M0 exponent near 127 (scale 2^-8 … 2^7).
    if (type === GgmlType.MXFP4) bytes[at] = 119 + (next() % 16);
    if (type === GgmlType.IQ1_M) {
      // The scale is the top nibbles of the four u16 at 48: a positive normal half.
      bytes[at + 53] = (bytes[at + 53]! & 0x3f) | 0x40;
      bytes[at + 55] = (bytes[at + 55]! & 0x0f) | 0x20;
    }
  }
  return bytes;
}
