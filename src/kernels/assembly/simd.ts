import { initSignMasks } from "./iquants";

// Shared SIMD helpers. Vector constants live in memory (written by `initConstants`) and are loaded
// into locals at the top of each kernel: V8 rematerializes `v128.const` at every use inside loops,
// which costs three instructions each time, while a value loaded once stays in a register.

/** Where the constants live: inside the bytes every arena reserves for the kernel module. */
export const CONSTANTS: usize = 64;

export const NIBBLE_MASK: usize = 0; // i8x16 0x0f
export const F16_SIGN_EM: usize = 16; // i32x4 0x8fffe000: sign and exponent/mantissa of a half shifted left 13
export const F16_EXP_INF: usize = 32; // i32x4 0x0f800000: a half's all-ones exponent after the shift
export const F32_INF: usize = 48; // i32x4 0x7f800000
export const POW2_112: usize = 64; // f32x4 2^112
export const PAIR_SHUFFLE: usize = 80; // i8x16 0,8,1,9,…,7,15: interleaves the halves of a vector byte by byte
export const IQ4NL_VALUES: usize = 96; // i8x16 kvalues_iq4nl: IQ4_NL/IQ4_XS nibble → value
export const FP4_VALUES: usize = 112; // i8x16 kvalues_mxfp4: E2M1 nibble → twice its value

export function initConstants(): void {
  initSignMasks();
  v128.store(CONSTANTS + NIBBLE_MASK, i8x16.splat(0x0f));
  v128.store(CONSTANTS + F16_SIGN_EM, i32x4.splat(0x8fffe000));
  v128.store(CONSTANTS + F16_EXP_INF, i32x4.splat(0x0f800000));
  v128.store(CONSTANTS + F32_INF, i32x4.splat(0x7f800000));
  v128.store(CONSTANTS + POW2_112, f32x4.splat(reinterpret<f32>(0x77800000)));
  v128.store(CONSTANTS + PAIR_SHUFFLE, i8x16(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15));
  v128.store(CONSTANTS + IQ4NL_VALUES, i8x16(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
  v128.store(CONSTANTS + FP4_VALUES, i8x16(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
}

@inline export function constant(offset: usize): v128 {
  return v128.load(CONSTANTS + offset);
}

/**
 * Four halves (sign-extended to i32 lanes) to f32, exact for zeros, subnormals and normals:
 * the shifted bits read as an f32 are the value × 2^-112.
 */
@inline export function halvesToF32Finite(h: v128, signEm: v128, pow2_112: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shl(h, 13), signEm), pow2_112);
}

/** As `halvesToF32Finite`, with infinities and NaNs too. */
@inline export function halvesToF32(h: v128, signEm: v128, pow2_112: v128, expInf: v128, f32Inf: v128): v128 {
  const shifted = v128.and(i32x4.shl(h, 13), signEm);
  const special = i32x4.eq(v128.and(shifted, expInf), expInf);
  return v128.or(f32x4.mul(shifted, pow2_112), v128.and(special, f32Inf));
}

/** Horizontal f32 sum in a fixed order: (v0 + v2) + (v1 + v3). */
@inline export function sumLanes(v: v128): f32 {
  const pairs = f32x4.add(v, i64x2.shuffle(v, v, 1, 0));
  return f32x4.extract_lane(pairs, 0) + f32x4.extract_lane(pairs, 1);
}

/** a·b + c; fused where relaxed SIMD is available (both V8 tiers fuse it on FMA hardware). */
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/**
 * Lane sums of four i32x4 as one i32x4: lane k = Σ lanes of vk. The pairing is fixed so every
 * caller reduces the same way.
 */
@inline export function transposeSum(v0: v128, v1: v128, v2: v128, v3: v128): v128 {
  const a = i32x4.add(i32x4.shuffle(v0, v1, 0, 4, 1, 5), i32x4.shuffle(v0, v1, 2, 6, 3, 7));
  const b = i32x4.add(i32x4.shuffle(v2, v3, 0, 4, 1, 5), i32x4.shuffle(v2, v3, 2, 6, 3, 7));
  return i32x4.add(i64x2.shuffle(a, b, 0, 2), i64x2.shuffle(a, b, 1, 3));
}

/** f32x4 version of `transposeSum`: lane k = (vk0 + vk2) + (vk1 + vk3). */
@inline export function transposeSumF32(v0: v128, v1: v128, v2: v128, v3: v128): v128 {
  const a = f32x4.add(i32x4.shuffle(v0, v1, 0, 4, 1, 5), i32x4.shuffle(v0, v1, 2, 6, 3, 7));
  const b = f32x4.add(i32x4.shuffle(v2, v3, 0, 4, 1, 5), i32x4.shuffle(v2, v3, 2, 6, 3, 7));
  return f32x4.add(i64x2.shuffle(a, b, 0, 2), i64x2.shuffle(a, b, 1, 3));
}

/**
 * f32 → IEEE half bits with round-to-nearest-even (as x86 F16C), NaNs keeping their top payload
 * bits like `fp32ToFp16` in src/quant/half.ts. Result in the low 16 bits of each i32 lane.
 * The rounding is done by the FPU: adding a power of two aligns the mantissa at the half's ulp.
 */
@inline export function f32ToHalves(x: v128): v128 {
  const bits = x;
  const twice = i32x4.add(bits, bits);
  const sign = i32x4.shr_u(v128.and(bits, i32x4.splat(0x80000000)), 16);
  let base = f32x4.mul(f32x4.mul(f32x4.abs(x), f32x4.splat(reinterpret<f32>(0x77800000))), f32x4.splat(reinterpret<f32>(0x08800000)));
  const bias = i32x4.max_u(v128.and(twice, i32x4.splat(0xff000000)), i32x4.splat(0x71000000));
  base = f32x4.add(i32x4.add(i32x4.shr_u(bias, 1), i32x4.splat(0x07800000)), base);
  const rounded = i32x4.add(v128.and(i32x4.shr_u(base, 13), i32x4.splat(0x7c00)), v128.and(base, i32x4.splat(0x0fff)));
  const nan = v128.or(i32x4.splat(0x7e00), v128.and(i32x4.shr_u(bits, 13), i32x4.splat(0x3ff)));
  const isNan = i32x4.gt_u(twice, i32x4.splat(0xff000000));
  return v128.or(sign, v128.bitselect(nan, rounded, isNan));
}

/** Scalar f32 → half bits, the same rounding as `f32ToHalves`. */
@inline export function f32ToHalf(x: f32): i32 {
  return i32x4.extract_lane(f32ToHalves(f32x4.splat(x)), 0);
}

/** Scalar half bits → f32 (exact). */
@inline export function halfToF32(h: i32): f32 {
  const v = halvesToF32(i32x4.splat(<i32>(<i16>h)), constant(F16_SIGN_EM), constant(POW2_112), constant(F16_EXP_INF), constant(F32_INF));
  return f32x4.extract_lane(v, 0);
}

/** f32 → bfloat16 bits with round-to-nearest-even; NaNs stay quiet NaNs (ggml's rule). */
@inline export function f32ToBf16s(x: v128): v128 {
  const isNan = i32x4.gt_u(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  const rounded = i32x4.shr_u(i32x4.add(x, i32x4.add(i32x4.splat(0x7fff), v128.and(i32x4.shr_u(x, 16), i32x4.splat(1)))), 16);
  const quiet = v128.or(i32x4.shr_u(x, 16), i32x4.splat(64));
  return v128.and(v128.bitselect(quiet, rounded, isNan), i32x4.splat(0xffff));
}

/**
 * e^x for f32 lanes (Cephes' expf: range reduction by ln 2, degree-5 polynomial), about 1 ulp;
 * results below the smallest normal flush to zero.
 */
@inline export function exp4(x: v128): v128 {
  const clamped = f32x4.min(f32x4.max(x, f32x4.splat(-87.0)), f32x4.splat(88.0));
  const n = f32x4.floor(madd(clamped, f32x4.splat(1.44269504088896341), f32x4.splat(0.5)));
  let r = f32x4.sub(clamped, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = madd(f32x4.splat(1.9875691500e-4), r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  p = f32x4.add(madd(p, f32x4.mul(r, r), r), f32x4.splat(1.0));
  const scaled = f32x4.mul(p, i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23));
  return v128.andnot(scaled, f32x4.lt(x, f32x4.splat(-87.0)));
}
