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
import { Q4_0, Q8_0 } from "./quantized";
import { elementBytes, loadValues } from "./floats";
import { hOffset, hqOffset, nonzeroNeurons, pairCountsOffset, pairsOffset } from "./expert";

@inline export function downBlockBytes(type: i32, hidden: i32): usize {
  return <usize>hidden * (type == Q4_0 ? 18 : 34);
}

/** Packs an upstream Q4_0/Q8_0 down matrix (`hidden` rows × `ffn` columns) neuron-major. */
export function packDownQuant(type: i32, src: usize, dst: usize, hidden: i32, ffn: i32): void {
  const nbF = ffn >> 5;
  const fileBlock: usize = type == Q4_0 ? 18 : 34;
  const rowBytes = <usize>nbF * fileBlock;
  const blockBytes = downBlockBytes(type, hidden);
  for (let b = 0; b < nbF; b++) {
    const block = dst + <usize>b * blockBytes;
    const columns = block + (<usize>hidden << 1);
    for (let r = 0; r < hidden; r++) {
      const from = src + <usize>r * rowBytes + <usize>b * fileBlock;
      store<u16>(block + (<usize>r << 1), load<u16>(from));
    }
    if (type == Q8_0) {
      for (let r = 0; r < hidden; r++) {
        const from = src + <usize>r * rowBytes + <usize>b * fileBlock + 2;
        for (let e = 0; e < 32; e++) store<u8>(columns + <usize>e * <usize>hidden + <usize>r, load<u8>(from + <usize>e));
      }
      continue;
    }
    const columnBytes = <usize>(hidden >> 1);
    // 16 rows at a time: each column's 8 bytes are assembled in a u64 and written once.
    for (let r = 0; r < hidden; r += 16) {
      for (let e = 0; e < 16; e++) {
        let low: u64 = 0;
        let high: u64 = 0;
        for (let j = 0; j < 16; j++) {
          const byte = <u64>load<u8>(src + <usize>(r + j) * rowBytes + <usize>b * fileBlock + 2 + <usize>e);
          const shift = <u64>(((j & 7) << 3) + ((j >> 3) << 2));
          low |= (byte & 15) << shift;
          high |= (byte >> 4) << shift;
        }
        store<u64>(columns + <usize>e * columnBytes + (<usize>r >> 1), low);
        store<u64>(columns + <usize>(e + 16) * columnBytes + (<usize>r >> 1), high);
      }
    }
  }
}

/**
 * Phase two of the expert: y[j] rows [r0, r1) (multiples of 32) for tokens j < n, from the token
 * scratch regions phase one filled. `list` is this thread's room for ffn i32.
 */
export function expertDown(type: i32, quantUpstream: bool, down: usize, hidden: i32, ffn: i32, n: i32, scratch: usize,
  tokenStride: usize, y: usize, yStride: usize, list: usize, r0: i32, r1: i32): void {
  if (quantUpstream) {
    downQuant(type, down, hidden, ffn, n, scratch, tokenStride, y, yStride, r0, r1);
    return;
  }
  const rowBytes: usize = type == Q4_0 || type == Q8_0 ? <usize>(hidden >> 5) * (type == Q4_0 ? 18 : 34) : <usize>hidden * elementBytes(type);
  for (let j = 0; j < n; j++) {
    const h = scratch + <usize>j * tokenStride + hOffset(ffn);
    const count = nonzeroNeurons(h, ffn, list);
    downRows(type, down, rowBytes, h, list, count, y + <usize>j * yStride, r0, r1);
  }
}

/**
 * out[j][r] for rows [r0, r1) (multiples of 16) and tokens j < n, from each token's quantized h and
 * pair lists (`hq`, `pairCounts`, `pairs` at fixed offsets in its scratch region).
 */
function downQuant(type: i32, down: usize, hidden: i32, ffn: i32, n: i32, scratch: usize, tokenStride: usize,
  y: usize, yStride: usize, r0: i32, r1: i32): void {
  const nbF = ffn >> 5;
  const blockBytes = downBlockBytes(type, hidden);
  const columnBytes: usize = type == Q4_0 ? <usize>(hidden >> 1) : <usize>hidden;
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const mask = constant(NIBBLE_MASK);
  const interleave = constant(PAIR_SHUFFLE);
  for (let r = r0; r < r1; r += 16) {
    const columnOffset: usize = <usize>hidden * 2 + (type == Q4_0 ? <usize>(r >> 1) : <usize>r);
    for (let j = 0; j < n; j++) {
      const token = scratch + <usize>j * tokenStride;
      const hq = token + hqOffset(ffn);
      const hScales = q8Scales(hq, ffn);
      const hBias = q8Bias(hq, ffn);
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      for (let b = 0; b < nbF; b++) {
        const count = load<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2));
        if (count == 0) continue;
        const block = down + <usize>b * blockBytes;
        const columns = block + columnOffset;
        const pairs = token + pairsOffset(ffn) + (<usize>b << 6);
        let s0 = i32x4.splat(0);
        let s1 = i32x4.splat(0);
        let s2 = i32x4.splat(0);
        let s3 = i32x4.splat(0);
        if (type == Q4_0) {
          // Σ q[r,i]·qh[i] with unsigned nibbles, as i16: additions may wrap, but the sum minus
          // 8·Σqh lies within ±32512, so the wrapped result is exact.
          let lo = i16x8.splat(0);
          let hi = i16x8.splat(0);
          if (ASC_FEATURE_RELAXED_SIMD) {
            for (let p = 0; p < count; p++) {
              const entry = load<i32>(pairs + (<usize>p << 2));
              const v = v128.load64_lane(columns + <usize>((entry >> 8) & 0xff) * columnBytes,
                v128.load64_zero(columns + <usize>(entry & 0xff) * columnBytes), 1);
              const q = i16x8.splat(<i16>(entry >>> 16));
              lo = i16x8.add(lo, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(v, mask), interleave)));
              hi = i16x8.add(hi, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(i16x8.shr_u(v, 4), mask), interleave)));
            }
          } else {
            for (let p = 0; p < count; p++) {
              const entry = load<i32>(pairs + (<usize>p << 2));
              const vi = v128.load8x8_u(columns + <usize>(entry & 0xff) * columnBytes);
              const vj = v128.load8x8_u(columns + <usize>((entry >> 8) & 0xff) * columnBytes);
              const qi = i16x8.splat(<i16>(<i8>(entry >>> 16)));
              const qj = i16x8.splat(<i16>(<i8>(entry >>> 24)));
              lo = i16x8.add(lo, i16x8.add(i16x8.mul(v128.and(vi, mask), qi), i16x8.mul(v128.and(vj, mask), qj)));
              hi = i16x8.add(hi, i16x8.add(i16x8.mul(i16x8.shr_u(vi, 4), qi), i16x8.mul(i16x8.shr_u(vj, 4), qj)));
            }
          }
          const bias = i16x8.splat(<i16>load<i32>(hBias + (<usize>b << 2)));
          lo = i16x8.sub(lo, bias);
          hi = i16x8.sub(hi, bias);
          s0 = i32x4.extend_low_i16x8_s(lo);
          s1 = i32x4.extend_high_i16x8_s(lo);
          s2 = i32x4.extend_low_i16x8_s(hi);
          s3 = i32x4.extend_high_i16x8_s(hi);
        } else {
          for (let p = 0; p < count; p++) {
            const entry = load<i32>(pairs + (<usize>p << 2));
            const ci = v128.load(columns + <usize>(entry & 0xff) * columnBytes);
            const cj = v128.load(columns + <usize>((entry >> 8) & 0xff) * columnBytes);
            const qPair = i32x4.splat((<i32>(<i8>(entry >>> 16)) & 0xffff) | (<i32>(<i8>(entry >>> 24)) << 16));
            const iLow = i16x8.extend_low_i8x16_s(ci);
            const jLow = i16x8.extend_low_i8x16_s(cj);
            const iHigh = i16x8.extend_high_i8x16_s(ci);
            const jHigh = i16x8.extend_high_i8x16_s(cj);
            s0 = i32x4.add(s0, i32x4.dot_i16x8_s(i16x8.shuffle(iLow, jLow, 0, 8, 1, 9, 2, 10, 3, 11), qPair));
            s1 = i32x4.add(s1, i32x4.dot_i16x8_s(i16x8.shuffle(iLow, jLow, 4, 12, 5, 13, 6, 14, 7, 15), qPair));
            s2 = i32x4.add(s2, i32x4.dot_i16x8_s(i16x8.shuffle(iHigh, jHigh, 0, 8, 1, 9, 2, 10, 3, 11), qPair));
            s3 = i32x4.add(s3, i32x4.dot_i16x8_s(i16x8.shuffle(iHigh, jHigh, 4, 12, 5, 13, 6, 14, 7, 15), qPair));
          }
        }
        const dh = v128.load32_splat(hScales + (<usize>b << 2));
        const scales = block + (<usize>r << 1);
        const d0 = v128.load(scales);
        const d1 = v128.load(scales, 16);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(s0), f32x4.mul(halvesToF32Finite(i32x4.extend_low_i16x8_s(d0), signEm, pow2_112), dh)));
        a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(s1), f32x4.mul(halvesToF32Finite(i32x4.extend_high_i16x8_s(d0), signEm, pow2_112), dh)));
        a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(s2), f32x4.mul(halvesToF32Finite(i32x4.extend_low_i16x8_s(d1), signEm, pow2_112), dh)));
        a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(s3), f32x4.mul(halvesToF32Finite(i32x4.extend_high_i16x8_s(d1), signEm, pow2_112), dh)));
      }
      const out = y + <usize>j * yStride + (<usize>r << 2);
      v128.store(out, a0);
      v128.store(out, a1, 16);
      v128.store(out, a2, 32);
      v128.store(out, a3, 48);
    }
  }
}

/**
 * out[r] for rows [r0, r1) (multiples of 32) of one token: Σ over the listed neurons, in order, of
 * h_i · column_i[r], with `rows` laid out one neuron per row of `rowBytes` (any compute type).
 */
function downRows(type: i32, w: usize, rowBytes: usize, h: usize, list: usize, count: i32, out: usize, r0: i32, r1: i32): void {
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const expInf = constant(F16_EXP_INF);
  const f32Inf = constant(F32_INF);
  const mask = constant(NIBBLE_MASK);
  for (let r = r0; r < r1; r += 32) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0);
    let a5 = f32x4.splat(0);
    let a6 = f32x4.splat(0);
    let a7 = f32x4.splat(0);
    for (let k = 0; k < count; k++) {
      const i = load<i32>(list + (<usize>k << 2));
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
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
    v128.store(o, a4, 64);
    v128.store(o, a5, 80);
    v128.store(o, a6, 96);
    v128.store(o, a7, 112);
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
