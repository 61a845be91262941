import { GgmlType } from "../../gguf/types.js";
import { QK_K, f16 } from "./common.js";
import { Decoded, superblockFormat } from "./superblock.js";

/**
 * The ternary types TQ1_0 and TQ2_0: 256 values in {−1, 0, 1} under one fp16 scale. Product per
 * superblock: f32(d · isum), d = f32(dx · fp16 d), isum = Σ v_i·q_i (one group, scale 1).
 */

/** pow3[n]: multiplying a byte by it (mod 256) brings trit n to the top, as ggml packs them. */
const POW3 = [1, 3, 9, 27, 81, 243];

/** Trit n of a TQ1_0 byte: the top of (byte · 3^n mod 256) scaled to 0..2, minus 1. */
function trit(byte: number, n: number): number {
  return (((byte * POW3[n]!) & 0xff) * 3 >> 8) - 1;
}

/**
 * TQ1_0: qs[48] at 0 (5 trits a byte: bytes 0..31 give values n·32 + m, bytes 32..47 values
 * 160 + n·16 + m), qh[4] at 48 (4 trits a byte: values 240 + n·4 + j), d at 52.
 */
function decodeTQ1_0(b: Uint8Array, at: number, dec: Decoded) {
  for (let n = 0; n < 5; n++) {
    for (let m = 0; m < 32; m++) dec.v[n * 32 + m] = trit(b[at + m]!, n);
    for (let m = 0; m < 16; m++) dec.v[160 + n * 16 + m] = trit(b[at + 32 + m]!, n);
  }
  for (let n = 0; n < 4; n++) {
    for (let j = 0; j < 4; j++) dec.v[240 + n * 4 + j] = trit(b[at + 48 + j]!, n);
  }
  return { d: f16(b, at + 52), dmin: 0 };
}

/** TQ2_0: qs[64] at 0 (2 bits a value, minus 1: byte j·32 + m, bits 2l, is value j·128 + l·32 + m), d at 64. */
function decodeTQ2_0(b: Uint8Array, at: number, dec: Decoded) {
  for (let p = 0; p < QK_K; p++) {
    const byte = b[at + (p >> 7) * 32 + (p & 31)]!;
    dec.v[p] = ((byte >> (2 * ((p >> 5) & 3))) & 3) - 1;
  }
  return { d: f16(b, at + 64), dmin: 0 };
}

function unitScale(decode: (b: Uint8Array, at: number, dec: Decoded) => { d: number; dmin: number }) {
  return (b: Uint8Array, at: number, dec: Decoded) => {
    dec.scale[0] = 1;
    dec.min[0] = 0;
    return decode(b, at, dec);
  };
}

export const TQ1_0 = superblockFormat({ type: GgmlType.TQ1_0, name: "TQ1_0", blockBytes: 54, groupSize: QK_K, form: "scaled", decode: unitScale(decodeTQ1_0) });
export const TQ2_0 = superblockFormat({ type: GgmlType.TQ2_0, name: "TQ2_0", blockBytes: 66, groupSize: QK_K, form: "scaled", decode: unitScale(decodeTQ2_0) });
