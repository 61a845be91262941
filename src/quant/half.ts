/**
 * IEEE half and bfloat16 conversions, bit-identical to ggml's portable ones (GGML_FP32_TO_FP16,
 * GGML_FP16_TO_FP32, GGML_FP32_TO_BF16), which write model files and, on x86, also make the
 * Q8_0 activation scales (the CPU backend's GGML_CPU_FP32_TO_FP16 falls back to them). All round
 * to nearest even. NaNs: float32 → half gives 0x7E00 with the sign; half → float32 keeps sign and
 * payload and makes the NaN quiet. (The CPU backend's bulk F16C conversion, vcvtps2ph, would keep
 * NaN payload bits instead; it agrees on every other value.)
 *
 * The `*Bits` variants take the raw float32 bit pattern, so signalling NaNs reach them unchanged
 * (a float32 read into a JS number is converted to double, which makes any NaN quiet).
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bit pattern of the float32 nearest to `value`. */
function fp32Bits(value: number): number {
  f32[0] = value;
  return u32[0]!;
}

function isNanBits(bits: number): boolean {
  return (bits & 0x7fffffff) > 0x7f800000;
}

/** Finite values and infinities, rounded to nearest even; the caller handles NaN. */
function nonNanFp32BitsToFp16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00;
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Below 2^-25 everything rounds to zero (the tie at exactly 2^-25 goes to even, zero too).
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

export function fp32BitsToFp16(bits: number): number {
  if (isNanBits(bits)) return ((bits >>> 16) & 0x8000) | 0x7e00;
  return nonNanFp32BitsToFp16(bits);
}

export function fp32ToFp16(value: number): number {
  return fp32BitsToFp16(fp32Bits(value));
}

/**
 * Float32 values of all 65536 halves, built from bit patterns so that NaNs keep their sign and
 * payload (made quiet, as ggml's multiply by 2^-112 does).
 */
const FP16_TABLE_BITS = new Uint32Array(65536);
for (let h = 0; h < 65536; h++) {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) {
    FP16_TABLE_BITS[h] = sign | (mantissa ? 0x7fc00000 : 0x7f800000) | (mantissa << 13);
  } else if (exponent !== 0) {
    FP16_TABLE_BITS[h] = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  } else {
    f32[0] = mantissa * 2 ** -24;
    FP16_TABLE_BITS[h] = sign | u32[0]!;
  }
}
const FP16_TABLE = new Float32Array(FP16_TABLE_BITS.buffer);

export function fp16ToFp32(bits: number): number {
  return FP16_TABLE[bits & 0xffff]!;
}

/** The float32 bit pattern of a half, exact for NaN payloads too. */
export function fp16ToFp32Bits(bits: number): number {
  return FP16_TABLE_BITS[bits & 0xffff]!;
}

/** As ggml_compute_fp32_to_bf16: NaNs are made quiet, everything else rounds to nearest even. */
export function fp32BitsToBf16(bits: number): number {
  if (isNanBits(bits)) return ((bits >>> 16) | 64) & 0xffff;
  return ((bits + (0x7fff + ((bits >>> 16) & 1))) >>> 16) & 0xffff;
}

export function fp32ToBf16(value: number): number {
  return fp32BitsToBf16(fp32Bits(value));
}

export function bf16ToFp32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/** Rounds a number to the nearest float32, then to the nearest half, and back. */
export function roundToFp16(value: number): number {
  return fp16ToFp32(fp32ToFp16(value));
}
