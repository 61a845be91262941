// K-quant superblocks (256 values) decoded to the canonical form (canonical.ts), following the block
// layouts of ggml-common.h. Values are stored unsigned where the format has mins (Q2_K, Q4_K, Q5_K:
// FORM_DMIN) and signed where it has none (Q3_K, Q6_K: FORM_DK with f1 = 1).

import { CANON_F0, CANON_F1, CANON_VALUES, setGroups } from "./canonical";
import { halfToF32 } from "./simd";

/** The 6-bit scale and min of sub-block j of a Q4_K/Q5_K superblock (its 12 scale bytes at q), as scale | min << 8. */
@inline export function scaleMinK4(q: usize, j: i32): i32 {
  let sc: i32, m: i32;
  if (j < 4) {
    sc = <i32>load<u8>(q + <usize>j) & 63;
    m = <i32>load<u8>(q + <usize>j + 4) & 63;
  } else {
    sc = (<i32>load<u8>(q + <usize>j + 4) & 0xf) | ((<i32>load<u8>(q + <usize>j - 4) >> 6) << 4);
    m = (<i32>load<u8>(q + <usize>j + 4) >> 4) | ((<i32>load<u8>(q + <usize>j) >> 6) << 4);
  }
  return sc | (m << 8);
}

/** Q4_K: d, dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of nibbles (32 per 64 values). */
export function decodeQ4K(b: usize, c: usize): void {
  const mask = i8x16.splat(0x0f);
  for (let j = 0; j < 4; j++) {
    const q = b + 16 + (<usize>j << 5);
    const v = c + CANON_VALUES + (<usize>j << 6);
    const w0 = v128.load(q);
    const w1 = v128.load(q, 16);
    v128.store(v, v128.and(w0, mask));
    v128.store(v, v128.and(w1, mask), 16);
    v128.store(v, v128.and(i16x8.shr_u(w0, 4), mask), 32);
    v128.store(v, v128.and(i16x8.shr_u(w1, 4), mask), 48);
  }
  for (let j = 0; j < 8; j++) {
    const sm = scaleMinK4(b + 4, j);
    setGroups(c, 2 * j, 2 * j + 2, sm & 0xff, sm >> 8);
  }
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b)));
  store<f32>(c + CANON_F1, halfToF32(<i32>load<u16>(b, 2)));
}

/** Q5_K: as Q4_K, with a fifth bit per value in 32 bytes of qh (bit 2j: low nibbles of chunk j, 2j+1: high). */
export function decodeQ5K(b: usize, c: usize): void {
  const mask = i8x16.splat(0x0f);
  const sixteen = i8x16.splat(16);
  const qh0 = v128.load(b + 16);
  const qh1 = v128.load(b + 32);
  for (let j = 0; j < 4; j++) {
    const q = b + 48 + (<usize>j << 5);
    const v = c + CANON_VALUES + (<usize>j << 6);
    const w0 = v128.load(q);
    const w1 = v128.load(q, 16);
    const shift: i32 = 2 * j;
    const loValue: i32 = 1 << shift;
    const hiValue: i32 = 2 << shift;
    const lo = i8x16.splat(<i8>loValue);
    const hi = i8x16.splat(<i8>hiValue);
    v128.store(v, v128.or(v128.and(w0, mask), v128.and(v128.not(i8x16.eq(v128.and(qh0, lo), i8x16.splat(0))), sixteen)));
    v128.store(v, v128.or(v128.and(w1, mask), v128.and(v128.not(i8x16.eq(v128.and(qh1, lo), i8x16.splat(0))), sixteen)), 16);
    v128.store(v, v128.or(v128.and(i16x8.shr_u(w0, 4), mask), v128.and(v128.not(i8x16.eq(v128.and(qh0, hi), i8x16.splat(0))), sixteen)), 32);
    v128.store(v, v128.or(v128.and(i16x8.shr_u(w1, 4), mask), v128.and(v128.not(i8x16.eq(v128.and(qh1, hi), i8x16.splat(0))), sixteen)), 48);
  }
  for (let j = 0; j < 8; j++) {
    const sm = scaleMinK4(b + 4, j);
    setGroups(c, 2 * j, 2 * j + 2, sm & 0xff, sm >> 8);
  }
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b)));
  store<f32>(c + CANON_F1, halfToF32(<i32>load<u16>(b, 2)));
}

/**
 * Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, d (f16). Each half
 * of 128 values takes 64 nibble bytes and 32 qh bytes; value = (nibble | 2 bits << 4) − 32.
 */
export function decodeQ6K(b: usize, c: usize): void {
  const mask = i8x16.splat(0x0f);
  const three = i8x16.splat(3);
  const bias = i8x16.splat(32);
  for (let half = 0; half < 2; half++) {
    const ql = b + (<usize>half << 6);
    const qh = b + 128 + (<usize>half << 5);
    const v = c + CANON_VALUES + (<usize>half << 7);
    for (let k: usize = 0; k < 32; k += 16) {
      const l0 = v128.load(ql + k);
      const l1 = v128.load(ql + k + 32);
      const h = v128.load(qh + k);
      v128.store(v + k, i8x16.sub(v128.or(v128.and(l0, mask), i8x16.shl(v128.and(h, three), 4)), bias));
      v128.store(v + k + 32, i8x16.sub(v128.or(v128.and(l1, mask), i8x16.shl(v128.and(i8x16.shr_u(h, 2), three), 4)), bias));
      v128.store(v + k + 64, i8x16.sub(v128.or(i8x16.shr_u(l0, 4), i8x16.shl(v128.and(i8x16.shr_u(h, 4), three), 4)), bias));
      v128.store(v + k + 96, i8x16.sub(v128.or(i8x16.shr_u(l1, 4), i8x16.shl(i8x16.shr_u(h, 6), 4)), bias));
    }
  }
  for (let g = 0; g < 16; g++) setGroups(c, g, g + 1, <i32>load<i8>(b + 192 + <usize>g), 0);
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b, 208)));
  store<f32>(c + CANON_F1, 1);
}

/**
 * Q3_K: 32 bytes of high bits (hmask), 64 bytes of 2-bit quants, 12 bytes of 6-bit scales, d (f16).
 * Half h (128 values) takes 32 quant bytes; its j-th 32 values use bits 2j and hmask bit 4h + j;
 * value = (2 bits) − (high bit ? 0 : 4); scale = 6 bits − 32.
 */
export function decodeQ3K(b: usize, c: usize): void {
  const three = i8x16.splat(3);
  const four = i8x16.splat(4);
  const zero = i8x16.splat(0);
  const hm0 = v128.load(b);
  const hm1 = v128.load(b + 16);
  for (let half = 0; half < 2; half++) {
    const q0 = v128.load(b + 32 + (<usize>half << 5));
    const q1 = v128.load(b + 48 + (<usize>half << 5));
    for (let j = 0; j < 4; j++) {
      const shift: i32 = 4 * half + j;
      const bitValue: i32 = 1 << shift;
      const bit = i8x16.splat(<i8>bitValue);
      const v = c + CANON_VALUES + (<usize>half << 7) + (<usize>j << 5);
      const a0 = v128.and(i8x16.shr_u(q0, <u32>(2 * j)), three);
      const a1 = v128.and(i8x16.shr_u(q1, <u32>(2 * j)), three);
      v128.store(v, i8x16.sub(a0, v128.and(i8x16.eq(v128.and(hm0, bit), zero), four)));
      v128.store(v, i8x16.sub(a1, v128.and(i8x16.eq(v128.and(hm1, bit), zero), four)), 16);
    }
  }
  const a0 = load<u32>(b + 96);
  const a1 = load<u32>(b + 100);
  const t = load<u32>(b + 104);
  const s0 = (a0 & 0x0f0f0f0f) | (((t >> 0) & 0x03030303) << 4);
  const s1 = (a1 & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
  const s2 = ((a0 >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
  const s3 = ((a1 >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
  for (let g = 0; g < 4; g++) {
    setGroups(c, g, g + 1, <i32>((s0 >> (8 * g)) & 0xff) - 32, 0);
    setGroups(c, g + 4, g + 5, <i32>((s1 >> (8 * g)) & 0xff) - 32, 0);
    setGroups(c, g + 8, g + 9, <i32>((s2 >> (8 * g)) & 0xff) - 32, 0);
    setGroups(c, g + 12, g + 13, <i32>((s3 >> (8 * g)) & 0xff) - 32, 0);
  }
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b, 108)));
  store<f32>(c + CANON_F1, 1);
}

/**
 * Q2_K: 16 bytes of 4-bit scale | 4-bit min, 64 bytes of 2-bit quants, d and dmin (f16). Half h takes
 * 32 quant bytes; its j-th 32 values use bits 2j, the first 16 from bytes 0-15, the next from 16-31.
 */
export function decodeQ2K(b: usize, c: usize): void {
  const three = i8x16.splat(3);
  for (let half = 0; half < 2; half++) {
    const q0 = v128.load(b + 16 + (<usize>half << 5));
    const q1 = v128.load(b + 32 + (<usize>half << 5));
    for (let j = 0; j < 4; j++) {
      const v = c + CANON_VALUES + (<usize>half << 7) + (<usize>j << 5);
      v128.store(v, v128.and(i8x16.shr_u(q0, <u32>(2 * j)), three));
      v128.store(v, v128.and(i8x16.shr_u(q1, <u32>(2 * j)), three), 16);
    }
  }
  for (let g = 0; g < 16; g++) {
    const sc = <i32>load<u8>(b + <usize>g);
    setGroups(c, g, g + 1, sc & 0xf, sc >> 4);
  }
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b, 80)));
  store<f32>(c + CANON_F1, halfToF32(<i32>load<u16>(b, 82)));
}
