// ggml tensor type numbers, and compile-time stand-ins for them: a function generic over a
// stand-in is compiled once per type with the type a constant, so no type test is left inside its
// loops (V8 then recomputes loop-invariant addresses inside the branches).

export const F32: i32 = 0;
export const F16: i32 = 1;
export const Q4_0: i32 = 2;
export const Q8_0: i32 = 8;
export const BF16: i32 = 30;

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
