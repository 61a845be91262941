// F32, F16 and BF16 matrices (GGUF's row-major layout) times f32 activations that are already
// rounded to the weight's precision. Lanes run along columns: each row keeps two f32x4 partial sums
// over steps of 8 columns, reduced in a fixed order, then the tail columns one by one. Four rows are
// computed together to share activation loads; a row's arithmetic is the same in any quartet.

import { F16_EXP_INF, F16_SIGN_EM, F32_INF, POW2_112, constant, halfToF32, halvesToF32, madd, transposeSumF32 } from "./simd";
import { activationRow, listedRow, storeLanes, storeListed } from "./quantized";
import { BF16x, F16, F16x, F32, F32x, typeNumber } from "./types";

@inline export function elementBytes(type: i32): usize {
  return type == F32 ? 4 : 2;
}

/** Four values of row `p` starting at element i, as f32x4. */
@inline export function loadValues(type: i32, p: usize, i: i32, signEm: v128, pow2_112: v128, expInf: v128, f32Inf: v128): v128 {
  if (type == F32) return v128.load(p + (<usize>i << 2));
  if (type == F16) return halvesToF32(v128.load16x4_s(p + (<usize>i << 1)), signEm, pow2_112, expInf, f32Inf);
  return i32x4.shl(v128.load16x4_u(p + (<usize>i << 1)), 16);
}

@inline function loadValue(type: i32, p: usize, i: i32): f32 {
  if (type == F32) return load<f32>(p + (<usize>i << 2));
  const bits = <i32>load<u16>(p + (<usize>i << 1));
  return type == F16 ? halfToF32(bits) : reinterpret<f32>(bits << 16);
}

/** Dot products of four rows with x (lane k = row k). */
@inline export function dotFloatRows4(type: i32, p0: usize, p1: usize, p2: usize, p3: usize, x: usize, cols: i32): v128 {
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const expInf = constant(F16_EXP_INF);
  const f32Inf = constant(F32_INF);
  let a0 = f32x4.splat(0);
  let b0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let b1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let b2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let b3 = f32x4.splat(0);
  const cols8 = cols & ~7;
  for (let i = 0; i < cols8; i += 8) {
    const xa = v128.load(x + (<usize>i << 2));
    const xb = v128.load(x + (<usize>i << 2), 16);
    a0 = madd(loadValues(type, p0, i, signEm, pow2_112, expInf, f32Inf), xa, a0);
    b0 = madd(loadValues(type, p0, i + 4, signEm, pow2_112, expInf, f32Inf), xb, b0);
    a1 = madd(loadValues(type, p1, i, signEm, pow2_112, expInf, f32Inf), xa, a1);
    b1 = madd(loadValues(type, p1, i + 4, signEm, pow2_112, expInf, f32Inf), xb, b1);
    a2 = madd(loadValues(type, p2, i, signEm, pow2_112, expInf, f32Inf), xa, a2);
    b2 = madd(loadValues(type, p2, i + 4, signEm, pow2_112, expInf, f32Inf), xb, b2);
    a3 = madd(loadValues(type, p3, i, signEm, pow2_112, expInf, f32Inf), xa, a3);
    b3 = madd(loadValues(type, p3, i + 4, signEm, pow2_112, expInf, f32Inf), xb, b3);
  }
  let sums = transposeSumF32(f32x4.add(a0, b0), f32x4.add(a1, b1), f32x4.add(a2, b2), f32x4.add(a3, b3));
  for (let i = cols8; i < cols; i++) {
    const xi = load<f32>(x + (<usize>i << 2));
    const tail = f32x4(loadValue(type, p0, i) * xi, loadValue(type, p1, i) * xi, loadValue(type, p2, i) * xi, loadValue(type, p3, i) * xi);
    sums = f32x4.add(sums, tail);
  }
  return sums;
}

/** y[t][r] = W[r]·x[t] for rows [r0, r1) and all n activation rows. */
export function floatMatmul(type: i32, w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, r0: i32, r1: i32): void {
  if (type == F32) floatMatmulOf<F32x>(w, cols, rows, x, xStride, xIndex, n, y, yStride, r0, r1);
  else if (type == F16) floatMatmulOf<F16x>(w, cols, rows, x, xStride, xIndex, n, y, yStride, r0, r1);
  else floatMatmulOf<BF16x>(w, cols, rows, x, xStride, xIndex, n, y, yStride, r0, r1);
}

function floatMatmulOf<T>(w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, r0: i32, r1: i32): void {
  const type = typeNumber<T>();
  const rowBytes = <usize>cols * elementBytes(type);
  const chunk = max<i32>(4, (<i32>((<usize>131072) / rowBytes)) & ~3);
  for (let c = r0; c < r1; c += chunk) {
    const cEnd = min<i32>(c + chunk, r1);
    for (let t = 0; t < n; t++) {
      const xt = activationRow(x, xStride, xIndex, t);
      const yt = y + <usize>t * yStride;
      for (let r = c; r < cEnd; r += 4) {
        const last = cEnd - 1;
        const p0 = w + <usize>r * rowBytes;
        const p1 = w + <usize>min<i32>(r + 1, last) * rowBytes;
        const p2 = w + <usize>min<i32>(r + 2, last) * rowBytes;
        const p3 = w + <usize>min<i32>(r + 3, last) * rowBytes;
        storeLanes(yt + (<usize>r << 2), dotFloatRows4(type, p0, p1, p2, p3, xt, cols), cEnd - r);
      }
    }
  }
}

/** out[r] = W[r]·x for the `count` rows listed (i32) at `list`. */
export function floatGatheredRows(type: i32, w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  if (type == F32) floatGatheredRowsOf<F32x>(w, cols, list, count, x, out);
  else if (type == F16) floatGatheredRowsOf<F16x>(w, cols, list, count, x, out);
  else floatGatheredRowsOf<BF16x>(w, cols, list, count, x, out);
}

function floatGatheredRowsOf<T>(w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  const type = typeNumber<T>();
  const rowBytes = <usize>cols * elementBytes(type);
  for (let k = 0; k < count; k += 4) {
    const i0 = listedRow(list, k, 0, count);
    const i1 = listedRow(list, k, 1, count);
    const i2 = listedRow(list, k, 2, count);
    const i3 = listedRow(list, k, 3, count);
    const v = dotFloatRows4(type, w + <usize>i0 * rowBytes, w + <usize>i1 * rowBytes, w + <usize>i2 * rowBytes, w + <usize>i3 * rowBytes, x, cols);
    storeListed(out, v, i0, i1, i2, i3, k, count);
  }
}
