import { fp32BitsToBf16, fp32BitsToFp16, fp32ToFp16 } from "../half.js";
import { ActivationFormat, ActivationFormatSpec, QK, QK_K, bitsOf, blockCount, checkRoom, f32Bits, fround, setF32, setU16 } from "./common.js";

/**
 * Activation quantization bit-identical to what ggml's x86 CPU backend (the AVX2/AVX-512 builds)
 * does to the right-hand side of a matrix product at run time: the `from_float` of each weight
 * type's vec_dot_type. NaN and infinity are not errors: the results are those of the compiled
 * code, whose float → int conversions turn NaN and out-of-range values into INT_MIN, so a NaN or
 * infinite input spoils at most its block (test/formats.test.ts checks such blocks against libggml).
 */

/** 1.5 * 2^52: adding and subtracting it rounds any |v| < 2^51 to an integer, ties to even. */
const ROUND_TO_EVEN_BIAS = 6755399441055744;

/** _mm256_round_ps (nearest even) then _mm256_cvtps_epi32: NaN and anything outside int32 give INT_MIN. */
function avxRoundToInt32(v: number): number {
  if (!(v > -2147483648 && v < 2147483648)) return -2147483648;
  return v + ROUND_TO_EVEN_BIAS - ROUND_TO_EVEN_BIAS;
}

/** The above, then the saturating packs to int8. */
function avxRoundToInt8(v: number): number {
  const r = avxRoundToInt32(v);
  return r > 127 ? 127 : r < -128 ? -128 : r;
}

/** _mm_max_ps(a, b) and friends: `a > b ? a : b` per lane, so a NaN in either operand yields b. */
function maxps(a: number, b: number): number {
  return a > b ? a : b;
}

/** Lane `lane` of the 8-wide running maximum of |x| over a 32-value block's four 8-value vectors. */
function laneAbsMax(src: Float32Array, base: number, lane: number): number {
  let m = Math.abs(src[base + lane]!);
  for (let k = 8; k < QK; k += 8) m = maxps(m, Math.abs(src[base + lane + k]!));
  return m;
}

/** A 32-value block's max |x| as the AVX code reduces it (which matters only for NaN). */
function avxBlockAbsMax(src: Float32Array, base: number): number {
  // The 256-bit maximum folded into 128 bits (high half first), then movehl, then movehdup.
  const m0 = maxps(laneAbsMax(src, base, 4), laneAbsMax(src, base, 0));
  const m1 = maxps(laneAbsMax(src, base, 5), laneAbsMax(src, base, 1));
  const m2 = maxps(laneAbsMax(src, base, 6), laneAbsMax(src, base, 2));
  const m3 = maxps(laneAbsMax(src, base, 7), laneAbsMax(src, base, 3));
  return maxps(maxps(m0, m2), maxps(m1, m3));
}

const Q8_0_BLOCK_BYTES = 34;
const Q8_1_BLOCK_BYTES = 36;
const Q8_K_BLOCK_BYTES = 292;

/**
 * Q8_0 quantization of activations exactly as `quantize_row_q8_0` in ggml-cpu/arch/x86/quants.c
 * (the repacked Q4_0 path's ggml_quantize_mat_q8_0_4x8 uses the same arithmetic). It differs from
 * the reference quantizer: the multiplier is 127/amax instead of 1/d, quants are rounded to
 * nearest even instead of away from zero, and amax is reduced in SIMD lane order. Quants that are
 * NaN or overflow (all of a block whose amax is so small that 127/amax is infinite) become -128.
 */
export function quantizeQ8_0Activations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, QK, "Q8_0 activations");
  checkRoom(dst, dstOffset, blocks * Q8_0_BLOCK_BYTES, "Q8_0 activations");
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    const amax = avxBlockAbsMax(src, base);
    const out = dstOffset + b * Q8_0_BLOCK_BYTES;
    setU16(dst, out, fp32ToFp16(fround(amax / 127)));
    const id = amax !== 0 ? fround(127 / amax) : 0;
    for (let j = 0; j < QK; j++) dst[out + 2 + j] = avxRoundToInt8(fround(src[base + j]! * id)) & 0xff;
  }
}

/**
 * Q8_1 as the AVX2 `quantize_row_q8_1`: the Q8_0 activation quants and scale d = amax/127, plus
 * s = fp16(d · Σq) with d unrounded and Σq summed over the int32 conversions before the
 * saturating packs (wrapping, so a NaN's INT_MIN counts as such).
 */
export function quantizeQ8_1Activations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, QK, "Q8_1 activations");
  checkRoom(dst, dstOffset, blocks * Q8_1_BLOCK_BYTES, "Q8_1 activations");
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    const amax = avxBlockAbsMax(src, base);
    const out = dstOffset + b * Q8_1_BLOCK_BYTES;
    const d = fround(amax / 127);
    const id = amax !== 0 ? fround(127 / amax) : 0;
    let sum = 0;
    for (let j = 0; j < QK; j++) {
      const q = avxRoundToInt32(fround(src[base + j]! * id));
      sum = (sum + q) | 0;
      dst[out + 4 + j] = (q > 127 ? 127 : q < -128 ? -128 : q) & 0xff;
    }
    setU16(dst, out, fp32ToFp16(d));
    setU16(dst, out + 2, fp32ToFp16(fround(d * fround(sum))));
  }
}

/**
 * ggml's nearest_int: adds 1.5·2^23 in f32 and reads the low mantissa bits, which rounds ties to
 * even for |v| < 2^22 and gives those bits' garbage beyond (reproduced: infinities give -2^22).
 * `v` is the f32 product; `nanBits` the bit pattern it has when it is a NaN.
 */
function nearestInt(v: number, nanBits: number): number {
  const bits = Number.isNaN(v) ? nanBits : f32Bits(fround(v + 12582912));
  return (bits & 0x007fffff) - 0x00400000;
}

/** x86's default NaN, the result of 0 · ∞. */
const DEFAULT_NAN_BITS = 0xffc00000;

/**
 * Q8_K as `quantize_row_q8_K_ref` (what the x86 CPU backend's from_float runs): f32 d, int8
 * qs[256], int16 bsums[16] (sums of 16 quants). The scale comes from the first element of largest
 * magnitude, signed: iscale = -127/max (so a positive max quantizes to -127), quants nearest_int
 * of iscale·x, d = 1/iscale. A block of zeros (NaN are skipped by the search) gets d = 0, qs = 0;
 * ggml leaves its bsums unwritten, here they are 0 (they only ever meet d = 0).
 */
export function quantizeQ8_KActivations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, QK_K, "Q8_K activations");
  checkRoom(dst, dstOffset, blocks * Q8_K_BLOCK_BYTES, "Q8_K activations");
  const bits = bitsOf(src);
  for (let b = 0; b < blocks; b++) {
    const base = b * QK_K;
    const out = dstOffset + b * Q8_K_BLOCK_BYTES;
    let max = 0;
    let amax = 0;
    for (let j = 0; j < QK_K; j++) {
      const ax = Math.abs(src[base + j]!);
      if (ax > amax) {
        amax = ax;
        max = src[base + j]!;
      }
    }
    dst.fill(0, out, out + Q8_K_BLOCK_BYTES);
    if (amax === 0) continue;
    const iscale = fround(-127 / max);
    for (let j = 0; j < QK_K; j++) {
      const x = src[base + j]!;
      // A NaN input keeps its payload (made quiet) through the product; 0 · ∞ makes the default NaN.
      const v = nearestInt(fround(iscale * x), Number.isNaN(x) ? bits[base + j]! | 0x00400000 : DEFAULT_NAN_BITS);
      dst[out + 4 + j] = Math.min(127, v) & 0xff;
    }
    for (let g = 0; g < QK_K / 16; g++) {
      let sum = 0;
      for (let j = 0; j < 16; j++) sum += (dst[out + 4 + 16 * g + j]! << 24) >> 24;
      setU16(dst, out + 4 + QK_K + 2 * g, sum & 0xffff);
    }
    setF32(dst, out, fround(1 / iscale));
  }
}

/**
 * F16 as `ggml_cpu_fp32_to_fp16` on F16C builds: vcvtps2ph for all but the last n mod 4 values,
 * which keeps a NaN's sign and top payload bits (made quiet); the scalar tail uses ggml's portable
 * conversion, which makes every NaN 0x7E00 with its sign. Both round everything else alike.
 */
export function quantizeF16Activations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 2 * src.length, "F16 activations");
  const bits = bitsOf(src);
  const vector = src.length - (src.length % 4);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const nan = (x & 0x7fffffff) > 0x7f800000;
    const h = nan && i < vector ? ((x >>> 16) & 0x8000) | 0x7e00 | ((x >>> 13) & 0x3ff) : fp32BitsToFp16(x);
    setU16(dst, dstOffset + 2 * i, h);
  }
}

/** BF16 as `ggml_cpu_fp32_to_bf16`: ggml's portable conversion (NaNs quiet, else nearest even). */
export function quantizeBf16Activations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 2 * src.length, "BF16 activations");
  const bits = bitsOf(src);
  for (let i = 0; i < bits.length; i++) setU16(dst, dstOffset + 2 * i, fp32BitsToBf16(bits[i]!));
}

/** F32 activations are the values themselves, bit for bit. */
export function quantizeF32Activations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 4 * src.length, "F32 activations");
  dst.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), dstOffset);
}

export const ACTIVATION_FORMATS: Readonly<Record<ActivationFormat, ActivationFormatSpec>> = {
  f32: { format: "f32", blockValues: 1, blockBytes: 4, quantize: quantizeF32Activations },
  f16: { format: "f16", blockValues: 1, blockBytes: 2, quantize: quantizeF16Activations },
  bf16: { format: "bf16", blockValues: 1, blockBytes: 2, quantize: quantizeBf16Activations },
  q8_0: { format: "q8_0", blockValues: QK, blockBytes: Q8_0_BLOCK_BYTES, quantize: quantizeQ8_0Activations },
  q8_1: { format: "q8_1", blockValues: QK, blockBytes: Q8_1_BLOCK_BYTES, quantize: quantizeQ8_1Activations },
  q8_k: { format: "q8_k", blockValues: QK_K, blockBytes: Q8_K_BLOCK_BYTES, quantize: quantizeQ8_KActivations },
};

/** Bytes of one prepared activation row of `cols` values (a whole number of blocks). */
export function activationRowBytes(format: ActivationFormat, cols: number): number {
  const spec = ACTIVATION_FORMATS[format];
  return blockCount(cols, spec.blockValues, `${format} activations`) * spec.blockBytes;
}
