// 32-value block formats (Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4) and the 256-value ones without grids
// (IQ4_XS, TQ1_0, TQ2_0) decoded to the canonical form (canonical.ts), after ggml-common.h. Each
// block's first 16 values come from the low nibbles (or bits) of its bytes, the next 16 from the high.

import { CANON_F0, CANON_F1, CANON_VALUES, setGroups } from "./canonical";
import { FP4_VALUES, IQ4NL_VALUES, constant, halfToF32 } from "./simd";

/** The 16 low and 16 high nibbles of the 16 bytes at q, as 32 bytes at v. */
@inline function nibbles(q: usize, v: usize): void {
  const w = v128.load(q);
  const mask = i8x16.splat(0x0f);
  v128.store(v, v128.and(w, mask));
  v128.store(v, v128.and(i16x8.shr_u(w, 4), mask), 16);
}

/** Bits 0-15 and 16-31 of the u32 at p as 0/16 bytes (Q5's fifth bit of values 0-15, 16-31). */
@inline function fifthBits(p: usize, lo: usize, hi: usize): void {
  const bits = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const sixteen = i8x16.splat(16);
  const zero = i8x16.splat(0);
  // Bytes 0-7 test bit k of the first qh byte, 8-15 of the second (and 2, 3 for the high half).
  const qh = v128.load32_zero(p);
  const a = i8x16.shuffle(qh, qh, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const b = i8x16.shuffle(qh, qh, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  v128.store(lo, v128.and(v128.not(i8x16.eq(v128.and(a, bits), zero)), sixteen));
  v128.store(hi, v128.and(v128.not(i8x16.eq(v128.and(b, bits), zero)), sixteen));
}

function small(c: usize, f0: f32, f1: f32): void {
  setGroups(c, 0, 2, 1, 0);
  store<f32>(c + CANON_F0, f0);
  store<f32>(c + CANON_F1, f1);
}

/** Q4_1: d, m (f16), 16 bytes of nibbles; value = nibble (FORM_Q81: x = d·q + m). */
export function decodeQ4_1(b: usize, c: usize): void {
  nibbles(b + 4, c + CANON_VALUES);
  small(c, halfToF32(<i32>load<u16>(b)), halfToF32(<i32>load<u16>(b, 2)));
}

/** Q5_0: d (f16), 32 fifth bits, 16 bytes of nibbles; value = (nibble | bit << 4) − 16. */
export function decodeQ5_0(b: usize, c: usize): void {
  const v = c + CANON_VALUES;
  nibbles(b + 6, v);
  fifthBits(b + 2, v + 32, v + 48);
  const sixteen = i8x16.splat(16);
  v128.store(v, i8x16.sub(v128.or(v128.load(v), v128.load(v, 32)), sixteen));
  v128.store(v, i8x16.sub(v128.or(v128.load(v, 16), v128.load(v, 48)), sixteen), 16);
  small(c, halfToF32(<i32>load<u16>(b)), 1);
}

/** Q5_1: d, m (f16), 32 fifth bits, 16 bytes of nibbles; value = nibble | bit << 4. */
export function decodeQ5_1(b: usize, c: usize): void {
  const v = c + CANON_VALUES;
  nibbles(b + 8, v);
  fifthBits(b + 4, v + 32, v + 48);
  v128.store(v, v128.or(v128.load(v), v128.load(v, 32)));
  v128.store(v, v128.or(v128.load(v, 16), v128.load(v, 48)), 16);
  small(c, halfToF32(<i32>load<u16>(b)), halfToF32(<i32>load<u16>(b, 2)));
}

/** IQ4_NL: d (f16), 16 bytes of nibbles, each an index into kvalues_iq4nl. */
export function decodeIQ4_NL(b: usize, c: usize): void {
  const v = c + CANON_VALUES;
  nibbles(b + 2, v);
  const table = constant(IQ4NL_VALUES);
  v128.store(v, i8x16.swizzle(table, v128.load(v)));
  v128.store(v, i8x16.swizzle(table, v128.load(v, 16)), 16);
  small(c, halfToF32(<i32>load<u16>(b)), 1);
}

/** 0.5 · 2^(e − 127) as ggml's GGML_E8M0_TO_FP32_HALF makes it (subnormal for e < 2). */
@inline function e8m0Half(e: i32): f32 {
  return reinterpret<f32>(e < 2 ? 0x00200000 << e : (e - 1) << 23);
}

/** MXFP4: an E8M0 exponent, 16 bytes of E2M1 nibbles (kvalues_mxfp4, twice the values). */
export function decodeMXFP4(b: usize, c: usize): void {
  const v = c + CANON_VALUES;
  nibbles(b + 1, v);
  const table = constant(FP4_VALUES);
  v128.store(v, i8x16.swizzle(table, v128.load(v)));
  v128.store(v, i8x16.swizzle(table, v128.load(v, 16)), 16);
  small(c, e8m0Half(<i32>load<u8>(b)), 1);
}

/**
 * IQ4_XS: d (f16), 16 high scale bits, 4 bytes of low scale nibbles, 128 bytes of kvalues_iq4nl
 * nibbles (16 per 32 values); scale of sub-block j = 6 bits − 32.
 */
export function decodeIQ4_XS(b: usize, c: usize): void {
  const table = constant(IQ4NL_VALUES);
  const high = <i32>load<u16>(b, 2);
  for (let j = 0; j < 8; j++) {
    const v = c + CANON_VALUES + (<usize>j << 5);
    nibbles(b + 8 + (<usize>j << 4), v);
    v128.store(v, i8x16.swizzle(table, v128.load(v)));
    v128.store(v, i8x16.swizzle(table, v128.load(v, 16)), 16);
    const ls = ((<i32>load<u8>(b + 4 + <usize>(j >> 1)) >> (4 * (j & 1))) & 0xf) | (((high >> (2 * j)) & 3) << 4);
    setGroups(c, 2 * j, 2 * j + 2, ls - 32, 0);
  }
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b)));
  store<f32>(c + CANON_F1, 1);
}

/** TQ2_0: 64 bytes of 2-bit values (value − 1), d (f16). Bytes j..j+31 hold values 4j + 32l + m. */
export function decodeTQ2_0(b: usize, c: usize): void {
  const three = i8x16.splat(3);
  const one = i8x16.splat(1);
  for (let j = 0; j < 2; j++) {
    const q0 = v128.load(b + (<usize>j << 5));
    const q1 = v128.load(b + (<usize>j << 5), 16);
    for (let l = 0; l < 4; l++) {
      const v = c + CANON_VALUES + (<usize>j << 7) + (<usize>l << 5);
      v128.store(v, i8x16.sub(v128.and(i8x16.shr_u(q0, <u32>(2 * l)), three), one));
      v128.store(v, i8x16.sub(v128.and(i8x16.shr_u(q1, <u32>(2 * l)), three), one), 16);
    }
  }
  setGroups(c, 0, 16, 1, 0);
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b, 64)));
  store<f32>(c + CANON_F1, 1);
}

/** The base-3 digit selected by `pow3` of each byte of 16 (ggml's ((u8)(q·pow3)·3) >> 8), minus 1. */
@inline function ternary(q: v128, pow3: i32): v128 {
  const m = i16x8.splat(<i16>pow3);
  const byte = i16x8.splat(0xff);
  const three = i16x8.splat(3);
  const lo = i16x8.shr_u(i16x8.mul(v128.and(i16x8.mul(i16x8.extend_low_i8x16_u(q), m), byte), three), 8);
  const hi = i16x8.shr_u(i16x8.mul(v128.and(i16x8.mul(i16x8.extend_high_i8x16_u(q), m), byte), three), 8);
  return i8x16.sub(i8x16.narrow_i16x8_u(lo, hi), i8x16.splat(1));
}

/**
 * TQ1_0: 48 bytes of five base-3 digits each, 4 bytes of four digits, d (f16). Bytes 0-31 give
 * values 32n + m (digit n), bytes 32-47 values 160 + 16n + m, the last 4 values 240 + 4n + j.
 */
export function decodeTQ1_0(b: usize, c: usize): void {
  const v = c + CANON_VALUES;
  const q0 = v128.load(b);
  const q1 = v128.load(b, 16);
  const q2 = v128.load(b, 32);
  const qh = v128.load32_zero(b + 48);
  let pow3 = 1;
  for (let n = 0; n < 5; n++) {
    v128.store(v + (<usize>n << 5), ternary(q0, pow3));
    v128.store(v + (<usize>n << 5), ternary(q1, pow3), 16);
    v128.store(v + 160 + (<usize>n << 4), ternary(q2, pow3));
    pow3 *= 3;
  }
  // Four digits of the last 4 bytes: values 240 + 4n + j for digit n of byte j.
  const spread = i8x16.shuffle(qh, qh, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const m = i16x8(1, 1, 1, 1, 3, 3, 3, 3);
  const m2 = i16x8(9, 9, 9, 9, 27, 27, 27, 27);
  const byte = i16x8.splat(0xff);
  const three = i16x8.splat(3);
  const lo = i16x8.shr_u(i16x8.mul(v128.and(i16x8.mul(i16x8.extend_low_i8x16_u(spread), m), byte), three), 8);
  const hi = i16x8.shr_u(i16x8.mul(v128.and(i16x8.mul(i16x8.extend_high_i8x16_u(spread), m2), byte), three), 8);
  v128.store(v + 240, i8x16.sub(i8x16.narrow_i16x8_u(lo, hi), i8x16.splat(1)));
  setGroups(c, 0, 16, 1, 0);
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b, 52)));
  store<f32>(c + CANON_F1, 1);
}

/** Q1_0: d (f16), 16 bytes of sign bits for 128 values (bit j of byte i: value 8i + j is +1, else −1). */
export function decodeQ1_0(b: usize, c: usize): void {
  for (let i = 0; i < 128; i++) {
    const bit = (<i32>load<u8>(b + 2 + <usize>(i >> 3)) >> (i & 7)) & 1;
    store<i8>(c + CANON_VALUES + <usize>i, <i8>(2 * bit - 1));
  }
  setGroups(c, 0, 8, 1, 0);
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b)));
  store<f32>(c + CANON_F1, 1);
}

/** Q2_0: d (f16), 16 bytes of 2-bit values for 64 (value 4i + j: bits 2j of byte i, minus 1). */
export function decodeQ2_0(b: usize, c: usize): void {
  for (let i = 0; i < 64; i++) {
    const q = (<i32>load<u8>(b + 2 + <usize>(i >> 2)) >> (2 * (i & 3))) & 3;
    store<i8>(c + CANON_VALUES + <usize>i, <i8>(q - 1));
  }
  setGroups(c, 0, 4, 1, 0);
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b)));
  store<f32>(c + CANON_F1, 1);
}
