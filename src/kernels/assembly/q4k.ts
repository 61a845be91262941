// Q4_K matrices packed as Q4_0's four-row groups (quantized.ts), so that its nibble products serve:
// each 32-value sub-block becomes a 16-byte block of nibbles (value i in the low nibble of byte i,
// value i + 16 in the high), in Q4_0's 64-byte lines. Per superblock, a group also holds
//   [4 × f16 d] [4 × f16 dmin] [8 sub-blocks × 4 rows u8 scale] [4 rows × 8 u8 min]   (80 bytes)
// before its values. The product is the reference's: per superblock isum = Σ_j sc_j·Σ q·x and
// msum = Σ_j m_j·(Σ x over sub-block j) exactly, then fround(fround(d·isum) − fround(dmin·msum))
// with d, dmin the scales times the activation's; rows are lanes.

import { scaleMinK4 } from "./kquants";
import { q8I16, q8kScales, q8kSums32 } from "./activations";
import { F16_SIGN_EM, NIBBLE_MASK, POW2_112, constant, halvesToF32Finite, transposeSum } from "./simd";
import { activationRow, blockOffset, i16Rows, listedRow, q4Sums, storeLanes, storeListed, valueRegionBytes } from "./quantized";
import { Q4_0 } from "./types";

const META_BYTES: usize = 80;

export function q4kGroupBytes(cols: i32): usize {
  return <usize>(cols >> 8) * META_BYTES + valueRegionBytes(Q4_0, cols >> 5);
}

/** Packs `rows` GGUF Q4_K rows at src into four-row groups at dst. */
export function packQ4K(src: usize, dst: usize, rows: i32, cols: i32): void {
  const nsb = cols >> 8;
  const nb = cols >> 5;
  const bytes = q4kGroupBytes(cols);
  const groups = (rows + 3) >> 2;
  if ((rows & 3) != 0 || nb % 4 != 0) memory.fill(dst, 0, <usize>groups * bytes);
  const values = <usize>nsb * META_BYTES;
  const mask = i8x16.splat(0x0f);
  for (let row = 0; row < rows; row++) {
    const group = dst + <usize>(row >> 2) * bytes;
    const lane = <usize>(row & 3);
    for (let sb = 0; sb < nsb; sb++) {
      const block = src + (<usize>row * <usize>nsb + <usize>sb) * 144;
      const meta = group + <usize>sb * META_BYTES;
      store<u16>(meta + (lane << 1), load<u16>(block));
      store<u16>(meta + 8 + (lane << 1), load<u16>(block, 2));
      for (let j = 0; j < 8; j++) {
        const sm = scaleMinK4(block + 4, j);
        const sc = sm & 0xff;
        const m = sm >> 8;
        store<u8>(meta + 16 + (<usize>j << 2) + lane, <u8>sc);
        store<u8>(meta + 48 + (lane << 3) + <usize>j, <u8>m);
      }
      // Sub-block 2k is the low nibbles of the file's 32 bytes k, sub-block 2k + 1 their high ones.
      for (let k = 0; k < 4; k++) {
        const w0 = v128.load(block + 16 + (<usize>k << 5));
        const w1 = v128.load(block + 16 + (<usize>k << 5), 16);
        const l0 = v128.and(w0, mask);
        const l1 = v128.and(w1, mask);
        const h0 = v128.and(i16x8.shr_u(w0, 4), mask);
        const h1 = v128.and(i16x8.shr_u(w1, 4), mask);
        const b0 = sb * 8 + 2 * k;
        v128.store(group + values + blockOffset(Q4_0, b0) + (lane << 6), v128.or(l0, i16x8.shl(l1, 4)));
        v128.store(group + values + blockOffset(Q4_0, b0 + 1) + (lane << 6), v128.or(h0, i16x8.shl(h1, 4)));
      }
    }
  }
}

/** Four rows' u8 values at p (one per row) as i32x4. */
@inline function bytes4(p: usize): v128 {
  return i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(p)));
}

/**
 * Four rows · one q8_k activation row. p0..p3: each row's first value line; m0..m3: its group's
 * first metadata, l0..l3 its lane there; `gathered`: rows from different groups (metadata loaded lane
 * by lane) rather than the four rows of group m0.
 */
@inline function q4kRows4(nsb: i32, p0: usize, p1: usize, p2: usize, p3: usize, m0: usize, m1: usize, m2: usize, m3: usize,
  l0: usize, l1: usize, l2: usize, l3: usize, gathered: bool, x: usize, cols: i32): v128 {
  const mask = constant(NIBBLE_MASK);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const x16 = q8I16(x, cols);
  const dxs = q8kScales(x, cols);
  const sums32 = q8kSums32(x, cols);
  let acc = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    let isum = i32x4.splat(0);
    for (let j = 0; j < 8; j++) {
      const b = (sb << 3) + j;
      const s = q4Sums(p0, p1, p2, p3, x + (<usize>b << 5), x16 + (<usize>b << 6), mask);
      const o: usize = 16 + (<usize>j << 2);
      const sc = gathered
        ? i32x4(<i32>load<u8>(m0 + o + l0), <i32>load<u8>(m1 + o + l1), <i32>load<u8>(m2 + o + l2), <i32>load<u8>(m3 + o + l3))
        : bytes4(m0 + o);
      isum = i32x4.add(isum, i32x4.mul(s, sc));
      const step: usize = (j & 3) == 3 ? 256 - 3 * 16 : 16;
      p0 += step;
      p1 += step;
      p2 += step;
      p3 += step;
    }
    let hd: v128, hm: v128;
    if (gathered) {
      hd = i32x4(<i32>load<i16>(m0 + (l0 << 1)), <i32>load<i16>(m1 + (l1 << 1)), <i32>load<i16>(m2 + (l2 << 1)), <i32>load<i16>(m3 + (l3 << 1)));
      hm = i32x4(<i32>load<i16>(m0 + (l0 << 1), 8), <i32>load<i16>(m1 + (l1 << 1), 8), <i32>load<i16>(m2 + (l2 << 1), 8), <i32>load<i16>(m3 + (l3 << 1), 8));
    } else {
      hd = v128.load16x4_s(m0);
      hm = v128.load16x4_s(m0 + 8);
    }
    const dx = v128.load32_splat(dxs + (<usize>sb << 2));
    const d = f32x4.mul(halvesToF32Finite(hd, signEm, pow2_112), dx);
    const dmin = f32x4.mul(halvesToF32Finite(hm, signEm, pow2_112), dx);
    const B = v128.load(sums32 + (<usize>sb << 4));
    const msum = transposeSum(rowMins(m0 + 48 + (l0 << 3), B), rowMins(m1 + 48 + (l1 << 3), B), rowMins(m2 + 48 + (l2 << 3), B), rowMins(m3 + 48 + (l3 << 3), B));
    acc = f32x4.add(acc, f32x4.sub(f32x4.mul(d, f32x4.convert_i32x4_s(isum)), f32x4.mul(dmin, f32x4.convert_i32x4_s(msum))));
    m0 += META_BYTES;
    m1 += META_BYTES;
    m2 += META_BYTES;
    m3 += META_BYTES;
  }
  return acc;
}

/** Σ nibble·x of one 32-value sub-block for four rows (unpacked nibbles l/h), one activation row. */
@inline function tileSums(xb: usize, l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128): v128 {
  const xl = v128.load(xb);
  const xh = v128.load(xb, 16);
  return i16Rows(
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l0), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h0)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l1), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h1)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l2), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h2)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l3), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h3)));
}

/** One row's Σ_j m_j·B_j over a superblock, its 8 mins (u8) at p, the activation's B_j (i16) in B: i32x4 partials. */
@inline function rowMins(p: usize, B: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(v128.load64_zero(p)), B);
}

/** msum of one superblock for a group's four rows (lanes), the activation row's 32-value sums at s32. */
@inline function minSums(meta: usize, s32: usize): v128 {
  const B = v128.load(s32);
  return transposeSum(rowMins(meta + 48, B), rowMins(meta + 56, B), rowMins(meta + 64, B), rowMins(meta + 72, B));
}

/**
 * The relaxed-SIMD Q4_K tile: one group times four activation rows, each sub-block's nibbles
 * unpacked once for all four; the arithmetic per (row, token) is q4kRows4's.
 */
@inline function q4kTile4(nsb: i32, group: usize, x0: usize, x1: usize, x2: usize, x3: usize, cols: i32, y: usize, yStride: usize, valid: i32): void {
  const mask = constant(NIBBLE_MASK);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const sums32 = q8kSums32(0, cols);
  const dxs = q8kScales(0, cols);
  const values = group + <usize>nsb * META_BYTES;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const meta = group + <usize>sb * META_BYTES;
    let i0 = i32x4.splat(0);
    let i1 = i32x4.splat(0);
    let i2 = i32x4.splat(0);
    let i3 = i32x4.splat(0);
    for (let j = 0; j < 8; j++) {
      const b = (sb << 3) + j;
      const q = values + blockOffset(Q4_0, b);
      const w0 = v128.load(q);
      const w1 = v128.load(q, 64);
      const w2 = v128.load(q, 128);
      const w3 = v128.load(q, 192);
      const l0 = v128.and(w0, mask);
      const h0 = v128.and(i16x8.shr_u(w0, 4), mask);
      const l1 = v128.and(w1, mask);
      const h1 = v128.and(i16x8.shr_u(w1, 4), mask);
      const l2 = v128.and(w2, mask);
      const h2 = v128.and(i16x8.shr_u(w2, 4), mask);
      const l3 = v128.and(w3, mask);
      const h3 = v128.and(i16x8.shr_u(w3, 4), mask);
      const sc = bytes4(meta + 16 + (<usize>j << 2));
      const xo = <usize>b << 5;
      i0 = i32x4.add(i0, i32x4.mul(tileSums(x0 + xo, l0, h0, l1, h1, l2, h2, l3, h3), sc));
      i1 = i32x4.add(i1, i32x4.mul(tileSums(x1 + xo, l0, h0, l1, h1, l2, h2, l3, h3), sc));
      i2 = i32x4.add(i2, i32x4.mul(tileSums(x2 + xo, l0, h0, l1, h1, l2, h2, l3, h3), sc));
      i3 = i32x4.add(i3, i32x4.mul(tileSums(x3 + xo, l0, h0, l1, h1, l2, h2, l3, h3), sc));
    }
    const d = halvesToF32Finite(v128.load16x4_s(meta), signEm, pow2_112);
    const dmin = halvesToF32Finite(v128.load16x4_s(meta + 8), signEm, pow2_112);
    const bo = <usize>sb << 4;
    const so = <usize>sb << 2;
    a0 = superblockStep(a0, d, dmin, x0 + dxs + so, i0, minSums(meta, x0 + sums32 + bo));
    a1 = superblockStep(a1, d, dmin, x1 + dxs + so, i1, minSums(meta, x1 + sums32 + bo));
    a2 = superblockStep(a2, d, dmin, x2 + dxs + so, i2, minSums(meta, x2 + sums32 + bo));
    a3 = superblockStep(a3, d, dmin, x3 + dxs + so, i3, minSums(meta, x3 + sums32 + bo));
  }
  storeLanes(y, a0, valid);
  storeLanes(y + yStride, a1, valid);
  storeLanes(y + 2 * yStride, a2, valid);
  storeLanes(y + 3 * yStride, a3, valid);
}

/** acc + fround(fround(d·dx)·isum) − fround(fround(dmin·dx)·msum), the activation's dx at p. */
@inline function superblockStep(acc: v128, d: v128, dmin: v128, p: usize, isum: v128, msum: v128): v128 {
  const dx = v128.load32_splat(p);
  return f32x4.add(acc, f32x4.sub(f32x4.mul(f32x4.mul(d, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f32x4.mul(dmin, dx), f32x4.convert_i32x4_s(msum))));
}

/**
 * y[t][r] = W[r]·x[t] for the rows of groups [g0, g1) and all n activation rows, a chunk of groups
 * (about 128 KiB of weights, which stays in L2) at a time; with relaxed SIMD four activation rows at
 * a time.
 */
export function q4kMatmul(w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, yIndex: usize, g0: i32, g1: i32): void {
  const nsb = cols >> 8;
  const group = q4kGroupBytes(cols);
  const chunk = max<i32>(1, <i32>((<usize>131072) / group));
  const values = <usize>nsb * META_BYTES;
  for (let c = g0; c < g1; c += chunk) {
    const cEnd = min<i32>(c + chunk, g1);
    let t = 0;
    if (ASC_FEATURE_RELAXED_SIMD && yIndex == 0) {
      for (; t + 4 <= n; t += 4) {
        const x0 = activationRow(x, xStride, xIndex, t);
        const x1 = activationRow(x, xStride, xIndex, t + 1);
        const x2 = activationRow(x, xStride, xIndex, t + 2);
        const x3 = activationRow(x, xStride, xIndex, t + 3);
        for (let g = c; g < cEnd; g++) {
          q4kTile4(nsb, w + <usize>g * group, x0, x1, x2, x3, cols, y + <usize>t * yStride + (<usize>g << 4), yStride, rows - (g << 2));
        }
      }
    }
    for (; t < n; t++) {
      const xt = activationRow(x, xStride, xIndex, t);
      const yt = activationRow(y, yStride, yIndex, t);
      for (let g = c; g < cEnd; g++) {
        const base = w + <usize>g * group;
        const v = base + values;
        storeLanes(yt + (<usize>g << 4), q4kRows4(nsb, v, v + 64, v + 128, v + 192, base, base, base, base, 0, 1, 2, 3, false, xt, cols), rows - (g << 2));
      }
    }
  }
}

/** out[i] = W[i]·x for the `count` rows i listed (i32) at `list`, gathered four at a time. */
export function q4kGatheredRows(w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  const nsb = cols >> 8;
  const group = q4kGroupBytes(cols);
  const values = <usize>nsb * META_BYTES;
  for (let k = 0; k < count; k += 4) {
    const i0 = listedRow(list, k, 0, count);
    const i1 = listedRow(list, k, 1, count);
    const i2 = listedRow(list, k, 2, count);
    const i3 = listedRow(list, k, 3, count);
    const g0 = w + <usize>(i0 >> 2) * group;
    const g1 = w + <usize>(i1 >> 2) * group;
    const g2 = w + <usize>(i2 >> 2) * group;
    const g3 = w + <usize>(i3 >> 2) * group;
    const acc = q4kRows4(nsb,
      g0 + values + (<usize>(i0 & 3) << 6), g1 + values + (<usize>(i1 & 3) << 6),
      g2 + values + (<usize>(i2 & 3) << 6), g3 + values + (<usize>(i3 & 3) << 6),
      g0, g1, g2, g3, <usize>(i0 & 3), <usize>(i1 & 3), <usize>(i2 & 3), <usize>(i3 & 3), true, x, cols);
    storeListed(out, acc, i0, i1, i2, i3, k, count);
  }
}
