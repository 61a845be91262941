// Q4_0 and Q8_0 matrices times q8 activations.
//
// Packed layout: rows in groups of 4 (the last group zero-padded). A group of nb blocks is
//   [nb × 4 f16 scales] [values]
// The values come a 64-byte line per row at a time: 4 Q4_0 row-blocks (16 nibble bytes each, GGUF's
// order: low nibbles are elements 0..15, high nibbles 16..31) or 2 Q8_0 row-blocks (32 bytes), the
// group's four rows in turn, then the next blocks (a last partial line is padded). A group is one
// vector of results in the dense product, and a single row read alone (the sparse up projection)
// still uses whole cache lines.
//
// Every result equals the reference bit for bit: per block the integer sum is exact, it is scaled by
// f32(d_w · d_x) and added to the row's f32 accumulator in block order; lanes are rows, never blocks.

import { q8Bias, q8I16, q8Scales } from "./activations";
import { F16_SIGN_EM, NIBBLE_MASK, POW2_112, constant, halvesToF32Finite, transposeSum } from "./simd";
import { IQ4_XS, Q4, Q4_0, Q4_K, Q6_K, Q8, Q8_0, typeNumber } from "./types";
import { floatMatmul } from "./floats";
import { blockMatmul, isBlockFormat } from "./blocks";
import { q4kMatmul } from "./q4k";
import { q6kMatmul } from "./q6k";
import { iq4xsMatmul } from "./iq4xs";

/** How a matrix is laid out and multiplied (numbered as MatrixKind in src/kernels/wasm/layout.ts). */
export const MATRIX_FLOAT: i32 = 0;
export const MATRIX_QUANT: i32 = 1; // Q4_0/Q8_0 in 4-row groups
export const MATRIX_BLOCK: i32 = 2; // block formats in the file's layout (blocks.ts)
export const MATRIX_Q4K: i32 = 3; // Q4_K in Q4_0's four-row groups (q4k.ts)
export const MATRIX_Q6K: i32 = 4; // Q6_K in four-row groups (q6k.ts)
export const MATRIX_IQ4XS: i32 = 5; // IQ4_XS in Q4_0's four-row groups (iq4xs.ts)

/** How the kernels hold a matrix (not an expert's down) of `type`. */
export function matrixKindOf(type: i32): i32 {
  if (type == Q4_0 || type == Q8_0) return MATRIX_QUANT;
  if (type == Q4_K) return MATRIX_Q4K;
  if (type == Q6_K) return MATRIX_Q6K;
  if (type == IQ4_XS) return MATRIX_IQ4XS;
  return isBlockFormat(type) ? MATRIX_BLOCK : MATRIX_FLOAT;
}


@inline function rowBlockBytes(type: i32): usize {
  return type == Q4_0 ? 16 : 32;
}

/** Offset of block b of a group's row 0 in its value region (row k is 64·k further). */
@inline export function blockOffset(type: i32, b: i32): usize {
  return type == Q4_0 ? (<usize>(b >> 2) << 8) | (<usize>(b & 3) << 4) : (<usize>(b >> 1) << 8) | (<usize>(b & 1) << 5);
}

@inline export function valueRegionBytes(type: i32, nb: i32): usize {
  return <usize>(type == Q4_0 ? (nb + 3) >> 2 : (nb + 1) >> 1) << 8;
}

export function groupBytes(type: i32, nb: i32): usize {
  return (<usize>nb << 3) + valueRegionBytes(type, nb);
}

/** The i8/i16 row of token t: rows are consecutive, or picked by an i32 index list. */
@inline export function activationRow(x: usize, stride: usize, index: usize, t: i32): usize {
  return index ? x + <usize>load<i32>(index + (<usize>t << 2)) * stride : x + <usize>t * stride;
}

/** Σ q·x over one block for four Q4_0 rows (nibbles unsigned; the -8 comes later). */
@inline export function q4Sums(p0: usize, p1: usize, p2: usize, p3: usize, x8: usize, x16: usize, mask: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const xl = v128.load(x8);
    const xh = v128.load(x8, 16);
    const w0 = v128.load(p0);
    const w1 = v128.load(p1);
    const w2 = v128.load(p2);
    const w3 = v128.load(p3);
    const s0 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, v128.and(w0, mask)), i16x8.relaxed_dot_i8x16_i7x16_s(xh, v128.and(i16x8.shr_u(w0, 4), mask)));
    const s1 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, v128.and(w1, mask)), i16x8.relaxed_dot_i8x16_i7x16_s(xh, v128.and(i16x8.shr_u(w1, 4), mask)));
    const s2 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, v128.and(w2, mask)), i16x8.relaxed_dot_i8x16_i7x16_s(xh, v128.and(i16x8.shr_u(w2, 4), mask)));
    const s3 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, v128.and(w3, mask)), i16x8.relaxed_dot_i8x16_i7x16_s(xh, v128.and(i16x8.shr_u(w3, 4), mask)));
    return i16Rows(s0, s1, s2, s3);
  } else {
    const x0 = v128.load(x16);
    const x1 = v128.load(x16, 16);
    const x2 = v128.load(x16, 32);
    const x3 = v128.load(x16, 48);
    return transposeSum(q4RowWide(p0, x0, x1, x2, x3, mask), q4RowWide(p1, x0, x1, x2, x3, mask),
      q4RowWide(p2, x0, x1, x2, x3, mask), q4RowWide(p3, x0, x1, x2, x3, mask));
  }
}

/**
 * Row totals of four i16x8 partial sums as i32x4. Each lane of a relaxed-dot sum is at most
 * 4·127·15 = 7620 in magnitude, so adding four stays within i16 before the widening pair-add.
 */
@inline export function i16Rows(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const a = i16x8.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const b = i16x8.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.extadd_pairwise_i16x8_s(i16x8.add(i64x2.shuffle(a, b, 0, 2), i64x2.shuffle(a, b, 1, 3)));
}

@inline function q4RowWide(p: usize, x0: v128, x1: v128, x2: v128, x3: v128, mask: v128): v128 {
  const w = v128.load(p);
  const lo = v128.and(w, mask);
  const hi = v128.and(i16x8.shr_u(w, 4), mask);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), x3)));
}

@inline function q8Row(p: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const a = v128.load(p);
  const b = v128.load(p, 16);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), x3)));
}

/** Σ q·x over one block for four Q8_0 rows. */
@inline function q8Sums(p0: usize, p1: usize, p2: usize, p3: usize, x16: usize): v128 {
  const x0 = v128.load(x16);
  const x1 = v128.load(x16, 16);
  const x2 = v128.load(x16, 32);
  const x3 = v128.load(x16, 48);
  return transposeSum(q8Row(p0, x0, x1, x2, x3), q8Row(p1, x0, x1, x2, x3), q8Row(p2, x0, x1, x2, x3), q8Row(p3, x0, x1, x2, x3));
}

/** acc + f32(isum) · (d_w · d_x): the reference's per-block step, four rows at once. */
@inline function accumulate(acc: v128, isum: v128, weightScales: v128, xScale: usize): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(weightScales, v128.load32_splat(xScale))));
}

/** Row k + lane of an i32 list of `count` rows, or its row k where the list ends (four rows gathered at a time). */
@inline export function listedRow(list: usize, k: i32, lane: i32, count: i32): i32 {
  return load<i32>(list + (<usize>(k + (k + lane < count ? lane : 0)) << 2));
}

/** Stores lane j of v at out[row j] for the listed rows k … k + 3 that exist. */
@inline export function storeListed(out: usize, v: v128, i0: i32, i1: i32, i2: i32, i3: i32, k: i32, count: i32): void {
  store<f32>(out + (<usize>i0 << 2), f32x4.extract_lane(v, 0));
  if (k + 1 < count) store<f32>(out + (<usize>i1 << 2), f32x4.extract_lane(v, 1));
  if (k + 2 < count) store<f32>(out + (<usize>i2 << 2), f32x4.extract_lane(v, 2));
  if (k + 3 < count) store<f32>(out + (<usize>i3 << 2), f32x4.extract_lane(v, 3));
}

/** Stores the first `valid` lanes of v at p (the last group of a matrix may be partial). */
@inline export function storeLanes(p: usize, v: v128, valid: i32): void {
  if (valid >= 4) {
    v128.store(p, v);
    return;
  }
  v128.store32_lane(p, v, 0);
  if (valid > 1) v128.store32_lane(p, v, 1, 4);
  if (valid > 2) v128.store32_lane(p, v, 2, 8);
}

/** One block of four rows: values at p0..p3, f16 scales at s0..s3 (one load at s0 unless gathered). */
@inline function blockStep(type: i32, acc: v128, p0: usize, p1: usize, p2: usize, p3: usize, s0: usize, s1: usize, s2: usize, s3: usize,
  gathered: bool, x: usize, cols: i32, b: i32, mask: v128, signEm: v128, pow2_112: v128): v128 {
  let sums: v128;
  if (type == Q4_0) {
    sums = i32x4.sub(q4Sums(p0, p1, p2, p3, x + (<usize>b << 5), q8I16(x, cols) + (<usize>b << 6), mask),
      v128.load32_splat(q8Bias(x, cols) + (<usize>b << 2)));
  } else {
    sums = q8Sums(p0, p1, p2, p3, q8I16(x, cols) + (<usize>b << 6));
  }
  let h: v128;
  if (gathered) {
    h = v128.load16_lane(s0, i32x4.splat(0), 0);
    h = v128.load16_lane(s1, h, 1);
    h = v128.load16_lane(s2, h, 2);
    h = v128.load16_lane(s3, h, 3);
    h = i32x4.extend_low_i16x8_s(h);
  } else {
    h = v128.load16x4_s(s0);
  }
  return accumulate(acc, sums, halvesToF32Finite(h, signEm, pow2_112), q8Scales(x, cols) + (<usize>b << 2));
}

/**
 * Four rows · one activation row. p0..p3: each row's first value line; s0..s3: each row's first
 * scale. The addresses are carried from block to block: computed from the block index, V8 would
 * recompute their invariant parts inside the loop.
 */
@inline function dotRows4(type: i32, nb: i32, p0: usize, p1: usize, p2: usize, p3: usize, s0: usize, s1: usize, s2: usize, s3: usize,
  gathered: bool, x: usize, cols: i32): v128 {
  const mask = constant(NIBBLE_MASK);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const r = rowBlockBytes(type);
  const lineEnd = type == Q4_0 ? 3 : 1;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    acc = blockStep(type, acc, p0, p1, p2, p3, s0, s1, s2, s3, gathered, x, cols, b, mask, signEm, pow2_112);
    // Next block: the next row-block in the line, or the first of the row's next line.
    const step: usize = (b & lineEnd) == lineEnd ? 256 - <usize>lineEnd * r : r;
    p0 += step;
    p1 += step;
    p2 += step;
    p3 += step;
    s0 += 8;
    s1 += 8;
    s2 += 8;
    s3 += 8;
  }
  return acc;
}

/**
 * The relaxed-SIMD Q4_0 tile: one 4-row group times four activation rows. The group's nibbles are
 * unpacked once per block and shared by the four rows.
 */
@inline function q4Tile4(nb: i32, group: usize, x0: usize, x1: usize, x2: usize, x3: usize, cols: i32,
  y: usize, yStride: usize, valid: i32): void {
  const mask = constant(NIBBLE_MASK);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const scaleBase = q8Scales(0, cols);
  const biasBase = q8Bias(0, cols);
  const nibbles = group + (<usize>nb << 3);
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const q = nibbles + blockOffset(Q4_0, b);
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
    const ws = halvesToF32Finite(v128.load16x4_s(group + (<usize>b << 3)), signEm, pow2_112);
    const xo = <usize>b << 5;
    const so = scaleBase + (<usize>b << 2);
    const bo = biasBase + (<usize>b << 2);
    a0 = tileStep(a0, x0 + xo, x0 + so, x0 + bo, ws, l0, h0, l1, h1, l2, h2, l3, h3);
    a1 = tileStep(a1, x1 + xo, x1 + so, x1 + bo, ws, l0, h0, l1, h1, l2, h2, l3, h3);
    a2 = tileStep(a2, x2 + xo, x2 + so, x2 + bo, ws, l0, h0, l1, h1, l2, h2, l3, h3);
    a3 = tileStep(a3, x3 + xo, x3 + so, x3 + bo, ws, l0, h0, l1, h1, l2, h2, l3, h3);
  }
  storeLanes(y, a0, valid);
  storeLanes(y + yStride, a1, valid);
  storeLanes(y + 2 * yStride, a2, valid);
  storeLanes(y + 3 * yStride, a3, valid);
}

@inline function tileStep(acc: v128, xb: usize, xScale: usize, xBias: usize, ws: v128,
  l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128): v128 {
  const xl = v128.load(xb);
  const xh = v128.load(xb, 16);
  const s0 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l0), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h0));
  const s1 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l1), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h1));
  const s2 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l2), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h2));
  const s3 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xl, l3), i16x8.relaxed_dot_i8x16_i7x16_s(xh, h3));
  const sums = i32x4.sub(i16Rows(s0, s1, s2, s3), v128.load32_splat(xBias));
  return accumulate(acc, sums, ws, xScale);
}

/**
 * y[t][r] = W[r]·x[t] for the rows of groups [g0, g1) and all n activation rows. Groups are taken a
 * chunk at a time (about 128 KiB of weights, which stays in L2) and activation rows four at a time.
 */
export function quantMatmul(type: i32, w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, g0: i32, g1: i32): void {
  if (type == Q4_0) quantMatmulOf<Q4>(w, cols, rows, x, xStride, xIndex, n, y, yStride, g0, g1);
  else quantMatmulOf<Q8>(w, cols, rows, x, xStride, xIndex, n, y, yStride, g0, g1);
}


function quantMatmulOf<T>(w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, g0: i32, g1: i32): void {
  const type = typeNumber<T>();
  const nb = cols >> 5;
  const group = groupBytes(type, nb);
  const chunk = max<i32>(1, <i32>((<usize>131072) / group));
  const valuesOffset = <usize>nb << 3;
  for (let c = g0; c < g1; c += chunk) {
    const cEnd = min<i32>(c + chunk, g1);
    let t = 0;
    if (ASC_FEATURE_RELAXED_SIMD && type == Q4_0) {
      for (; t + 4 <= n; t += 4) {
        const x0 = activationRow(x, xStride, xIndex, t);
        const x1 = activationRow(x, xStride, xIndex, t + 1);
        const x2 = activationRow(x, xStride, xIndex, t + 2);
        const x3 = activationRow(x, xStride, xIndex, t + 3);
        for (let g = c; g < cEnd; g++) {
          q4Tile4(nb, w + <usize>g * group, x0, x1, x2, x3, cols, y + <usize>t * yStride + (<usize>g << 4), yStride, rows - (g << 2));
        }
      }
    }
    for (; t < n; t++) {
      const xt = activationRow(x, xStride, xIndex, t);
      for (let g = c; g < cEnd; g++) {
        const base = w + <usize>g * group;
        const v = base + valuesOffset;
        const acc = dotRows4(type, nb, v, v + 64, v + 128, v + 192, base, 0, 0, 0, false, xt, cols);
        storeLanes(y + <usize>t * yStride + (<usize>g << 4), acc, rows - (g << 2));
      }
    }
  }
}

/**
 * out[r] = W[r]·x for the `count` rows listed (i32) at `list` — the sparse up projection. Rows are
 * gathered four at a time from anywhere in the packed matrix; the arithmetic is that of
 * `quantMatmul`, so a row's result does not depend on which rows it was gathered with.
 */
export function quantGatheredRows(type: i32, w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  if (type == Q4_0) quantGatheredRowsOf<Q4>(w, cols, list, count, x, out);
  else quantGatheredRowsOf<Q8>(w, cols, list, count, x, out);
}

function quantGatheredRowsOf<T>(w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  const type = typeNumber<T>();
  const nb = cols >> 5;
  const group = groupBytes(type, nb);
  const valuesOffset = <usize>nb << 3;
  for (let k = 0; k < count; k += 4) {
    const i0 = listedRow(list, k, 0, count);
    const i1 = listedRow(list, k, 1, count);
    const i2 = listedRow(list, k, 2, count);
    const i3 = listedRow(list, k, 3, count);
    const g0 = w + <usize>(i0 >> 2) * group;
    const g1 = w + <usize>(i1 >> 2) * group;
    const g2 = w + <usize>(i2 >> 2) * group;
    const g3 = w + <usize>(i3 >> 2) * group;
    const acc = dotRows4(type, nb,
      g0 + valuesOffset + (<usize>(i0 & 3) << 6), g1 + valuesOffset + (<usize>(i1 & 3) << 6),
      g2 + valuesOffset + (<usize>(i2 & 3) << 6), g3 + valuesOffset + (<usize>(i3 & 3) << 6),
      g0 + (<usize>(i0 & 3) << 1), g1 + (<usize>(i1 & 3) << 1), g2 + (<usize>(i2 & 3) << 1), g3 + (<usize>(i3 & 3) << 1),
      true, x, cols);
    storeListed(out, acc, i0, i1, i2, i3, k, count);
  }
}

/** Packs `rows` GGUF rows of Q4_0/Q8_0 at src into the grouped layout at dst. */
export function packQuantMatrix(type: i32, src: usize, dst: usize, rows: i32, cols: i32): void {
  const nb = cols >> 5;
  const fileBlock: usize = type == Q4_0 ? 18 : 34;
  const r = rowBlockBytes(type);
  const bytes = groupBytes(type, nb);
  const groups = (rows + 3) >> 2;
  // Padding (missing rows of the last group, the rest of a last partial line) must read as zeros.
  if ((rows & 3) != 0 || nb % (type == Q4_0 ? 4 : 2) != 0) memory.fill(dst, 0, <usize>groups * bytes);
  for (let row = 0; row < rows; row++) {
    const group = dst + <usize>(row >> 2) * bytes;
    const lane = <usize>(row & 3);
    const from = src + <usize>row * <usize>nb * fileBlock;
    for (let b = 0; b < nb; b++) {
      const block = from + <usize>b * fileBlock;
      store<u16>(group + (<usize>b << 3) + (lane << 1), load<u16>(block));
      const to = group + (<usize>nb << 3) + blockOffset(type, b) + (lane << 6);
      v128.store(to, v128.load(block, 2));
      if (r == 32) v128.store(to, v128.load(block, 18), 16);
    }
  }
}

/**
 * Reads one vector of every cache line of the listed rows (and their groups' scales), in address
 * order, without using the values: their misses then overlap, where a product visiting four rows
 * at once would meet them nearly one by one (cold sparse rows are otherwise latency-bound).
 * Returns the loads combined, so that they are kept.
 */
export function touchGatheredRows(type: i32, w: usize, cols: i32, list: usize, count: i32): v128 {
  const nb = cols >> 5;
  const group = groupBytes(type, nb);
  const valuesOffset = <usize>nb << 3;
  const values = valueRegionBytes(type, nb);
  let acc = i32x4.splat(0);
  let lastGroup = -1;
  for (let k = 0; k < count; k++) {
    const i = load<i32>(list + (<usize>k << 2));
    const g = w + <usize>(i >> 2) * group;
    if (i >> 2 != lastGroup) {
      lastGroup = i >> 2;
      for (let o: usize = 0; o < valuesOffset; o += 64) acc = v128.or(acc, v128.load(g + o));
    }
    const row = g + valuesOffset + (<usize>(i & 3) << 6);
    for (let o: usize = 0; o < values; o += 256) acc = v128.or(acc, v128.load(row + o));
  }
  return acc;
}


/**
 * One piece of a multi-product job: the products are listed at `table` (i32 fields each: kind,
 * type, w, cols, rows, x, xStride, y, yStride, pieces, first piece, unused), each cut into its
 * number of pieces of whole row quads (see `share` in src/kernels/wasm/jobs.ts).
 */
export function matmulPiece(table: usize, count: i32, n: i32, piece: i32, scratch: usize): void {
  let p = 0;
  while (p + 1 < count && load<i32>(table + <usize>(p + 1) * 48, 40) <= piece) p++;
  const f = table + <usize>p * 48;
  const kind = load<i32>(f);
  const type = load<i32>(f, 4);
  const w = <usize>load<u32>(f, 8);
  const cols = load<i32>(f, 12);
  const rows = load<i32>(f, 16);
  const x = <usize>load<u32>(f, 20);
  const xStride = <usize>load<u32>(f, 24);
  const y = <usize>load<u32>(f, 28);
  const yStride = <usize>load<u32>(f, 32);
  const pieces = load<i32>(f, 36);
  const unit = piece - load<i32>(f, 40);
  // share(total, pieces, unit): runs of whole quads (or of 4 rows), the first `extra` one longer.
  const total = (rows + 3) >> 2;
  const base = total / pieces;
  const extra = total % pieces;
  const start = unit * base + min<i32>(unit, extra);
  const end = start + base + (unit < extra ? 1 : 0);
  if (start >= end) return;
  if (kind == MATRIX_QUANT) quantMatmul(type, w, cols, rows, x, xStride, 0, n, y, yStride, start, end);
  else if (kind == MATRIX_Q4K) q4kMatmul(w, cols, rows, x, xStride, 0, n, y, yStride, 0, start, end);
  else if (kind == MATRIX_Q6K) q6kMatmul(w, cols, rows, x, xStride, 0, n, y, yStride, 0, start, end);
  else if (kind == MATRIX_IQ4XS) iq4xsMatmul(w, cols, rows, x, xStride, 0, n, y, yStride, 0, start, end);
  else if (kind == MATRIX_BLOCK) blockMatmul(type, w, cols, x, xStride, 0, n, y, yStride, 0, start << 2, min<i32>(rows, end << 2), scratch);
  else floatMatmul(type, w, cols, rows, x, xStride, 0, n, y, yStride, start << 2, min<i32>(rows, end << 2));
}
