// Products, gathered products and dequantization for every block format that decodes to the
// canonical form (canonical.ts). Weights keep GGUF's row-major layout. A product decodes each block
// of four rows once into the thread's scratch and multiplies it with every activation row of a tile,
// so prefill pays the decoding once per tile of tokens.
//
// Every result equals the reference bit for bit: per block the integer sums are exact, the block's
// contribution follows its form, and it is added to the row's f32 accumulator in block order.

import { CANON_BYTES, CANON_F0, CANON_F1, CANON_MINS, CANON_SCALES, CANON_VALUES, FORM_DK, FORM_DMIN, FORM_Q81, FORM_SUB } from "./canonical";
import { q8_1Sums, q8I16, q8kScales, q8kSums, q8Scales } from "./activations";
import { decodeQ2K, decodeQ3K, decodeQ4K, decodeQ5K, decodeQ6K } from "./kquants";
import { decodeIQ4_NL, decodeIQ4_XS, decodeMXFP4, decodeQ1_0, decodeQ2_0, decodeQ4_1, decodeQ5_0, decodeQ5_1, decodeTQ1_0, decodeTQ2_0 } from "./legacy";
import { decodeIQ1_M, decodeIQ1_S, decodeIQ2_S, decodeIQ2_XS, decodeIQ2_XXS, decodeIQ3_S, decodeIQ3_XXS } from "./iquants";
import { activationRow, listedRow, storeLanes, storeListed } from "./quantized";
import { transposeSum } from "./simd";
import { Q1_0, Q2_0, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS, IQ4_NL, IQ4_XS, MXFP4, Q2_K, Q3_K, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, TQ1_0, TQ2_0 } from "./types";

/** Whether `type` is a block format served here. */
export function isBlockFormat(type: i32): bool {
  return blockBytes(type) != 0;
}

/** Values per block. */
export function blockValues(type: i32): i32 {
  if (type == Q1_0) return 128;
  if (type == Q2_0) return 64;
  return type == Q4_1 || type == Q5_0 || type == Q5_1 || type == IQ4_NL || type == MXFP4 ? 32 : 256;
}

/** Bytes per block in the file (0: not a block format). */
export function blockBytes(type: i32): usize {
  switch (type) {
    case Q4_1: return 20;
    case Q5_0: return 22;
    case Q5_1: return 24;
    case IQ4_NL: return 18;
    case MXFP4: return 17;
    case Q2_K: return 84;
    case Q3_K: return 110;
    case Q4_K: return 144;
    case Q5_K: return 176;
    case Q6_K: return 210;
    case IQ4_XS: return 136;
    case TQ1_0: return 54;
    case TQ2_0: return 66;
    case IQ2_XXS: return 66;
    case IQ2_XS: return 74;
    case IQ2_S: return 82;
    case IQ3_XXS: return 98;
    case IQ3_S: return 110;
    case IQ1_S: return 50;
    case IQ1_M: return 56;
    case Q1_0: return 18;
    case Q2_0: return 18;
  }
  return 0;
}

@inline function formOf(type: i32): i32 {
  if (type == Q2_K || type == Q4_K || type == Q5_K) return FORM_DMIN;
  if (type == Q4_1 || type == Q5_1) return FORM_Q81;
  if (type == Q1_0 || type == Q2_0) return FORM_SUB;
  return FORM_DK;
}

/** The activation format a block format's products take (FORMAT_* of index.ts: 3 q8_0, 4 q8_1, 5 q8_k). */
export function activationFormat(type: i32): i32 {
  if (type == Q4_1 || type == Q5_1) return 4;
  return blockValues(type) == 256 ? 5 : 3;
}

/** Decodes one block (its bytes at p) into the canonical block at c. */
function decode(type: i32, p: usize, c: usize): void {
  switch (type) {
    case Q4_1: decodeQ4_1(p, c); break;
    case Q5_0: decodeQ5_0(p, c); break;
    case Q5_1: decodeQ5_1(p, c); break;
    case IQ4_NL: decodeIQ4_NL(p, c); break;
    case MXFP4: decodeMXFP4(p, c); break;
    case Q2_K: decodeQ2K(p, c); break;
    case Q3_K: decodeQ3K(p, c); break;
    case Q4_K: decodeQ4K(p, c); break;
    case Q5_K: decodeQ5K(p, c); break;
    case Q6_K: decodeQ6K(p, c); break;
    case IQ4_XS: decodeIQ4_XS(p, c); break;
    case TQ1_0: decodeTQ1_0(p, c); break;
    case TQ2_0: decodeTQ2_0(p, c); break;
    case IQ2_XXS: decodeIQ2_XXS(p, c); break;
    case IQ2_XS: decodeIQ2_XS(p, c); break;
    case IQ2_S: decodeIQ2_S(p, c); break;
    case IQ3_XXS: decodeIQ3_XXS(p, c); break;
    case IQ3_S: decodeIQ3_S(p, c); break;
    case IQ1_S: decodeIQ1_S(p, c); break;
    case IQ1_M: decodeIQ1_M(p, c); break;
    case Q1_0: decodeQ1_0(p, c); break;
    case Q2_0: decodeQ2_0(p, c); break;
  }
}

/** Activation rows per tile: each decoded block serves this many tokens. */
const TILE: i32 = 32;
/** Scratch a thread needs for products of these formats: four canonical blocks and a tile's sums. */
export const BLOCK_SCRATCH: usize = 4 * CANON_BYTES + <usize>TILE * 16;

/**
 * Σ_g scale_g·Σ v·x over groups [g0, g1) of one canonical row (c), with x16 the i16 activations of
 * group g0: i32x4 partials.
 */
@inline function rowSums(c: usize, x16: usize, g0: i32, g1: i32): v128 {
  let acc = i32x4.splat(0);
  for (let g = g0; g < g1; g++) {
    const v = v128.load(c + CANON_VALUES + (<usize>g << 4));
    const xv = x16 + (<usize>(g - g0) << 5);
    const p = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(v), v128.load(xv)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(v), v128.load(xv, 16)));
    acc = i32x4.add(acc, i32x4.mul(p, v128.load32_splat(c + CANON_SCALES + (<usize>g << 2))));
  }
  return acc;
}

/** rowSums of four canonical rows (c, c + CANON_BYTES, …) as one i32x4, lane k = row k. */
@inline function sums4(c: usize, x16: usize, g0: i32, g1: i32): v128 {
  return transposeSum(rowSums(c, x16, g0, g1), rowSums(c + CANON_BYTES, x16, g0, g1),
    rowSums(c + 2 * CANON_BYTES, x16, g0, g1), rowSums(c + 3 * CANON_BYTES, x16, g0, g1));
}

/** Σ_g min_g·bsum_g for one canonical row of a 256-value block (bsums: 16 i32): i32x4 partials. */
@inline function rowMins(c: usize, bsums: usize): v128 {
  const m = c + CANON_MINS;
  return i32x4.add(
    i32x4.add(i32x4.mul(v128.load(m), v128.load(bsums)), i32x4.mul(v128.load(m, 16), v128.load(bsums, 16))),
    i32x4.add(i32x4.mul(v128.load(m, 32), v128.load(bsums, 32)), i32x4.mul(v128.load(m, 48), v128.load(bsums, 48))));
}

@inline function lanes4(c: usize, offset: usize): v128 {
  let v = v128.load32_zero(c + offset);
  v = v128.load32_lane(c + CANON_BYTES + offset, v, 1);
  v = v128.load32_lane(c + 2 * CANON_BYTES + offset, v, 2);
  return v128.load32_lane(c + 3 * CANON_BYTES + offset, v, 3);
}

/**
 * acc + the contributions of block b of four decoded rows (canonical blocks at c, c + CANON_BYTES, …)
 * to their products with activation row x (`cols` values, prepared in the type's activation format).
 */
@inline function accumulate4(type: i32, c: usize, x: usize, cols: i32, b: i32, acc: v128): v128 {
  const values = blockValues(type);
  const groups = values >> 4;
  const x16 = q8I16(x, cols) + (<usize>(b * values) << 1);
  const form = formOf(type);
  const f0 = lanes4(c, CANON_F0);
  if (form == FORM_SUB) {
    // Each 32-value activation block is a block of its own (Q1_0, Q2_0).
    for (let k = 0; k < values >> 5; k++) {
      const isum = sums4(c, x16 + (<usize>k << 6), 2 * k, 2 * k + 2);
      const dx = v128.load32_splat(q8Scales(x, cols) + (<usize>(b * (values >> 5) + k) << 2));
      acc = f32x4.add(acc, f32x4.mul(f32x4.mul(f0, dx), f32x4.convert_i32x4_s(isum)));
    }
    return acc;
  }
  const isum = sums4(c, x16, 0, groups);
  const f1 = lanes4(c, CANON_F1);
  if (values == 256) {
    const dx = v128.load32_splat(q8kScales(x, cols) + (<usize>b << 2));
    const bsums = q8kSums(x, cols) + (<usize>b << 6);
    const msum = transposeSum(rowMins(c, bsums), rowMins(c + CANON_BYTES, bsums), rowMins(c + 2 * CANON_BYTES, bsums), rowMins(c + 3 * CANON_BYTES, bsums));
    if (form == FORM_DMIN) {
      return f32x4.add(acc, f32x4.sub(f32x4.mul(f32x4.mul(f0, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f32x4.mul(f1, dx), f32x4.convert_i32x4_s(msum))));
    }
    return f32x4.add(acc, f32x4.mul(f32x4.mul(f32x4.mul(f0, dx), f1), f32x4.convert_i32x4_s(i32x4.add(isum, msum))));
  }
  const dx = v128.load32_splat(q8Scales(x, cols) + (<usize>b << 2));
  if (form == FORM_Q81) {
    const sx = v128.load32_splat(q8_1Sums(x, cols) + (<usize>b << 2));
    return f32x4.add(acc, f32x4.add(f32x4.mul(f32x4.mul(f0, dx), f32x4.convert_i32x4_s(isum)), f32x4.mul(f1, sx)));
  }
  return f32x4.add(acc, f32x4.mul(f32x4.mul(f32x4.mul(f0, dx), f1), f32x4.convert_i32x4_s(isum)));
}

/** Decodes block b of rows p0..p3 (each a row's first byte) into the four canonical blocks at c. */
@inline function decode4(type: i32, bytes: usize, p0: usize, p1: usize, p2: usize, p3: usize, b: i32, c: usize): void {
  const o = <usize>b * bytes;
  decode(type, p0 + o, c);
  decode(type, p1 + o, c + CANON_BYTES);
  decode(type, p2 + o, c + 2 * CANON_BYTES);
  decode(type, p3 + o, c + 3 * CANON_BYTES);
}

/**
 * y[t][r] = W[r]·x[t] for rows [r0, r1) and all n activation rows (x rows consecutive at xStride, or
 * listed by the i32 index list xIndex; likewise y rows and yIndex). `scratch`: BLOCK_SCRATCH bytes
 * of this thread's own.
 */
export function blockMatmul(type: i32, w: usize, cols: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, yIndex: usize, r0: i32, r1: i32, scratch: usize): void {
  const bytes = blockBytes(type);
  const nb = cols / blockValues(type);
  const rowBytes = <usize>nb * bytes;
  const sums = scratch + 4 * CANON_BYTES;
  for (let t0 = 0; t0 < n; t0 += TILE) {
    const t1 = min<i32>(n, t0 + TILE);
    for (let r = r0; r < r1; r += 4) {
      const last = r1 - 1;
      const p0 = w + <usize>r * rowBytes;
      const p1 = w + <usize>min<i32>(r + 1, last) * rowBytes;
      const p2 = w + <usize>min<i32>(r + 2, last) * rowBytes;
      const p3 = w + <usize>min<i32>(r + 3, last) * rowBytes;
      memory.fill(sums, 0, <usize>(t1 - t0) << 4);
      for (let b = 0; b < nb; b++) {
        decode4(type, bytes, p0, p1, p2, p3, b, scratch);
        for (let t = t0; t < t1; t++) {
          const s = sums + (<usize>(t - t0) << 4);
          v128.store(s, accumulate4(type, scratch, activationRow(x, xStride, xIndex, t), cols, b, v128.load(s)));
        }
      }
      for (let t = t0; t < t1; t++) storeLanes(activationRow(y, yStride, yIndex, t) + (<usize>r << 2), v128.load(sums + (<usize>(t - t0) << 4)), r1 - r);
    }
  }
}

/** out[i] = W[i]·x for the `count` rows i listed (i32) at `list` — the sparse up projection. */
export function blockGatheredRows(type: i32, w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize, scratch: usize): void {
  const bytes = blockBytes(type);
  const nb = cols / blockValues(type);
  const rowBytes = <usize>nb * bytes;
  for (let k = 0; k < count; k += 4) {
    const i0 = listedRow(list, k, 0, count);
    const i1 = listedRow(list, k, 1, count);
    const i2 = listedRow(list, k, 2, count);
    const i3 = listedRow(list, k, 3, count);
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      decode4(type, bytes, w + <usize>i0 * rowBytes, w + <usize>i1 * rowBytes, w + <usize>i2 * rowBytes, w + <usize>i3 * rowBytes, b, scratch);
      acc = accumulate4(type, scratch, x, cols, b, acc);
    }
    storeListed(out, acc, i0, i1, i2, i3, k, count);
  }
}

/**
 * Dequantizes `count` values (whole blocks) of one row starting at block b0 into f32 at out, as
 * ggml's dequantize_row_* computes them.
 */
export function blockDequantize(type: i32, row: usize, b0: i32, count: i32, out: usize, scratch: usize): void {
  const bytes = blockBytes(type);
  const values = blockValues(type);
  const form = formOf(type);
  for (let b = 0; b < count / values; b++) {
    decode(type, row + <usize>(b0 + b) * bytes, scratch);
    const f0 = load<f32>(scratch + CANON_F0);
    const f1 = load<f32>(scratch + CANON_F1);
    for (let g = 0; g < values >> 4; g++) {
      const scale = <f32>load<i32>(scratch + CANON_SCALES + (<usize>g << 2));
      const o = out + (<usize>(b * values + (g << 4)) << 2);
      const v = v128.load(scratch + CANON_VALUES + (<usize>g << 4));
      const lo = i16x8.extend_low_i8x16_s(v);
      const hi = i16x8.extend_high_i8x16_s(v);
      const q0 = f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo));
      const q1 = f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo));
      const q2 = f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi));
      const q3 = f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi));
      // ggml: y = (d·scale)·q − dmin·min; q·d + m for Q4_1/Q5_1 (their scale is 1); ((d·scale)·k)·q
      // for the other forms, except IQ1's (d·scale)·(q·k) (its values carry the delta, see iquants.ts).
      const iq1 = type == IQ1_S || type == IQ1_M;
      const ds = f32x4.splat(form == FORM_DK && !iq1 ? f0 * scale * f1 : f0 * scale);
      if (iq1) {
        const k = f32x4.splat(f1);
        v128.store(o, f32x4.mul(ds, f32x4.mul(q0, k)));
        v128.store(o, f32x4.mul(ds, f32x4.mul(q1, k)), 16);
        v128.store(o, f32x4.mul(ds, f32x4.mul(q2, k)), 32);
        v128.store(o, f32x4.mul(ds, f32x4.mul(q3, k)), 48);
      } else if (form == FORM_Q81) {
        const m = f32x4.splat(f1);
        v128.store(o, f32x4.add(f32x4.mul(ds, q0), m));
        v128.store(o, f32x4.add(f32x4.mul(ds, q1), m), 16);
        v128.store(o, f32x4.add(f32x4.mul(ds, q2), m), 32);
        v128.store(o, f32x4.add(f32x4.mul(ds, q3), m), 48);
      } else if (form == FORM_DMIN) {
        const m = f32x4.splat(f1 * <f32>load<i32>(scratch + CANON_MINS + (<usize>g << 2)));
        v128.store(o, f32x4.sub(f32x4.mul(ds, q0), m));
        v128.store(o, f32x4.sub(f32x4.mul(ds, q1), m), 16);
        v128.store(o, f32x4.sub(f32x4.mul(ds, q2), m), 32);
        v128.store(o, f32x4.sub(f32x4.mul(ds, q3), m), 48);
      } else {
        v128.store(o, f32x4.mul(ds, q0));
        v128.store(o, f32x4.mul(ds, q1), 16);
        v128.store(o, f32x4.mul(ds, q2), 32);
        v128.store(o, f32x4.mul(ds, q3), 48);
      }
    }
  }
}

/**
 * An expert's down product in PowerInfer's orientation (one row of `hidden` values per neuron), rows
 * [r0, r1) (multiples of 32) of out: Σ over the `count` neurons listed at `list`, in order, of
 * h_i · row_i, each chunk of `chunk` neurons summed from zero and added to the total, as the
 * reference does. Each listed row is dequantized once into scratch (4·hidden bytes), then the sums
 * (partial and total, 8·hidden bytes more) are updated.
 */
export function blockDownRows(type: i32, w: usize, hidden: i32, h: usize, list: usize, count: i32, chunk: i32, out: usize,
  r0: i32, r1: i32, scratch: usize): void {
  const values = blockValues(type);
  const rowBytes = <usize>(hidden / values) * blockBytes(type);
  const column = scratch + 4 * CANON_BYTES;
  const partial = column + (<usize>hidden << 2);
  const total = partial + (<usize>hidden << 2);
  const b0 = r0 / values;
  const b1 = (r1 + values - 1) / values;
  const first = <usize>r0 << 2;
  const bytes = <usize>(r1 - r0) << 2;
  memory.fill(partial + first, 0, bytes);
  memory.fill(total + first, 0, bytes);
  let current = count > 0 ? load<i32>(list) / chunk : 0;
  for (let k = 0; k < count; k++) {
    const i = load<i32>(list + (<usize>k << 2));
    if (i / chunk != current) {
      current = i / chunk;
      addInto(total, partial, r0, r1);
      memory.fill(partial + first, 0, bytes);
    }
    blockDequantize(type, w + <usize>i * rowBytes, b0, (b1 - b0) * values, column + (<usize>(b0 * values) << 2), scratch);
    const hv = v128.load32_splat(h + (<usize>i << 2));
    for (let r = r0; r < r1; r += 4) {
      const o = <usize>r << 2;
      v128.store(partial + o, f32x4.add(v128.load(partial + o), f32x4.mul(hv, v128.load(column + o))));
    }
  }
  addInto(total, partial, r0, r1);
  memory.copy(out + first, total + first, bytes);
}

@inline function addInto(total: usize, partial: usize, r0: i32, r1: i32): void {
  for (let r = r0; r < r1; r += 4) {
    const o = <usize>r << 2;
    v128.store(total + o, f32x4.add(v128.load(total + o), v128.load(partial + o)));
  }
}
