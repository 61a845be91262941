import { GgmlType, ggmlTypeName } from "../gguf/types.js";
import { fp16ToFp32, fp16ToFp32Bits, fp32BitsToBf16, fp32BitsToFp16, fp32ToFp16 } from "./half.js";

/**
 * Quantization and dequantization for the tensor types smallthinker computes with.
 *
 * Weights: bit-identical to ggml's reference quantizers (`quantize_row_*_ref`, which
 * llama-quantize uses). Activations: `quantizeQ8_0Activations` is bit-identical to what ggml's
 * x86 CPU backend does to the right-hand side of a Q4_0/Q8_0 matrix product at run time.
 *
 * NaN and infinity are not errors: the results are bit-identical to those of the compiled x86-64
 * ggml code (test/quant.test.ts checks them against libggml), whose float → int conversions turn
 * NaN and out-of-range values into INT_MIN. So a NaN or infinite input spoils at most its block.
 */
export const QK = 32;
export const Q4_0_BLOCK_BYTES = 18;
export const Q8_0_BLOCK_BYTES = 34;

export const COMPUTE_TYPES: readonly GgmlType[] = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0];

export function isComputeType(type: GgmlType): boolean {
  return COMPUTE_TYPES.includes(type);
}

const fround = Math.fround;

function blockCount(values: number, type: string): number {
  if (values % QK !== 0) throw new RangeError(`${type}: ${values} values are not a whole number of ${QK}-value blocks`);
  return values / QK;
}

function checkRoom(bytes: Uint8Array, offset: number, needed: number, what: string): void {
  if (!(offset >= 0 && offset + needed <= bytes.length)) {
    throw new RangeError(`${what}: bytes [${offset}, ${offset + needed}) lie outside a buffer of ${bytes.length} bytes`);
  }
}

/** C's truncating float → int8_t conversion as x86-64 compilers emit it (see the callers). */
function toInt8(v: number): number {
  return (v << 24) >> 24;
}

/** C's roundf: halves away from zero. */
function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** 1.5 * 2^52: adding and subtracting it rounds any |v| < 2^51 to an integer, ties to even. */
const ROUND_TO_EVEN_BIAS = 6755399441055744;

/**
 * _mm256_round_ps (nearest even), _mm256_cvtps_epi32 and the saturating packs to int8: NaN and
 * anything outside int32 become INT_MIN, which saturates to -128.
 */
function avxRoundToInt8(v: number): number {
  if (!(v > -2147483648 && v < 2147483648)) return -128;
  const r = v + ROUND_TO_EVEN_BIAS - ROUND_TO_EVEN_BIAS;
  return r > 127 ? 127 : r < -128 ? -128 : r;
}

export function quantizeQ4_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, "Q4_0");
  checkRoom(dst, dstOffset, blocks * Q4_0_BLOCK_BYTES, "Q4_0");
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    // The signed value of the first element of largest magnitude; a NaN never compares larger.
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = src[base + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -8);
    const id = d !== 0 ? fround(1 / d) : 0;
    const out = dstOffset + b * Q4_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const x0 = fround(src[base + j]! * id);
      const x1 = fround(src[base + QK / 2 + j]! * id);
      // (int8_t)(x + 8.5f), compiled as cvttss2si plus the low byte: NaN and ±Inf (from a
      // denormal scale, whose inverse overflows) give INT_MIN, so 0, exactly as ToInt32 does.
      const q0 = Math.min(15, toInt8(fround(x0 + 8.5)));
      const q1 = Math.min(15, toInt8(fround(x1 + 8.5)));
      dst[out + 2 + j] = q0 | (q1 << 4);
    }
  }
}

export function quantizeQ8_0(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, "Q8_0");
  checkRoom(dst, dstOffset, blocks * Q8_0_BLOCK_BYTES, "Q8_0");
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) {
      // ggml's MAX(a, b) is `a > b ? a : b`: a NaN is kept only if it is the last element.
      const a = Math.abs(src[base + j]!);
      amax = amax > a ? amax : a;
    }
    const d = fround(amax / 127);
    const id = d !== 0 ? fround(1 / d) : 0;
    const out = dstOffset + b * Q8_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(d), true);
    // roundf, then a float → int8_t conversion compiled as cvttss2si plus the low byte: the
    // same as setInt8's modulo-256 wrap, and NaN, ±Inf and values beyond int32 (all multiples
    // of 256 as floats) give 0 both ways.
    for (let j = 0; j < QK; j++) view.setInt8(out + 2 + j, roundHalfAway(fround(src[base + j]! * id)));
  }
}

/** _mm_max_ps(a, b) and friends: `a > b ? a : b` per lane, so a NaN in either operand yields b. */
function maxps(a: number, b: number): number {
  return a > b ? a : b;
}

/** Lane `lane` of the 8-wide running maximum of |x| over a block's four 8-value vectors. */
function laneAbsMax(src: Float32Array, base: number, lane: number): number {
  let m = Math.abs(src[base + lane]!);
  for (let k = 8; k < QK; k += 8) m = maxps(m, Math.abs(src[base + lane + k]!));
  return m;
}

/**
 * Q8_0 quantization of activations exactly as ggml's x86 CPU backend does it at run time
 * (`quantize_row_q8_0` in ggml-cpu/arch/x86/quants.c, compiled for AVX/AVX2/AVX-512; the repacked
 * Q4_0 path's ggml_quantize_mat_q8_0_4x8 uses the same arithmetic). It differs from
 * `quantizeQ8_0` (the reference): the multiplier is 127/amax instead of 1/d, quants are rounded
 * to nearest even instead of away from zero, and amax is reduced in SIMD lane order, which
 * matters only for NaN. Quants that are NaN or overflow (all of a block whose amax is so small
 * that 127/amax is infinite) become -128.
 */
export function quantizeQ8_0Activations(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const blocks = blockCount(src.length, "Q8_0 activations");
  checkRoom(dst, dstOffset, blocks * Q8_0_BLOCK_BYTES, "Q8_0 activations");
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    // The 256-bit maximum folded into 128 bits (high half first), then movehl, then movehdup.
    const m0 = maxps(laneAbsMax(src, base, 4), laneAbsMax(src, base, 0));
    const m1 = maxps(laneAbsMax(src, base, 5), laneAbsMax(src, base, 1));
    const m2 = maxps(laneAbsMax(src, base, 6), laneAbsMax(src, base, 2));
    const m3 = maxps(laneAbsMax(src, base, 7), laneAbsMax(src, base, 3));
    const amax = maxps(maxps(m0, m2), maxps(m1, m3));
    const out = dstOffset + b * Q8_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(fround(amax / 127)), true);
    const id = amax !== 0 ? fround(127 / amax) : 0;
    for (let j = 0; j < QK; j++) view.setInt8(out + 2 + j, avxRoundToInt8(fround(src[base + j]! * id)));
  }
}

/** Float32 bits of `src`, read without passing through JS numbers (which would quiet NaNs). */
function bitsOf(src: Float32Array): Uint32Array {
  return new Uint32Array(src.buffer, src.byteOffset, src.length);
}

export function quantizeF16(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 2 * src.length, "F16");
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const bits = bitsOf(src);
  for (let i = 0; i < bits.length; i++) view.setUint16(dstOffset + 2 * i, fp32BitsToFp16(bits[i]!), true);
}

export function quantizeBf16(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 2 * src.length, "BF16");
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const bits = bitsOf(src);
  for (let i = 0; i < bits.length; i++) view.setUint16(dstOffset + 2 * i, fp32BitsToBf16(bits[i]!), true);
}

export function quantizeF32(src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  checkRoom(dst, dstOffset, 4 * src.length, "F32");
  dst.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), dstOffset);
}

/** Encodes `src` (a whole number of blocks) as `type` into dst at dstOffset. */
export function quantize(type: GgmlType, src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  switch (type) {
    case GgmlType.F32: return quantizeF32(src, dst, dstOffset);
    case GgmlType.F16: return quantizeF16(src, dst, dstOffset);
    case GgmlType.BF16: return quantizeBf16(src, dst, dstOffset);
    case GgmlType.Q8_0: return quantizeQ8_0(src, dst, dstOffset);
    case GgmlType.Q4_0: return quantizeQ4_0(src, dst, dstOffset);
    default: throw new Error(`cannot quantize to ${ggmlTypeName(type)}`);
  }
}

/** Decodes `out.length` values of `type` starting at byte `offset` of `bytes`. */
export function dequantize(type: GgmlType, bytes: Uint8Array, offset: number, out: Float32Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = out.length;
  switch (type) {
    case GgmlType.F32:
      checkRoom(bytes, offset, 4 * n, "F32");
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes.subarray(offset, offset + 4 * n));
      return;
    case GgmlType.F16:
    case GgmlType.BF16: {
      checkRoom(bytes, offset, 2 * n, ggmlTypeName(type));
      const outBits = bitsOf(out);
      const widen = type === GgmlType.F16 ? fp16ToFp32Bits : (bf16: number) => bf16 << 16;
      for (let i = 0; i < n; i++) outBits[i] = widen(view.getUint16(offset + 2 * i, true));
      return;
    }
    case GgmlType.Q8_0: {
      const blocks = blockCount(n, "Q8_0");
      checkRoom(bytes, offset, blocks * Q8_0_BLOCK_BYTES, "Q8_0");
      for (let b = 0; b < blocks; b++) {
        const at = offset + b * Q8_0_BLOCK_BYTES;
        const d = fp16ToFp32(view.getUint16(at, true));
        for (let j = 0; j < QK; j++) out[b * QK + j] = fround(view.getInt8(at + 2 + j) * d);
      }
      return;
    }
    case GgmlType.Q4_0: {
      const blocks = blockCount(n, "Q4_0");
      checkRoom(bytes, offset, blocks * Q4_0_BLOCK_BYTES, "Q4_0");
      for (let b = 0; b < blocks; b++) {
        const at = offset + b * Q4_0_BLOCK_BYTES;
        const d = fp16ToFp32(view.getUint16(at, true));
        for (let j = 0; j < QK / 2; j++) {
          const byte = bytes[at + 2 + j]!;
          out[b * QK + j] = fround(((byte & 0x0f) - 8) * d);
          out[b * QK + j + QK / 2] = fround(((byte >> 4) - 8) * d);
        }
      }
      return;
    }
    default:
      throw new Error(`cannot dequantize ${ggmlTypeName(type)}`);
  }
}
