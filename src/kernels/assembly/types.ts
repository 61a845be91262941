// ggml tensor type numbers, and compile-time stand-ins for them: a function generic over a
// stand-in is compiled once per type with the type a constant, so no type test is left inside its
// loops (V8 then recomputes loop-invariant addresses inside the branches).

export const F32: i32 = 0;
export const F16: i32 = 1;
export const Q4_0: i32 = 2;
export const Q8_0: i32 = 8;
export const Q4_1: i32 = 3;
export const Q5_0: i32 = 6;
export const Q5_1: i32 = 7;
export const Q2_K: i32 = 10;
export const Q3_K: i32 = 11;
export const Q4_K: i32 = 12;
export const Q5_K: i32 = 13;
export const Q6_K: i32 = 14;
export const IQ2_XXS: i32 = 16;
export const IQ2_XS: i32 = 17;
export const IQ3_XXS: i32 = 18;
export const IQ1_S: i32 = 19;
export const IQ4_NL: i32 = 20;
export const IQ3_S: i32 = 21;
export const IQ2_S: i32 = 22;
export const IQ4_XS: i32 = 23;
export const IQ1_M: i32 = 29;
export const BF16: i32 = 30;
export const TQ1_0: i32 = 34;
export const TQ2_0: i32 = 35;
export const MXFP4: i32 = 39;
export const Q1_0: i32 = 41;
export const Q2_0: i32 = 42;

export type Q4 = u8;
export type Q8 = i8;
export type F32x = f32;
export type F16x = u16;
export type BF16x = i16;

/** The type number a stand-in denotes, a compile-time constant. */
@inline export function typeNumber<T>(): i32 {
  if (isFloat<T>()) return F32;
  if (sizeof<T>() == 1) return isSigned<T>() ? Q8_0 : Q4_0;
  return isSigned<T>() ? BF16 : F16;
}
