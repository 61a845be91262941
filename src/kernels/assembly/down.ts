// An expert's down projection, out = down · h, visiting only neurons whose h is nonzero.
//
// Quantized, llama.cpp's orientation (file: `hidden` rows of `ffn` values): packed neuron-major so a
// neuron's column is contiguous. Per 32-neuron block b:
//   [hidden × f16 scales d(r, b)] [32 columns]
// A Q4_0 column holds 16 rows per 8 bytes (byte j: row j in the low nibble, row j+8 in the high);
// a Q8_0 column holds one byte per row. With h quantized to q8 (qh, scale dh, 8·Σqh), each block adds
//   f32(Σ_i q[r,i]·qh[i] - 8·Σqh) · f32(d(r,b)·dh)
// to out[r] in block order: the dense product, bit for bit, because absent neurons have qh = 0.
// Neurons are taken in pairs so one relaxed dot multiplies two columns; the pair lists are built with
// the quantized h (see expert.ts).
//
// Float types and PowerInfer's orientation (`ffn` rows of `hidden` values, one row per neuron) are
// axpys over the nonzero neurons in order, lanes along output rows, as the reference adds them.

import { F16_SIGN_EM, F16_EXP_INF, F32_INF, NIBBLE_MASK, PAIR_SHUFFLE, POW2_112, constant, halvesToF32Finite } from "./simd";
import { q8Bias, q8Scales } from "./activations";
import { elementBytes, loadValues } from "./floats";
import { BF16x, F16, F16x, F32, F32x, Q4, Q4_0, Q8, Q8_0, typeNumber } from "./types";
import { blockScratch, hOffset, hqOffset, nonzeroNeurons, pairCountsOffset, pairsOffset } from "./expert";
import { blockDownRows, isBlockFormat } from "./blocks";
import { activationRow } from "./quantized";

@inline export function downBlockBytes(type: i32, hidden: i32): usize {
  return <usize>hidden * (type == Q4_0 ? 18 : 34);
}

/**
 * Transposes 16 rows of 16 bytes (row j at src + j·srcStride) into 16 columns of 16 bytes (column e
 * at dst + e·dstStride: byte j = row j's byte e), by interleaving bytes, then pairs, quads and halves.
 */
@inline export function transpose16(src: usize, srcStride: usize, dst: usize, dstStride: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + srcStride);
  const r2 = v128.load(src + 2 * srcStride);
  const r3 = v128.load(src + 3 * srcStride);
  const r4 = v128.load(src + 4 * srcStride);
  const r5 = v128.load(src + 5 * srcStride);
  const r6 = v128.load(src + 6 * srcStride);
  const r7 = v128.load(src + 7 * srcStride);
  const r8 = v128.load(src + 8 * srcStride);
  const r9 = v128.load(src + 9 * srcStride);
  const r10 = v128.load(src + 10 * srcStride);
  const r11 = v128.load(src + 11 * srcStride);
  const r12 = v128.load(src + 12 * srcStride);
  const r13 = v128.load(src + 13 * srcStride);
  const r14 = v128.load(src + 14 * srcStride);
  const r15 = v128.load(src + 15 * srcStride);
  // Bytes: a(2i) = columns 0-7 of rows 2i, 2i+1; a(2i+1) = columns 8-15.
  const a0 = lo8(r0, r1), a1 = hi8(r0, r1), a2 = lo8(r2, r3), a3 = hi8(r2, r3);
  const a4 = lo8(r4, r5), a5 = hi8(r4, r5), a6 = lo8(r6, r7), a7 = hi8(r6, r7);
  const a8 = lo8(r8, r9), a9 = hi8(r8, r9), a10 = lo8(r10, r11), a11 = hi8(r10, r11);
  const a12 = lo8(r12, r13), a13 = hi8(r12, r13), a14 = lo8(r14, r15), a15 = hi8(r14, r15);
  // Pairs: four columns of four rows each.
  const b0 = lo16(a0, a2), b1 = hi16(a0, a2), b2 = lo16(a1, a3), b3 = hi16(a1, a3);
  const b4 = lo16(a4, a6), b5 = hi16(a4, a6), b6 = lo16(a5, a7), b7 = hi16(a5, a7);
  const b8 = lo16(a8, a10), b9 = hi16(a8, a10), b10 = lo16(a9, a11), b11 = hi16(a9, a11);
  const b12 = lo16(a12, a14), b13 = hi16(a12, a14), b14 = lo16(a13, a15), b15 = hi16(a13, a15);
  // Quads: two columns of eight rows each (c0-c7 rows 0-7, c8-c15 rows 8-15).
  const c0 = lo32(b0, b4), c1 = hi32(b0, b4), c2 = lo32(b1, b5), c3 = hi32(b1, b5);
  const c4 = lo32(b2, b6), c5 = hi32(b2, b6), c6 = lo32(b3, b7), c7 = hi32(b3, b7);
  const c8 = lo32(b8, b12), c9 = hi32(b8, b12), c10 = lo32(b9, b13), c11 = hi32(b9, b13);
  const c12 = lo32(b10, b14), c13 = hi32(b10, b14), c14 = lo32(b11, b15), c15 = hi32(b11, b15);
  v128.store(dst, i64x2.shuffle(c0, c8, 0, 2));
  v128.store(dst + dstStride, i64x2.shuffle(c0, c8, 1, 3));
  v128.store(dst + 2 * dstStride, i64x2.shuffle(c1, c9, 0, 2));
  v128.store(dst + 3 * dstStride, i64x2.shuffle(c1, c9, 1, 3));
  v128.store(dst + 4 * dstStride, i64x2.shuffle(c2, c10, 0, 2));
  v128.store(dst + 5 * dstStride, i64x2.shuffle(c2, c10, 1, 3));
  v128.store(dst + 6 * dstStride, i64x2.shuffle(c3, c11, 0, 2));
  v128.store(dst + 7 * dstStride, i64x2.shuffle(c3, c11, 1, 3));
  v128.store(dst + 8 * dstStride, i64x2.shuffle(c4, c12, 0, 2));
  v128.store(dst + 9 * dstStride, i64x2.shuffle(c4, c12, 1, 3));
  v128.store(dst + 10 * dstStride, i64x2.shuffle(c5, c13, 0, 2));
  v128.store(dst + 11 * dstStride, i64x2.shuffle(c5, c13, 1, 3));
  v128.store(dst + 12 * dstStride, i64x2.shuffle(c6, c14, 0, 2));
  v128.store(dst + 13 * dstStride, i64x2.shuffle(c6, c14, 1, 3));
  v128.store(dst + 14 * dstStride, i64x2.shuffle(c7, c15, 0, 2));
  v128.store(dst + 15 * dstStride, i64x2.shuffle(c7, c15, 1, 3));
}

@inline function lo8(a: v128, b: v128): v128 {
  return i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
@inline function hi8(a: v128, b: v128): v128 {
  return i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}
@inline function lo16(a: v128, b: v128): v128 {
  return i16x8.shuffle(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
}
@inline function hi16(a: v128, b: v128): v128 {
  return i16x8.shuffle(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
}
@inline function lo32(a: v128, b: v128): v128 {
  return i32x4.shuffle(a, b, 0, 4, 1, 5);
}
@inline function hi32(a: v128, b: v128): v128 {
  return i32x4.shuffle(a, b, 2, 6, 3, 7);
}

/** The 8-byte Q4_0 column chunk of 16 nibbles (rows 0-7 low, 8-15 high) from 16 row nibbles. */
@inline export function nibbleChunk(rows: v128): v128 {
  return v128.or(rows, i16x8.shl(i64x2.shuffle(rows, rows, 1, 0), 4));
}

/**
 * Packs an upstream Q4_0/Q8_0 down matrix (`hidden` rows × `ffn` columns) neuron-major, 16 rows ×
 * 32 neurons at a time through a byte transpose. `scratch`: 256 bytes.
 */
export function packDownQuant(type: i32, src: usize, dst: usize, hidden: i32, ffn: i32, scratch: usize): void {
  const nbF = ffn >> 5;
  const fileBlock: usize = type == Q4_0 ? 18 : 34;
  const rowBytes = <usize>nbF * fileBlock;
  const blockBytes = downBlockBytes(type, hidden);
  const mask = i8x16.splat(0x0f);
  for (let b = 0; b < nbF; b++) {
    const block = dst + <usize>b * blockBytes;
    const columns = block + (<usize>hidden << 1);
    for (let r = 0; r < hidden; r++) {
      store<u16>(block + (<usize>r << 1), load<u16>(src + <usize>r * rowBytes + <usize>b * fileBlock));
    }
    for (let r = 0; r < hidden; r += 16) {
      const rows = src + <usize>r * rowBytes + <usize>b * fileBlock + 2;
      if (type == Q8_0) {
        transpose16(rows, rowBytes, columns + <usize>r, <usize>hidden);
        transpose16(rows + 16, rowBytes, columns + <usize>(16 * hidden + r), <usize>hidden);
        continue;
      }
      // Byte e of a Q4_0 row holds neuron e (low nibble) and neuron e + 16 (high nibble).
      transpose16(rows, rowBytes, scratch, 16);
      const columnBytes = <usize>(hidden >> 1);
      for (let e = 0; e < 16; e++) {
        const bytes = v128.load(scratch + (<usize>e << 4));
        const chunk = columns + (<usize>r >> 1);
        v128.store64_lane(chunk + <usize>e * columnBytes, nibbleChunk(v128.and(bytes, mask)), 0);
        v128.store64_lane(chunk + <usize>(e + 16) * columnBytes, nibbleChunk(v128.and(i16x8.shr_u(bytes, 4), mask)), 0);
      }
    }
  }
}

/** Neurons per partial sum of the down product (DOWN_CHUNK in src/kernels/api.ts): 4 q8 blocks. */
export const CHUNK_NEURONS: i32 = 128;
export const CHUNK_BLOCKS: i32 = CHUNK_NEURONS >> 5;

/**
 * The down product for tokens j < n of one expert, rows [r0, r1) (multiples of 32), neurons of q8
 * blocks [b0, b1) (whole chunks), from the token scratch regions phase one filled; y[j] row goes to
 * y + yRow(j)·yStride (yRows: an i32 list, or 0 for consecutive rows). `list` is this thread's room
 * for ffn i32. Each chunk's sum starts from zero; chunk sums are added in order.
 */
export function expertDown(type: i32, quantUpstream: bool, down: usize, hidden: i32, ffn: i32, n: i32, scratch: usize,
  tokenStride: usize, y: usize, yRows: usize, yStride: usize, list: usize, r0: i32, r1: i32, b0: i32, b1: i32): void {
  if (quantUpstream) {
    // One token: nothing is reused, the reads are cold and scattered; issue them first, together.
    if (n == 1) v128.store(list, touchDownQuant(type, down, hidden, ffn, scratch, r0, r1, b0, b1));
    if (type == Q4_0) downQuant<Q4>(down, hidden, ffn, n, scratch, tokenStride, y, yRows, yStride, r0, r1, b0, b1);
    else downQuant<Q8>(down, hidden, ffn, n, scratch, tokenStride, y, yRows, yStride, r0, r1, b0, b1);
    return;
  }
  const rowBytes: usize = type == Q4_0 || type == Q8_0 ? <usize>(hidden >> 5) * (type == Q4_0 ? 18 : 34) : <usize>hidden * elementBytes(type);
  for (let j = 0; j < n; j++) {
    const h = scratch + <usize>j * tokenStride + hOffset(ffn);
    const count = nonzeroNeurons(h, b0 << 5, min<i32>(ffn, b1 << 5), list);
    const out = activationRow(y, yStride, yRows, j);
    if (isBlockFormat(type)) blockDownRows(type, down, hidden, h, list, count, CHUNK_NEURONS, out, r0, r1, blockScratch(list, ffn));
    else if (type == Q4_0) downRows<Q4>(down, rowBytes, h, list, count, out, r0, r1);
    else if (type == Q8_0) downRows<Q8>(down, rowBytes, h, list, count, out, r0, r1);
    else if (type == F32) downRows<F32x>(down, rowBytes, h, list, count, out, r0, r1);
    else if (type == F16) downRows<F16x>(down, rowBytes, h, list, count, out, r0, r1);
    else downRows<BF16x>(down, rowBytes, h, list, count, out, r0, r1);
  }
}

/**
 * Reads one vector of every cache line the down product of one token (its scratch at `token`) will
 * read for rows [r0, r1) and blocks [b0, b1): the blocks' scales and the listed neurons' columns, in
 * address order (see touchGatheredRows in quantized.ts). Returns the loads combined.
 */
function touchDownQuant(type: i32, down: usize, hidden: i32, ffn: i32, token: usize, r0: i32, r1: i32, b0: i32, b1: i32): v128 {
  const blockBytes = downBlockBytes(type, hidden);
  const columnBytes: usize = type == Q4_0 ? <usize>(hidden >> 1) : <usize>hidden;
  const first: usize = type == Q4_0 ? <usize>(r0 >> 1) : <usize>r0;
  const last: usize = type == Q4_0 ? <usize>(r1 >> 1) : <usize>r1;
  let acc = i32x4.splat(0);
  for (let b = b0; b < b1; b++) {
    const count = load<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2));
    if (count == 0) continue;
    const block = down + <usize>b * blockBytes;
    for (let o = <usize>r0 << 1; o < <usize>r1 << 1; o += 64) acc = v128.or(acc, v128.load(block + o));
    const columns = block + (<usize>hidden << 1);
    const pairs = token + pairsOffset(ffn) + (<usize>b << 6);
    for (let p = 0; p < count; p++) {
      const entry = load<i32>(pairs + (<usize>p << 2));
      const ci = columns + <usize>(entry & 0xff) * columnBytes;
      const cj = columns + <usize>((entry >> 8) & 0xff) * columnBytes;
      for (let o = first; o < last; o += 64) acc = v128.or(acc, v128.or(v128.load(ci + o), v128.load(cj + o)));
    }
  }
  return acc;
}

/** acc + f32(isum) · (f32(d) · dh), d four halves (sign-extended in i32 lanes). */
@inline function scaleAdd(acc: v128, isum: v128, halves: v128, dh: v128, signEm: v128, pow2_112: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(halvesToF32Finite(halves, signEm, pow2_112), dh)));
}

/**
 * y[j] rows [r0, r1) (multiples of 32) for tokens j < n, from each token's quantized h and pair lists.
 * Per 32-row tile and token, each block's Σ q·qh is accumulated over the pairs, then scaled and added.
 */
function downQuant<T>(down: usize, hidden: i32, ffn: i32, n: i32, scratch: usize, tokenStride: usize,
  y: usize, yRows: usize, yStride: usize, r0: i32, r1: i32, b0: i32, b1: i32): void {
  const type = typeNumber<T>();
  const blockBytes = downBlockBytes(type, hidden);
  const columnBytes: usize = type == Q4_0 ? <usize>(hidden >> 1) : <usize>hidden;
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const mask = constant(NIBBLE_MASK);
  const interleave = constant(PAIR_SHUFFLE);
  const lowNibbles = i16x8.splat(0x0f);
  for (let r = r0; r < r1; r += 32) {
    const tile: usize = <usize>hidden * 2 + (type == Q4_0 ? <usize>(r >> 1) : <usize>r);
    for (let j = 0; j < n; j++) {
      const token = scratch + <usize>j * tokenStride;
      const hq = token + hqOffset(ffn);
      let hScale = q8Scales(hq, ffn) + (<usize>b0 << 2);
      let hBias = q8Bias(hq, ffn) + (<usize>b0 << 2);
      let counts = token + pairCountsOffset(ffn) + (<usize>b0 << 2);
      let pairs = token + pairsOffset(ffn) + (<usize>b0 << 6);
      let columns = down + tile + <usize>b0 * blockBytes;
      let scales = down + (<usize>r << 1) + <usize>b0 * blockBytes;
      let t0 = f32x4.splat(0);
      let t1 = f32x4.splat(0);
      let t2 = f32x4.splat(0);
      let t3 = f32x4.splat(0);
      let t4 = f32x4.splat(0);
      let t5 = f32x4.splat(0);
      let t6 = f32x4.splat(0);
      let t7 = f32x4.splat(0);
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      let a4 = f32x4.splat(0);
      let a5 = f32x4.splat(0);
      let a6 = f32x4.splat(0);
      let a7 = f32x4.splat(0);
      for (let b = b0; b < b1; b++) {
        const count = load<i32>(counts);
        if (count != 0) {
          let s0: v128, s1: v128, s2: v128, s3: v128, s4: v128, s5: v128, s6: v128, s7: v128;
          if (type == Q4_0) {
            // Σ q·qh with unsigned nibbles, rows 0-7, 8-15, 16-23, 24-31, as i16: additions may
            // wrap, but the sum minus 8·Σqh lies within ±32512, so the wrapped result is exact.
            let p0 = i16x8.splat(0);
            let p1 = i16x8.splat(0);
            let p2 = i16x8.splat(0);
            let p3 = i16x8.splat(0);
            for (let p = 0; p < count; p++) {
              const entry = load<i32>(pairs + (<usize>p << 2));
              const ci = v128.load(columns + <usize>(entry & 0xff) * columnBytes);
              const cj = v128.load(columns + <usize>((entry >> 8) & 0xff) * columnBytes);
              if (ASC_FEATURE_RELAXED_SIMD) {
                // Rows 0-15 of both columns side by side, then rows 16-31; the swizzle pairs each
                // row's two nibbles for one dot with (qh_i, qh_j).
                const c0 = i64x2.shuffle(ci, cj, 0, 2);
                const c1 = i64x2.shuffle(ci, cj, 1, 3);
                const q = i16x8.splat(<i16>(entry >>> 16));
                p0 = i16x8.add(p0, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(c0, mask), interleave)));
                p1 = i16x8.add(p1, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(i16x8.shr_u(c0, 4), mask), interleave)));
                p2 = i16x8.add(p2, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(c1, mask), interleave)));
                p3 = i16x8.add(p3, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(i16x8.shr_u(c1, 4), mask), interleave)));
              } else {
                const qi = i16x8.splat(<i16>(<i8>(entry >>> 16)));
                const qj = i16x8.splat(<i16>(<i8>(entry >>> 24)));
                const i0 = i16x8.extend_low_i8x16_u(ci);
                const i1 = i16x8.extend_high_i8x16_u(ci);
                const j0 = i16x8.extend_low_i8x16_u(cj);
                const j1 = i16x8.extend_high_i8x16_u(cj);
                p0 = i16x8.add(p0, i16x8.add(i16x8.mul(v128.and(i0, lowNibbles), qi), i16x8.mul(v128.and(j0, lowNibbles), qj)));
                p1 = i16x8.add(p1, i16x8.add(i16x8.mul(i16x8.shr_u(i0, 4), qi), i16x8.mul(i16x8.shr_u(j0, 4), qj)));
                p2 = i16x8.add(p2, i16x8.add(i16x8.mul(v128.and(i1, lowNibbles), qi), i16x8.mul(v128.and(j1, lowNibbles), qj)));
                p3 = i16x8.add(p3, i16x8.add(i16x8.mul(i16x8.shr_u(i1, 4), qi), i16x8.mul(i16x8.shr_u(j1, 4), qj)));
              }
            }
            const bias = i16x8.splat(<i16>load<i32>(hBias));
            p0 = i16x8.sub(p0, bias);
            p1 = i16x8.sub(p1, bias);
            p2 = i16x8.sub(p2, bias);
            p3 = i16x8.sub(p3, bias);
            s0 = i32x4.extend_low_i16x8_s(p0);
            s1 = i32x4.extend_high_i16x8_s(p0);
            s2 = i32x4.extend_low_i16x8_s(p1);
            s3 = i32x4.extend_high_i16x8_s(p1);
            s4 = i32x4.extend_low_i16x8_s(p2);
            s5 = i32x4.extend_high_i16x8_s(p2);
            s6 = i32x4.extend_low_i16x8_s(p3);
            s7 = i32x4.extend_high_i16x8_s(p3);
          } else {
            s0 = i32x4.splat(0);
            s1 = i32x4.splat(0);
            s2 = i32x4.splat(0);
            s3 = i32x4.splat(0);
            s4 = i32x4.splat(0);
            s5 = i32x4.splat(0);
            s6 = i32x4.splat(0);
            s7 = i32x4.splat(0);
            for (let p = 0; p < count; p++) {
              const entry = load<i32>(pairs + (<usize>p << 2));
              const ci = columns + <usize>(entry & 0xff) * columnBytes;
              const cj = columns + <usize>((entry >> 8) & 0xff) * columnBytes;
              const qPair = i32x4.splat((<i32>(<i8>(entry >>> 16)) & 0xffff) | (<i32>(<i8>(entry >>> 24)) << 16));
              const a = v128.load(ci);
              const c = v128.load(cj);
              const e = v128.load(ci, 16);
              const f = v128.load(cj, 16);
              s0 = i32x4.add(s0, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(c), 0, 8, 1, 9, 2, 10, 3, 11), qPair));
              s1 = i32x4.add(s1, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(c), 4, 12, 5, 13, 6, 14, 7, 15), qPair));
              s2 = i32x4.add(s2, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(c), 0, 8, 1, 9, 2, 10, 3, 11), qPair));
              s3 = i32x4.add(s3, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(c), 4, 12, 5, 13, 6, 14, 7, 15), qPair));
              s4 = i32x4.add(s4, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_low_i8x16_s(e), i16x8.extend_low_i8x16_s(f), 0, 8, 1, 9, 2, 10, 3, 11), qPair));
              s5 = i32x4.add(s5, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_low_i8x16_s(e), i16x8.extend_low_i8x16_s(f), 4, 12, 5, 13, 6, 14, 7, 15), qPair));
              s6 = i32x4.add(s6, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_high_i8x16_s(e), i16x8.extend_high_i8x16_s(f), 0, 8, 1, 9, 2, 10, 3, 11), qPair));
              s7 = i32x4.add(s7, i32x4.dot_i16x8_s(i16x8.shuffle(i16x8.extend_high_i8x16_s(e), i16x8.extend_high_i8x16_s(f), 4, 12, 5, 13, 6, 14, 7, 15), qPair));
            }
          }
          const dh = v128.load32_splat(hScale);
          const d0 = v128.load(scales);
          const d1 = v128.load(scales, 16);
          const d2 = v128.load(scales, 32);
          const d3 = v128.load(scales, 48);
          a0 = scaleAdd(a0, s0, i32x4.extend_low_i16x8_s(d0), dh, signEm, pow2_112);
          a1 = scaleAdd(a1, s1, i32x4.extend_high_i16x8_s(d0), dh, signEm, pow2_112);
          a2 = scaleAdd(a2, s2, i32x4.extend_low_i16x8_s(d1), dh, signEm, pow2_112);
          a3 = scaleAdd(a3, s3, i32x4.extend_high_i16x8_s(d1), dh, signEm, pow2_112);
          a4 = scaleAdd(a4, s4, i32x4.extend_low_i16x8_s(d2), dh, signEm, pow2_112);
          a5 = scaleAdd(a5, s5, i32x4.extend_high_i16x8_s(d2), dh, signEm, pow2_112);
          a6 = scaleAdd(a6, s6, i32x4.extend_low_i16x8_s(d3), dh, signEm, pow2_112);
          a7 = scaleAdd(a7, s7, i32x4.extend_high_i16x8_s(d3), dh, signEm, pow2_112);
        }
        counts += 4;
        pairs += 64;
        hScale += 4;
        hBias += 4;
        columns += blockBytes;
        scales += blockBytes;
        if ((b + 1) % CHUNK_BLOCKS == 0 || b + 1 == b1) {
          // A chunk ends: its sum joins the total, the next starts from zero.
          t0 = f32x4.add(t0, a0);
          t1 = f32x4.add(t1, a1);
          t2 = f32x4.add(t2, a2);
          t3 = f32x4.add(t3, a3);
          t4 = f32x4.add(t4, a4);
          t5 = f32x4.add(t5, a5);
          t6 = f32x4.add(t6, a6);
          t7 = f32x4.add(t7, a7);
          a0 = f32x4.splat(0);
          a1 = f32x4.splat(0);
          a2 = f32x4.splat(0);
          a3 = f32x4.splat(0);
          a4 = f32x4.splat(0);
          a5 = f32x4.splat(0);
          a6 = f32x4.splat(0);
          a7 = f32x4.splat(0);
        }
      }
      const out = activationRow(y, yStride, yRows, j) + (<usize>r << 2);
      v128.store(out, t0);
      v128.store(out, t1, 16);
      v128.store(out, t2, 32);
      v128.store(out, t3, 48);
      v128.store(out, t4, 64);
      v128.store(out, t5, 80);
      v128.store(out, t6, 96);
      v128.store(out, t7, 112);
    }
  }
}

/**
 * out[r] for rows [r0, r1) (multiples of 32) of one token: Σ over the listed neurons, in order, of
 * h_i · column_i[r], with `rows` laid out one neuron per row of `rowBytes` (any compute type); each
 * chunk of CHUNK_NEURONS neurons is summed from zero and added to the total.
 */
function downRows<T>(w: usize, rowBytes: usize, h: usize, list: usize, count: i32, out: usize, r0: i32, r1: i32): void {
  const type = typeNumber<T>();
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const expInf = constant(F16_EXP_INF);
  const f32Inf = constant(F32_INF);
  const mask = constant(NIBBLE_MASK);
  for (let r = r0; r < r1; r += 32) {
    let t0 = f32x4.splat(0);
    let t1 = f32x4.splat(0);
    let t2 = f32x4.splat(0);
    let t3 = f32x4.splat(0);
    let t4 = f32x4.splat(0);
    let t5 = f32x4.splat(0);
    let t6 = f32x4.splat(0);
    let t7 = f32x4.splat(0);
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0);
    let a5 = f32x4.splat(0);
    let a6 = f32x4.splat(0);
    let a7 = f32x4.splat(0);
    let chunk = count > 0 ? load<i32>(list) / CHUNK_NEURONS : 0;
    for (let k = 0; k < count; k++) {
      const i = load<i32>(list + (<usize>k << 2));
      if (i / CHUNK_NEURONS != chunk) {
        chunk = i / CHUNK_NEURONS;
        t0 = f32x4.add(t0, a0);
        t1 = f32x4.add(t1, a1);
        t2 = f32x4.add(t2, a2);
        t3 = f32x4.add(t3, a3);
        t4 = f32x4.add(t4, a4);
        t5 = f32x4.add(t5, a5);
        t6 = f32x4.add(t6, a6);
        t7 = f32x4.add(t7, a7);
        a0 = f32x4.splat(0);
        a1 = f32x4.splat(0);
        a2 = f32x4.splat(0);
        a3 = f32x4.splat(0);
        a4 = f32x4.splat(0);
        a5 = f32x4.splat(0);
        a6 = f32x4.splat(0);
        a7 = f32x4.splat(0);
      }
      const hv = v128.load32_splat(h + (<usize>i << 2));
      const row = w + <usize>i * rowBytes;
      let v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128;
      if (type == Q4_0 || type == Q8_0) {
        const block = row + <usize>(r >> 5) * (type == Q4_0 ? 18 : 34);
        const d = f32x4.splat(halfBits(load<u16>(block), signEm, pow2_112));
        let q0: v128, q1: v128, q2: v128, q3: v128;
        if (type == Q4_0) {
          const bytes = v128.load(block, 2);
          const eight = i16x8.splat(8);
          const lo = v128.and(bytes, mask);
          const hi = v128.and(i16x8.shr_u(bytes, 4), mask);
          q0 = i16x8.sub(i16x8.extend_low_i8x16_u(lo), eight);
          q1 = i16x8.sub(i16x8.extend_high_i8x16_u(lo), eight);
          q2 = i16x8.sub(i16x8.extend_low_i8x16_u(hi), eight);
          q3 = i16x8.sub(i16x8.extend_high_i8x16_u(hi), eight);
        } else {
          const b0 = v128.load(block, 2);
          const b1 = v128.load(block, 18);
          q0 = i16x8.extend_low_i8x16_s(b0);
          q1 = i16x8.extend_high_i8x16_s(b0);
          q2 = i16x8.extend_low_i8x16_s(b1);
          q3 = i16x8.extend_high_i8x16_s(b1);
        }
        v0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q0)), d);
        v1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q0)), d);
        v2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q1)), d);
        v3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q1)), d);
        v4 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q2)), d);
        v5 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q2)), d);
        v6 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q3)), d);
        v7 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q3)), d);
      } else {
        v0 = loadValues(type, row, r, signEm, pow2_112, expInf, f32Inf);
        v1 = loadValues(type, row, r + 4, signEm, pow2_112, expInf, f32Inf);
        v2 = loadValues(type, row, r + 8, signEm, pow2_112, expInf, f32Inf);
        v3 = loadValues(type, row, r + 12, signEm, pow2_112, expInf, f32Inf);
        v4 = loadValues(type, row, r + 16, signEm, pow2_112, expInf, f32Inf);
        v5 = loadValues(type, row, r + 20, signEm, pow2_112, expInf, f32Inf);
        v6 = loadValues(type, row, r + 24, signEm, pow2_112, expInf, f32Inf);
        v7 = loadValues(type, row, r + 28, signEm, pow2_112, expInf, f32Inf);
      }
      a0 = f32x4.add(a0, f32x4.mul(hv, v0));
      a1 = f32x4.add(a1, f32x4.mul(hv, v1));
      a2 = f32x4.add(a2, f32x4.mul(hv, v2));
      a3 = f32x4.add(a3, f32x4.mul(hv, v3));
      a4 = f32x4.add(a4, f32x4.mul(hv, v4));
      a5 = f32x4.add(a5, f32x4.mul(hv, v5));
      a6 = f32x4.add(a6, f32x4.mul(hv, v6));
      a7 = f32x4.add(a7, f32x4.mul(hv, v7));
    }
    const o = out + (<usize>r << 2);
    v128.store(o, f32x4.add(t0, a0));
    v128.store(o, f32x4.add(t1, a1), 16);
    v128.store(o, f32x4.add(t2, a2), 32);
    v128.store(o, f32x4.add(t3, a3), 48);
    v128.store(o, f32x4.add(t4, a4), 64);
    v128.store(o, f32x4.add(t5, a5), 80);
    v128.store(o, f32x4.add(t6, a6), 96);
    v128.store(o, f32x4.add(t7, a7), 112);
  }
}

@inline function halfBits(bits: u16, signEm: v128, pow2_112: v128): f32 {
  return f32x4.extract_lane(halvesToF32Finite(i32x4.splat(<i32>(<i16>bits)), signEm, pow2_112), 0);
}

/** Transposes a float down matrix (`hidden` rows × `ffn` columns) to one row per neuron. */
export function transposeFloat(elementBytes: i32, src: usize, dst: usize, hidden: i32, ffn: i32): void {
  for (let r = 0; r < hidden; r++) {
    for (let i = 0; i < ffn; i++) {
      const from = src + (<usize>r * <usize>ffn + <usize>i) * <usize>elementBytes;
      const to = dst + (<usize>i * <usize>hidden + <usize>r) * <usize>elementBytes;
      if (elementBytes == 4) store<u32>(to, load<u32>(from));
      else store<u16>(to, load<u16>(from));
    }
  }
}
