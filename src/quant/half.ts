/**
 * IEEE half and bfloat16 conversions with round-to-nearest-even, bit-identical to ggml's
 * (x86 F16C `vcvtps2ph` with RNE, and `ggml_compute_fp32_to_bf16`).
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function fp32ToFp16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) {
    // Inf stays Inf; NaN keeps a quiet payload bit.
    return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0);
  }
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    const rounded = remainder > midpoint || (remainder === midpoint && (half & 1)) ? half + 1 : half;
    return sign | rounded;
  }
  const half = (e << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and reaches Inf at the top).
  const rounded = remainder > 0x1000 || (remainder === 0x1000 && (half & 1)) ? half + 1 : half;
  return sign | rounded;
}

const FP16_TABLE = new Float32Array(65536);
for (let h = 0; h < 65536; h++) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  let v: number;
  if (exponent === 0) v = mantissa * 2 ** -24;
  else if (exponent === 0x1f) v = mantissa ? NaN : Infinity;
  else v = (1 + mantissa / 1024) * 2 ** (exponent - 15);
  FP16_TABLE[h] = sign * v;
}

export function fp16ToFp32(bits: number): number {
  return FP16_TABLE[bits & 0xffff]!;
}

export function fp32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 64) & 0xffff;
  return ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16ToFp32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/** Rounds a number to the nearest float32, then to the nearest half, and back. */
export function roundToFp16(value: number): number {
  return fp16ToFp32(fp32ToFp16(value));
}
