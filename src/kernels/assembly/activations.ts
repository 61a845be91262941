// Prepared activations. A q8 row of `cols` values (cols a multiple of 32, nb = cols / 32) is
//   [i8 × cols] [i16 × cols] [f32 scale × nb] [i32 8·Σq × nb]
// The i8 values feed the relaxed i16x8 dot, the i16 copy the SIMD128 and Q8_0 paths; scales are the
// f16-rounded block scales as f32; 8·Σq folds Q4_0's "- 8" into one subtraction per block.
// f16 and bf16 rows are f32 values already rounded to that precision; f32 rows are copies.

import { F16_EXP_INF, F16_SIGN_EM, F32_INF, POW2_112, constant, f32ToBf16s, f32ToHalf, f32ToHalves, halfToF32, halvesToF32 } from "./simd";

@inline export function q8RowBytes(cols: i32): usize {
  return (<usize>(3 * cols + (cols >> 5) * 8) + 15) & ~15;
}
@inline export function q8I16(x: usize, cols: i32): usize {
  return x + <usize>cols;
}
@inline export function q8Scales(x: usize, cols: i32): usize {
  return x + <usize>(3 * cols);
}
@inline export function q8Bias(x: usize, cols: i32): usize {
  return x + <usize>(3 * cols + (cols >> 5) * 4);
}

/** The largest |x| of the 32 values at p, reduced in a fixed order. */
@inline function blockAbsMax(p: usize): f32 {
  let m = f32x4.max(f32x4.max(f32x4.max(f32x4.abs(v128.load(p)), f32x4.abs(v128.load(p, 16))), f32x4.max(f32x4.abs(v128.load(p, 32)), f32x4.abs(v128.load(p, 48)))),
    f32x4.max(f32x4.max(f32x4.abs(v128.load(p, 64)), f32x4.abs(v128.load(p, 80))), f32x4.max(f32x4.abs(v128.load(p, 96)), f32x4.abs(v128.load(p, 112)))));
  m = f32x4.max(m, i64x2.shuffle(m, m, 1, 0));
  return max<f32>(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1));
}

/**
 * Quantizes blocks [b0, b1) of the f32 row `src` into the q8 row `dst`, exactly as llama.cpp's AVX2
 * `quantize_row_q8_0`: d = amax/127 (stored as f16), q = round-half-even(x · 127/amax).
 */
export function quantizeBlocks(src: usize, cols: i32, dst: usize, b0: i32, b1: i32): void {
  const i16s = q8I16(dst, cols);
  const scales = q8Scales(dst, cols);
  const bias = q8Bias(dst, cols);
  for (let b = b0; b < b1; b++) {
    const p = src + (<usize>b << 7);
    const v0 = v128.load(p);
    const v1 = v128.load(p, 16);
    const v2 = v128.load(p, 32);
    const v3 = v128.load(p, 48);
    const v4 = v128.load(p, 64);
    const v5 = v128.load(p, 80);
    const v6 = v128.load(p, 96);
    const v7 = v128.load(p, 112);
    const amax = blockAbsMax(p);
    const d = amax / 127;
    const id = f32x4.splat(amax != 0 ? <f32>127 / amax : 0);
    store<f32>(scales + (<usize>b << 2), halfToF32(f32ToHalf(d)));
    const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, id)));
    const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, id)));
    const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, id)));
    const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, id)));
    const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, id)));
    const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, id)));
    const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, id)));
    const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, id)));
    const w0 = i16x8.narrow_i32x4_s(q0, q1);
    const w1 = i16x8.narrow_i32x4_s(q2, q3);
    const w2 = i16x8.narrow_i32x4_s(q4, q5);
    const w3 = i16x8.narrow_i32x4_s(q6, q7);
    const o = <usize>b << 5;
    v128.store(dst + o, i8x16.narrow_i16x8_s(w0, w1));
    v128.store(dst + o, i8x16.narrow_i16x8_s(w2, w3), 16);
    const o16 = i16s + (<usize>b << 6);
    v128.store(o16, w0);
    v128.store(o16, w1, 16);
    v128.store(o16, w2, 32);
    v128.store(o16, w3, 48);
    const s = i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)), i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7)));
    const s2 = i32x4.add(s, i64x2.shuffle(s, s, 1, 0));
    store<i32>(bias + (<usize>b << 2), (i32x4.extract_lane(s2, 0) + i32x4.extract_lane(s2, 1)) << 3);
  }
}

/** Rounds `count` f32 values to f16 precision (kept as f32). */
export function roundToF16(src: usize, dst: usize, count: i32): void {
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const expInf = constant(F16_EXP_INF);
  const f32Inf = constant(F32_INF);
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const h = f32ToHalves(v128.load(src + (<usize>i << 2)));
    const widened = i32x4.shr_s(i32x4.shl(h, 16), 16);
    v128.store(dst + (<usize>i << 2), halvesToF32(widened, signEm, pow2_112, expInf, f32Inf));
  }
  for (; i < count; i++) store<f32>(dst + (<usize>i << 2), halfToF32(f32ToHalf(load<f32>(src + (<usize>i << 2)))));
}

/** Rounds `count` f32 values to bfloat16 precision (kept as f32). */
export function roundToBf16(src: usize, dst: usize, count: i32): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) v128.store(dst + (<usize>i << 2), i32x4.shl(f32ToBf16s(v128.load(src + (<usize>i << 2))), 16));
  for (; i < count; i++) {
    const v = f32ToBf16s(f32x4.splat(load<f32>(src + (<usize>i << 2))));
    store<i32>(dst + (<usize>i << 2), i32x4.extract_lane(v, 0) << 16);
  }
}

// A q8_1 row is a q8_0 row (the same quants and scales: ggml's x86 quantizers agree) followed by
// [f32 s × nb], s = the f16-rounded d·Σq of each block (d unrounded), as block_q8_1 holds it.

@inline export function q8_1RowBytes(cols: i32): usize {
  return q8RowBytes(cols) + (((<usize>(cols >> 5) << 2) + 15) & ~15);
}
@inline export function q8_1Sums(x: usize, cols: i32): usize {
  return x + q8RowBytes(cols);
}

/** Quantizes blocks [b0, b1) of src into the q8_1 row dst: the q8_0 row, then each block's s. */
export function quantizeBlocks1(src: usize, cols: i32, dst: usize, b0: i32, b1: i32): void {
  quantizeBlocks(src, cols, dst, b0, b1);
  const sums = q8_1Sums(dst, cols);
  const bias = q8Bias(dst, cols);
  for (let b = b0; b < b1; b++) {
    const d = blockAbsMax(src + (<usize>b << 7)) / 127;
    const sum = <f32>(load<i32>(bias + (<usize>b << 2)) >> 3);
    store<f32>(sums + (<usize>b << 2), halfToF32(f32ToHalf(d * sum)));
  }
}

// A q8_k row of `cols` values (a multiple of 256, nk = cols / 256) is
//   [i8 × cols] [i16 × cols] [f32 d × nk] [i32 bsum × cols/16] [i16 bsum × cols/16] [i16 Σq × cols/32]
// (the sums also as i16, Σq over each 32 values too, for products that take them by eight)
// as ggml's block_q8_K: d = 1/iscale with iscale = -127/max (max: the first value of largest
// magnitude, sign kept), q = round-half-even(iscale·x) capped at 127, bsum = Σq over each 16 values.
// A block whose largest magnitude is 0 (or NaN everywhere) has d = 0 and zero quants and sums.

@inline export function q8kRowBytes(cols: i32): usize {
  return (<usize>(3 * cols + (cols >> 8) * 4 + (cols >> 4) * 6 + (cols >> 5) * 2) + 15) & ~15;
}
/** The i16 copy of the sums over 16 values. */
@inline export function q8kSums16(x: usize, cols: i32): usize {
  return x + <usize>(3 * cols + (cols >> 8) * 4 + (cols >> 4) * 4);
}
/** The i16 sums over 32 values. */
@inline export function q8kSums32(x: usize, cols: i32): usize {
  return x + <usize>(3 * cols + (cols >> 8) * 4 + (cols >> 4) * 6);
}
@inline export function q8kScales(x: usize, cols: i32): usize {
  return x + <usize>(3 * cols);
}
@inline export function q8kSums(x: usize, cols: i32): usize {
  return x + <usize>(3 * cols + (cols >> 8) * 4);
}

/** Quantizes 256-value blocks [b0, b1) of the f32 row src into the q8_k row dst. */
export function quantizeBlocksK(src: usize, cols: i32, dst: usize, b0: i32, b1: i32): void {
  const i16s = q8I16(dst, cols);
  const scales = q8kScales(dst, cols);
  const sums = q8kSums(dst, cols);
  const sums16 = q8kSums16(dst, cols);
  const sums32 = q8kSums32(dst, cols);
  const cap = i32x4.splat(127);
  for (let b = b0; b < b1; b++) {
    const p = src + (<usize>b << 10);
    // The first value of largest magnitude (a NaN is never larger), as the reference's scalar scan.
    let amax: f32 = 0;
    let vmax: f32 = 0;
    for (let j = 0; j < 256; j++) {
      const v = load<f32>(p + (<usize>j << 2));
      if (abs<f32>(v) > amax) {
        amax = abs<f32>(v);
        vmax = v;
      }
    }
    const q8 = dst + (<usize>b << 8);
    const q16 = i16s + (<usize>b << 9);
    const bs = sums + (<usize>b << 6);
    if (amax == 0) {
      store<f32>(scales + (<usize>b << 2), 0);
      memory.fill(q8, 0, 256);
      memory.fill(q16, 0, 512);
      memory.fill(bs, 0, 64);
      memory.fill(sums16 + (<usize>b << 5), 0, 32);
      memory.fill(sums32 + (<usize>b << 4), 0, 16);
      continue;
    }
    const iscale: f32 = -127 / vmax;
    store<f32>(scales + (<usize>b << 2), 1 / iscale);
    const s = f32x4.splat(iscale);
    for (let g = 0; g < 16; g++) {
      const v = p + (<usize>g << 6);
      const q0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(v), s))), cap);
      const q1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(v, 16), s))), cap);
      const q2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(v, 32), s))), cap);
      const q3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(v, 48), s))), cap);
      const w0 = i16x8.narrow_i32x4_s(q0, q1);
      const w1 = i16x8.narrow_i32x4_s(q2, q3);
      v128.store(q8 + (<usize>g << 4), i8x16.narrow_i16x8_s(w0, w1));
      v128.store(q16 + (<usize>g << 5), w0);
      v128.store(q16 + (<usize>g << 5), w1, 16);
      const t = i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3));
      const t2 = i32x4.add(t, i64x2.shuffle(t, t, 1, 0));
      store<i32>(bs + (<usize>g << 2), i32x4.extract_lane(t2, 0) + i32x4.extract_lane(t2, 1));
    }
    for (let g = 0; g < 16; g++) store<i16>(sums16 + (<usize>b << 5) + (<usize>g << 1), <i16>load<i32>(bs + (<usize>g << 2)));
    for (let j = 0; j < 8; j++) store<i16>(sums32 + (<usize>b << 4) + (<usize>j << 1), <i16>(load<i32>(bs + (<usize>j << 3)) + load<i32>(bs + (<usize>j << 3), 4)));
  }
}
