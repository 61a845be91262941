// The i-quants on grids (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) decoded to the canonical
// form (canonical.ts), after ggml-common.h. Their codebooks lie in every arena's table region (written
// by src/kernels/wasm from src/quant/formats, the one copy of them): 8 (or 4) values per entry.
//
// Scales are the odd integers ggml multiplies by (2·ls + 1); the power of two ggml applies to the sum
// (0.125, 0.25) is f1. IQ1's delta (±1/8 per 32 or 8 values) is folded into the values, which are
// 8·grid ± 1, so that f1 = 0.125 applies to both.

import { CANON_F0, CANON_F1, CANON_VALUES, setGroups } from "./canonical";
import { halfToF32 } from "./simd";

/** Where the codebooks lie: the kernels' table region (layout.ts TABLES_OFFSET), then offsets in it. */
export const TABLES: usize = 4096;
export const IQ2XXS_GRID: usize = TABLES; // 256 × 8 magnitudes
export const IQ2XS_GRID: usize = TABLES + 2048; // 512 × 8
export const IQ2S_GRID: usize = TABLES + 6144; // 1024 × 8
export const IQ3XXS_GRID: usize = TABLES + 14336; // 256 × 4
export const IQ3S_GRID: usize = TABLES + 15360; // 512 × 4
export const IQ1S_GRID: usize = TABLES + 17408; // 2048 × 8 values (−1, 0, 1)
export const SIGN_MASKS: usize = TABLES + 33792; // 256 × 8: byte j = −1 where bit j of the index is set
export const TABLES_BYTES: usize = 35840;

/** Writes the sign masks (the codebooks come from outside). */
export function initSignMasks(): void {
  for (let i = 0; i < 256; i++) {
    for (let j = 0; j < 8; j++) store<u8>(SIGN_MASKS + (<usize>i << 3) + <usize>j, (i >> j) & 1 ? 0xff : 0);
  }
}

/** ksigns_iq2xs: 7 sign bits and an eighth that makes their count even. */
@inline function signs7(s: i32): i32 {
  return s | ((popcnt<i32>(s) & 1) << 7);
}

/** 16 values: two 8-value grid entries (at g0, g1) with the sign patterns s0, s1 (8 bits each) applied. */
@inline function signed16(g0: usize, g1: usize, s0: i32, s1: i32): v128 {
  const g = i64x2.replace_lane(i64x2.splat(load<u64>(g0)), 1, load<u64>(g1));
  const m = i64x2.replace_lane(i64x2.splat(load<u64>(SIGN_MASKS + (<usize>s0 << 3))), 1, load<u64>(SIGN_MASKS + (<usize>s1 << 3)));
  return i8x16.sub(v128.xor(g, m), m);
}

/** As signed16 for 4-value entries (IQ3): entries at a, b make 8 values with signs s0, c, d with s1. */
@inline function signed16x4(a: usize, b: usize, c: usize, d: usize, s0: i32, s1: i32): v128 {
  let g = i32x4.splat(load<u32>(a));
  g = i32x4.replace_lane(g, 1, load<u32>(b));
  g = i32x4.replace_lane(g, 2, load<u32>(c));
  g = i32x4.replace_lane(g, 3, load<u32>(d));
  const m = i64x2.replace_lane(i64x2.splat(load<u64>(SIGN_MASKS + (<usize>s0 << 3))), 1, load<u64>(SIGN_MASKS + (<usize>s1 << 3)));
  return i8x16.sub(v128.xor(g, m), m);
}

function finish(c: usize, b: usize, k: f32): void {
  store<f32>(c + CANON_F0, halfToF32(<i32>load<u16>(b)));
  store<f32>(c + CANON_F1, k);
}

/** IQ2_XXS: d, then per 32 values 4 grid bytes and a u32 of 4 × 7 sign bits and a 4-bit scale. */
export function decodeIQ2_XXS(b: usize, c: usize): void {
  for (let ib = 0; ib < 8; ib++) {
    const q = b + 2 + (<usize>ib << 3);
    const aux = load<u32>(q, 4);
    const v = c + CANON_VALUES + (<usize>ib << 5);
    for (let h = 0; h < 2; h++) {
      const l = 2 * h;
      v128.store(v + (<usize>h << 4), signed16(IQ2XXS_GRID + (<usize>load<u8>(q + <usize>l) << 3), IQ2XXS_GRID + (<usize>load<u8>(q + <usize>l + 1) << 3),
        signs7((aux >> (7 * l)) & 127), signs7((aux >> (7 * l + 7)) & 127)));
    }
    setGroups(c, 2 * ib, 2 * ib + 2, 2 * <i32>(aux >> 28) + 1, 0);
  }
  finish(c, b, 0.125);
}

/** IQ2_XS: d, 32 u16 (9-bit grid index, 7 sign bits), 8 bytes of two 4-bit scales (16 values each). */
export function decodeIQ2_XS(b: usize, c: usize): void {
  for (let ib = 0; ib < 8; ib++) {
    const q = b + 2 + (<usize>ib << 3);
    const v = c + CANON_VALUES + (<usize>ib << 5);
    for (let h = 0; h < 2; h++) {
      const q0 = <i32>load<u16>(q + (<usize>h << 2));
      const q1 = <i32>load<u16>(q + (<usize>h << 2) + 2);
      v128.store(v + (<usize>h << 4), signed16(IQ2XS_GRID + (<usize>(q0 & 511) << 3), IQ2XS_GRID + (<usize>(q1 & 511) << 3), signs7(q0 >> 9), signs7(q1 >> 9)));
    }
    const sc = <i32>load<u8>(b + 66 + <usize>ib);
    setGroups(c, 2 * ib, 2 * ib + 1, 2 * (sc & 0xf) + 1, 0);
    setGroups(c, 2 * ib + 1, 2 * ib + 2, 2 * (sc >> 4) + 1, 0);
  }
  finish(c, b, 0.125);
}

/** IQ2_S: d, 32 grid bytes, 32 sign bytes, 8 bytes of 2 high index bits × 4, 8 bytes of two 4-bit scales. */
export function decodeIQ2_S(b: usize, c: usize): void {
  for (let ib = 0; ib < 8; ib++) {
    const qs = b + 2 + (<usize>ib << 2);
    const signs = b + 34 + (<usize>ib << 2);
    const qh = <i32>load<u8>(b + 66 + <usize>ib);
    const v = c + CANON_VALUES + (<usize>ib << 5);
    for (let h = 0; h < 2; h++) {
      const l = 2 * h;
      const i0 = <i32>load<u8>(qs + <usize>l) | ((qh << (8 - 2 * l)) & 0x300);
      const i1 = <i32>load<u8>(qs + <usize>l + 1) | ((qh << (6 - 2 * l)) & 0x300);
      v128.store(v + (<usize>h << 4), signed16(IQ2S_GRID + (<usize>i0 << 3), IQ2S_GRID + (<usize>i1 << 3),
        <i32>load<u8>(signs + <usize>l), <i32>load<u8>(signs + <usize>l + 1)));
    }
    const sc = <i32>load<u8>(b + 74 + <usize>ib);
    setGroups(c, 2 * ib, 2 * ib + 1, 2 * (sc & 0xf) + 1, 0);
    setGroups(c, 2 * ib + 1, 2 * ib + 2, 2 * (sc >> 4) + 1, 0);
  }
  finish(c, b, 0.125);
}

/** IQ3_XXS: d, 64 grid bytes (4 values each), then per 32 values a u32 of 4 × 7 sign bits and a 4-bit scale. */
export function decodeIQ3_XXS(b: usize, c: usize): void {
  for (let ib = 0; ib < 8; ib++) {
    const q = b + 2 + (<usize>ib << 3);
    const aux = load<u32>(b + 66 + (<usize>ib << 2));
    const v = c + CANON_VALUES + (<usize>ib << 5);
    for (let h = 0; h < 2; h++) {
      const l = 2 * h;
      const p = q + (<usize>l << 1);
      v128.store(v + (<usize>h << 4), signed16x4(
        IQ3XXS_GRID + (<usize>load<u8>(p) << 2), IQ3XXS_GRID + (<usize>load<u8>(p + 1) << 2),
        IQ3XXS_GRID + (<usize>load<u8>(p + 2) << 2), IQ3XXS_GRID + (<usize>load<u8>(p + 3) << 2),
        signs7((aux >> (7 * l)) & 127), signs7((aux >> (7 * l + 7)) & 127)));
    }
    setGroups(c, 2 * ib, 2 * ib + 2, 2 * <i32>(aux >> 28) + 1, 0);
  }
  finish(c, b, 0.25);
}

/** IQ3_S: d, 64 grid bytes, 8 bytes of high index bits, 32 sign bytes, 4 bytes of two 4-bit scales (32 values each). */
export function decodeIQ3_S(b: usize, c: usize): void {
  for (let ib = 0; ib < 8; ib++) {
    const qs = b + 2 + (<usize>ib << 3);
    const qh = <i32>load<u8>(b + 66 + <usize>ib);
    const signs = b + 74 + (<usize>ib << 2);
    const v = c + CANON_VALUES + (<usize>ib << 5);
    for (let h = 0; h < 2; h++) {
      const l = 2 * h;
      const p = qs + (<usize>l << 1);
      const i0 = <i32>load<u8>(p) | ((qh << (8 - 2 * l)) & 256);
      const i1 = <i32>load<u8>(p + 1) | ((qh << (7 - 2 * l)) & 256);
      const i2 = <i32>load<u8>(p + 2) | ((qh << (6 - 2 * l)) & 256);
      const i3 = <i32>load<u8>(p + 3) | ((qh << (5 - 2 * l)) & 256);
      v128.store(v + (<usize>h << 4), signed16x4(IQ3S_GRID + (<usize>i0 << 2), IQ3S_GRID + (<usize>i1 << 2), IQ3S_GRID + (<usize>i2 << 2), IQ3S_GRID + (<usize>i3 << 2),
        <i32>load<u8>(signs + <usize>l), <i32>load<u8>(signs + <usize>l + 1)));
    }
    const sc = (<i32>load<u8>(b + 106 + <usize>(ib >> 1)) >> (4 * (ib & 1))) & 0xf;
    setGroups(c, 2 * ib, 2 * ib + 2, 2 * sc + 1, 0);
  }
  finish(c, b, 1);
}

/** 16 IQ1 values 8·grid + delta from two 8-value entries (at g0, g1) and their deltas (±1). */
@inline function iq1Values(g0: usize, g1: usize, delta0: i32, delta1: i32): v128 {
  const g = i64x2.replace_lane(i64x2.splat(load<u64>(g0)), 1, load<u64>(g1));
  const d = i64x2.replace_lane(i64x2.splat(<i64>(<u8>delta0) * 0x0101010101010101), 1, <i64>(<u8>delta1) * 0x0101010101010101);
  return i8x16.add(i8x16.shl(g, 3), d);
}

/** IQ1_S: d, 32 grid bytes, 8 u16 of 4 × 3 high index bits, a 3-bit scale and the delta's sign. */
export function decodeIQ1_S(b: usize, c: usize): void {
  for (let ib = 0; ib < 8; ib++) {
    const qs = b + 2 + (<usize>ib << 2);
    const qh = <i32>load<u16>(b + 34 + (<usize>ib << 1));
    const delta = qh & 0x8000 ? -1 : 1;
    const v = c + CANON_VALUES + (<usize>ib << 5);
    for (let h = 0; h < 2; h++) {
      const l = 2 * h;
      const i0 = <i32>load<u8>(qs + <usize>l) | (((qh >> (3 * l)) & 7) << 8);
      const i1 = <i32>load<u8>(qs + <usize>l + 1) | (((qh >> (3 * l + 3)) & 7) << 8);
      v128.store(v + (<usize>h << 4), iq1Values(IQ1S_GRID + (<usize>i0 << 3), IQ1S_GRID + (<usize>i1 << 3), delta, delta));
    }
    setGroups(c, 2 * ib, 2 * ib + 2, 2 * ((qh >> 12) & 7) + 1, 0);
  }
  finish(c, b, 0.125);
}

/**
 * IQ1_M: 32 grid bytes, 16 bytes of 3 high index bits and a delta sign per 8 values, 8 bytes of 3-bit
 * scales (16 values each) whose top nibbles assemble the block's f16 scale.
 */
export function decodeIQ1_M(b: usize, c: usize): void {
  const sc0 = <i32>load<u16>(b + 48);
  const sc1 = <i32>load<u16>(b + 50);
  const sc2 = <i32>load<u16>(b + 52);
  const sc3 = <i32>load<u16>(b + 54);
  for (let ib = 0; ib < 8; ib++) {
    const qs = b + (<usize>ib << 2);
    const qh0 = <i32>load<u8>(b + 32 + (<usize>ib << 1));
    const qh1 = <i32>load<u8>(b + 33 + (<usize>ib << 1));
    const v = c + CANON_VALUES + (<usize>ib << 5);
    const i0 = <i32>load<u8>(qs) | ((qh0 << 8) & 0x700);
    const i1 = <i32>load<u8>(qs + 1) | ((qh0 << 4) & 0x700);
    const i2 = <i32>load<u8>(qs + 2) | ((qh1 << 8) & 0x700);
    const i3 = <i32>load<u8>(qs + 3) | ((qh1 << 4) & 0x700);
    v128.store(v, iq1Values(IQ1S_GRID + (<usize>i0 << 3), IQ1S_GRID + (<usize>i1 << 3), qh0 & 0x08 ? -1 : 1, qh0 & 0x80 ? -1 : 1));
    v128.store(v + 16, iq1Values(IQ1S_GRID + (<usize>i2 << 3), IQ1S_GRID + (<usize>i3 << 3), qh1 & 0x08 ? -1 : 1, qh1 & 0x80 ? -1 : 1));
    const sc = <i32>load<u16>(b + 48 + (<usize>(ib >> 1) << 1));
    const shift = 6 * (ib & 1);
    setGroups(c, 2 * ib, 2 * ib + 1, 2 * ((sc >> shift) & 7) + 1, 0);
    setGroups(c, 2 * ib + 1, 2 * ib + 2, 2 * ((sc >> (shift + 3)) & 7) + 1, 0);
  }
  const scale = (sc0 >> 12) | ((sc1 >> 8) & 0x00f0) | ((sc2 >> 4) & 0x0f00) | (sc3 & 0xf000);
  store<f32>(c + CANON_F0, halfToF32(scale));
  store<f32>(c + CANON_F1, 0.125);
}
