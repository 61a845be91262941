// Row-wise and element-wise kernels. Each reproduces the reference's f32 operations one for one
// (no fused multiply-add), so results are bit-identical to it.

import { F16_EXP_INF, F16_SIGN_EM, F32_INF, NIBBLE_MASK, POW2_112, constant, f32ToHalves, halvesToF32 } from "./simd";
import { BF16, F16, Q4_0, Q8_0 } from "./types";
import { blockBytes, blockDequantize, blockValues, isBlockFormat } from "./blocks";

/** Rows [r0, r1): dst = x / sqrt(mean(x²) + eps) · weight, the sum of squares in f64 in order. */
export function rmsNorm(src: usize, weight: usize, cols: i32, eps: f32, dst: usize, r0: i32, r1: i32): void {
  for (let r = r0; r < r1; r++) {
    const x = src + <usize>r * <usize>cols * 4;
    const out = dst + <usize>r * <usize>cols * 4;
    let sum: f64 = 0;
    for (let i = 0; i < cols; i++) {
      const v = <f64>load<f32>(x + (<usize>i << 2));
      sum += v * v;
    }
    const mean = <f32>(sum / <f64>cols);
    const scale = <f32>1 / Mathf.sqrt(mean + eps);
    const s = f32x4.splat(scale);
    let i = 0;
    for (; i + 4 <= cols; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, f32x4.mul(f32x4.mul(v128.load(x + o), s), v128.load(weight + o)));
    }
    for (; i < cols; i++) {
      const o = <usize>i << 2;
      store<f32>(out + o, load<f32>(x + o) * scale * load<f32>(weight + o));
    }
  }
}

/** NEOX rotation in place for tokens [t0, t1) of x [n][heads][headDim]; cos/sin are [n][headDim/2]. */
export function rope(x: usize, heads: i32, headDim: i32, cos: usize, sin: usize, t0: i32, t1: i32): void {
  const half = headDim >> 1;
  for (let t = t0; t < t1; t++) {
    const c = cos + <usize>(t * half) * 4;
    const s = sin + <usize>(t * half) * 4;
    for (let h = 0; h < heads; h++) {
      const v = x + <usize>((t * heads + h) * headDim) * 4;
      const w = v + (<usize>half << 2);
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const o = <usize>i << 2;
        const x0 = v128.load(v + o);
        const x1 = v128.load(w + o);
        const ci = v128.load(c + o);
        const si = v128.load(s + o);
        v128.store(v + o, f32x4.sub(f32x4.mul(x0, ci), f32x4.mul(x1, si)));
        v128.store(w + o, f32x4.add(f32x4.mul(x0, si), f32x4.mul(x1, ci)));
      }
      for (; i < half; i++) {
        const o = <usize>i << 2;
        const x0 = load<f32>(v + o);
        const x1 = load<f32>(w + o);
        store<f32>(v + o, x0 * load<f32>(c + o) - x1 * load<f32>(s + o));
        store<f32>(w + o, x0 * load<f32>(s + o) + x1 * load<f32>(c + o));
      }
    }
  }
}

/** dst[i] = a[i] + b[i] for i in [i0, i1). */
export function add(a: usize, b: usize, dst: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(dst + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(dst + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** Tokens [t0, t1): out = residual + ((w0·y0 + w1·y1) + …), y [n][k][hidden], w [n][k]. */
export function moeCombine(y: usize, weights: usize, k: i32, hidden: i32, residual: usize, out: usize, t0: i32, t1: i32): void {
  const rowBytes = <usize>hidden << 2;
  for (let t = t0; t < t1; t++) {
    const ys = y + <usize>(t * k) * rowBytes;
    const ws = weights + (<usize>(t * k) << 2);
    const res = residual + <usize>t * rowBytes;
    const o = out + <usize>t * rowBytes;
    let i = 0;
    for (; i + 4 <= hidden; i += 4) {
      const off = <usize>i << 2;
      let sum = f32x4.mul(v128.load(ys + off), v128.load32_splat(ws));
      for (let s = 1; s < k; s++) sum = f32x4.add(sum, f32x4.mul(v128.load(ys + <usize>s * rowBytes + off), v128.load32_splat(ws + (<usize>s << 2))));
      v128.store(o + off, f32x4.add(sum, v128.load(res + off)));
    }
    for (; i < hidden; i++) {
      const off = <usize>i << 2;
      let sum = load<f32>(ys + off) * load<f32>(ws);
      for (let s = 1; s < k; s++) sum = sum + load<f32>(ys + <usize>s * rowBytes + off) * load<f32>(ws + (<usize>s << 2));
      store<f32>(o + off, sum + load<f32>(res + off));
    }
  }
}

/**
 * Writes the tokens of k and v (f32 [n][width]) whose slot positions[t] % capacity lies in [s0, s1),
 * in token order, so a slot written twice keeps the later token whichever thread owns it.
 */
export function storeKv(kCache: usize, vCache: usize, half: bool, capacity: i32, width: i32, k: usize, v: usize, positions: usize,
  n: i32, s0: i32, s1: i32): void {
  const rowBytes = <usize>width << 2;
  const slotBytes = <usize>width << (half ? 1 : 2);
  for (let t = 0; t < n; t++) {
    const slot = load<i32>(positions + (<usize>t << 2)) % capacity;
    if (slot < s0 || slot >= s1) continue;
    storeRow(kCache + <usize>slot * slotBytes, k + <usize>t * rowBytes, half, width);
    storeRow(vCache + <usize>slot * slotBytes, v + <usize>t * rowBytes, half, width);
  }
}

@inline function storeRow(dst: usize, src: usize, half: bool, width: i32): void {
  if (!half) {
    memory.copy(dst, src, <usize>width << 2);
    return;
  }
  let i = 0;
  for (; i + 8 <= width; i += 8) {
    const a = f32ToHalves(v128.load(src + (<usize>i << 2)));
    const b = f32ToHalves(v128.load(src + (<usize>i << 2), 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < width; i++) {
    store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(f32ToHalves(f32x4.splat(load<f32>(src + (<usize>i << 2)))), 0));
  }
}

/** Rows [r0, r1) of raw GGUF rows of `type` at src, dequantized to f32 at dst (scratch: CANON_BYTES). */
export function dequantizeRows(type: i32, src: usize, cols: i32, dst: usize, r0: i32, r1: i32, scratch: usize): void {
  if (isBlockFormat(type)) {
    const rowBytes = <usize>(cols / blockValues(type)) * blockBytes(type);
    for (let r = r0; r < r1; r++) blockDequantize(type, src + <usize>r * rowBytes, 0, cols, dst + <usize>r * <usize>cols * 4, scratch);
    return;
  }
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const expInf = constant(F16_EXP_INF);
  const f32Inf = constant(F32_INF);
  const mask = constant(NIBBLE_MASK);
  const nb = cols >> 5;
  for (let r = r0; r < r1; r++) {
    const out = dst + <usize>r * <usize>cols * 4;
    if (type == Q4_0 || type == Q8_0) {
      const blockBytes: usize = type == Q4_0 ? 18 : 34;
      const row = src + <usize>r * <usize>nb * blockBytes;
      for (let b = 0; b < nb; b++) {
        const block = row + <usize>b * blockBytes;
        const d = f32x4.splat(f32x4.extract_lane(halvesToF32(i32x4.splat(<i32>load<i16>(block)), signEm, pow2_112, expInf, f32Inf), 0));
        let q0: v128, q1: v128, q2: v128, q3: v128;
        if (type == Q4_0) {
          const bytes = v128.load(block, 2);
          const lo = v128.and(bytes, mask);
          const hi = v128.and(i16x8.shr_u(bytes, 4), mask);
          const eight = i16x8.splat(8);
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
        const o = out + (<usize>b << 7);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q0)), d));
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q0)), d), 16);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q1)), d), 32);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q1)), d), 48);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q2)), d), 64);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q2)), d), 80);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(q3)), d), 96);
        v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(q3)), d), 112);
      }
      continue;
    }
    if (type == F16 || type == BF16) {
      const row = src + <usize>r * <usize>cols * 2;
      let i = 0;
      for (; i + 4 <= cols; i += 4) {
        const p = row + (<usize>i << 1);
        const v = type == F16 ? halvesToF32(v128.load16x4_s(p), signEm, pow2_112, expInf, f32Inf) : i32x4.shl(v128.load16x4_u(p), 16);
        v128.store(out + (<usize>i << 2), v);
      }
      for (; i < cols; i++) {
        const bits = <i32>load<i16>(row + (<usize>i << 1));
        const v = type == F16 ? halvesToF32(i32x4.splat(bits), signEm, pow2_112, expInf, f32Inf) : i32x4.splat(bits << 16);
        store<f32>(out + (<usize>i << 2), f32x4.extract_lane(v, 0));
      }
      continue;
    }
    memory.copy(out, src + <usize>r * <usize>cols * 4, <usize>cols << 2);
  }
}

/**
 * The wrapping sum of the little-endian i32 words in 64-byte blocks [b0, b1) at src: the
 * benchmark's memory-bandwidth probe (a read the optimizer cannot drop, four loads in flight).
 */
export function sumBlocks(src: usize, b0: i32, b1: i32): i32 {
  let a0 = i32x4.splat(0);
  let a1 = i32x4.splat(0);
  let a2 = i32x4.splat(0);
  let a3 = i32x4.splat(0);
  for (let b = b0; b < b1; b++) {
    const p = src + (<usize>b << 6);
    a0 = i32x4.add(a0, v128.load(p));
    a1 = i32x4.add(a1, v128.load(p, 16));
    a2 = i32x4.add(a2, v128.load(p, 32));
    a3 = i32x4.add(a3, v128.load(p, 48));
  }
  const s = i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
}
