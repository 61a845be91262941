// An expert's Q4_K down projection in llama.cpp's orientation (`hidden` rows of `ffn` values), packed
// neuron-major like Q4_0's (down.ts) so that only neurons with a nonzero quantized h are visited.
// Per superblock s of 256 neurons:
//   [hidden × f16 d] [hidden × f16 dmin] [8 × hidden u8 scale] [8 × hidden u8 min]
//   [8 sub-blocks × 32 columns × hidden/2 bytes]     (Q4_0's columns: 16 rows per 8 bytes)
// With h quantized to q8_k (qh, dh, B_j = Σ qh over sub-block j) each superblock adds to out[r]
//   fround(fround(d_r·dh)·f32(isum_r)) − fround(fround(dmin_r·dh)·f32(msum_r)),
//   isum_r = Σ_j sc_rj·Σ_i q_ri·qh_i,   msum_r = Σ_j m_rj·B_j,
// the reference's dense product exactly, since absent neurons have qh = 0. Σ_i q·qh over a sub-block
// is summed in i16 as Σ (q − 8)·qh (within ±32512, so wrapping additions still end exact) and
// 8·B_j added back in i32.

import { scaleMinK4 } from "./kquants";
import { q8kScales, q8kSums } from "./activations";
import { F16_SIGN_EM, NIBBLE_MASK, PAIR_SHUFFLE, POW2_112, constant, halvesToF32Finite } from "./simd";
import { hqOffset, pairCountsOffset, pairsOffset } from "./expert";
import { activationRow } from "./quantized";
import { nibbleChunk, transpose16 } from "./down";

/** Bytes of one superblock of a packed Q4_K down matrix. */
@inline export function downQ4KSuperblockBytes(hidden: i32): usize {
  return <usize>hidden * 148;
}

/**
 * Packs an upstream Q4_K down matrix (`hidden` rows × `ffn` columns, ffn a multiple of 256, hidden
 * of 16) neuron-major. `scratch`: 768 bytes.
 */
export function packDownQ4K(src: usize, dst: usize, hidden: i32, ffn: i32, scratch: usize): void {
  const nsb = ffn >> 8;
  const rowBytes = <usize>nsb * 144;
  const superBytes = downQ4KSuperblockBytes(hidden);
  const columnBytes = <usize>(hidden >> 1);
  const mask = i8x16.splat(0x0f);
  for (let s = 0; s < nsb; s++) {
    const out = dst + <usize>s * superBytes;
    const scales = out + (<usize>hidden << 2);
    const mins = scales + (<usize>hidden << 3);
    const columns = mins + (<usize>hidden << 3);
    for (let r = 0; r < hidden; r++) {
      const block = src + <usize>r * rowBytes + <usize>s * 144;
      store<u16>(out + (<usize>r << 1), load<u16>(block));
      store<u16>(out + (<usize>hidden << 1) + (<usize>r << 1), load<u16>(block, 2));
      for (let j = 0; j < 8; j++) {
        const sm = scaleMinK4(block + 4, j);
        const sc = sm & 0xff;
        const m = sm >> 8;
        store<u8>(scales + <usize>j * <usize>hidden + <usize>r, <u8>sc);
        store<u8>(mins + <usize>j * <usize>hidden + <usize>r, <u8>m);
      }
    }
    // Sixteen rows at a time: each row's 32 values of sub-block j (low or high nibbles of its 32
    // bytes j >> 1) into scratch, then transposed so each neuron's 16 values lie together, then
    // two rows to a byte (row k low, row k + 8 high), Q4_0's column chunk.
    for (let r = 0; r < hidden; r += 16) {
      for (let j = 0; j < 8; j++) {
        for (let k = 0; k < 16; k++) {
          const q = src + <usize>(r + k) * rowBytes + <usize>s * 144 + 16 + (<usize>(j >> 1) << 5);
          const w0 = v128.load(q);
          const w1 = v128.load(q, 16);
          const v0 = (j & 1) ? v128.and(i16x8.shr_u(w0, 4), mask) : v128.and(w0, mask);
          const v1 = (j & 1) ? v128.and(i16x8.shr_u(w1, 4), mask) : v128.and(w1, mask);
          v128.store(scratch + (<usize>k << 4), v0);
          v128.store(scratch + 256 + (<usize>k << 4), v1);
        }
        for (let half = 0; half < 2; half++) {
          // Byte-transpose 16 rows × 16 neurons, then pack rows k and k + 8 of each neuron.
          const transposed = scratch + 512;
          transpose16(scratch + (<usize>half << 8), 16, transposed, 16);
          for (let e = 0; e < 16; e++) {
            const column = v128.load(transposed + (<usize>e << 4));
            v128.store64_lane(columns + (<usize>((j << 5) + (half << 4) + e)) * columnBytes + (<usize>r >> 1), nibbleChunk(column), 0);
          }
        }
      }
    }
  }
}

/**
 * The down product for tokens j < n of one expert, output rows [r0, r1) (multiples of 32), from each
 * token's q8_k h and pair lists in its scratch region (expert.ts); y row of token j at
 * activationRow(y, yStride, yRows, j). `sums`: 256 bytes of this thread's scratch.
 */
export function downQ4K(down: usize, hidden: i32, ffn: i32, n: i32, scratch: usize, tokenStride: usize,
  y: usize, yRows: usize, yStride: usize, r0: i32, r1: i32, sums: usize): void {
  const nsb = ffn >> 8;
  const superBytes = downQ4KSuperblockBytes(hidden);
  const columnBytes = <usize>(hidden >> 1);
  const mask = constant(NIBBLE_MASK);
  const interleave = constant(PAIR_SHUFFLE);
  const lowNibbles = i16x8.splat(0x0f);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  for (let r = r0; r < r1; r += 32) {
    for (let j = 0; j < n; j++) {
      const token = scratch + <usize>j * tokenStride;
      const hq = token + hqOffset(ffn);
      const out = activationRow(y, yStride, yRows, j) + (<usize>r << 2);
      for (let k: usize = 0; k < 128; k += 16) v128.store(out + k, f32x4.splat(0));
      for (let s = 0; s < nsb; s++) {
        const base = down + <usize>s * superBytes;
        const scales = base + (<usize>hidden << 2);
        const mins = scales + (<usize>hidden << 3);
        const columns = mins + (<usize>hidden << 3) + (<usize>r >> 1);
        const bsums = q8kSums(hq, ffn) + (<usize>s << 6);
        // isum (rows r … r + 31) as 8 i32x4 in `sums`, msum after them.
        for (let k: usize = 0; k < 256; k += 16) v128.store(sums + k, i32x4.splat(0));
        for (let sub = 0; sub < 8; sub++) {
          const b = (s << 3) + sub;
          const B = load<i32>(bsums + (<usize>sub << 3)) + load<i32>(bsums + (<usize>sub << 3), 4);
          const count = load<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2));
          const sc = scales + <usize>sub * <usize>hidden + <usize>r;
          const mn = mins + <usize>sub * <usize>hidden + <usize>r;
          let p0 = i16x8.splat(0);
          let p1 = i16x8.splat(0);
          let p2 = i16x8.splat(0);
          let p3 = i16x8.splat(0);
          const pairs = token + pairsOffset(ffn) + (<usize>b << 6);
          const block = columns + <usize>(sub << 5) * columnBytes;
          for (let p = 0; p < count; p++) {
            const entry = load<i32>(pairs + (<usize>p << 2));
            const ci = v128.load(block + <usize>(entry & 0xff) * columnBytes);
            const cj = v128.load(block + <usize>((entry >> 8) & 0xff) * columnBytes);
            if (ASC_FEATURE_RELAXED_SIMD) {
              const c0 = i64x2.shuffle(ci, cj, 0, 2);
              const c1 = i64x2.shuffle(ci, cj, 1, 3);
              const q = i16x8.splat(<i16>(entry >>> 16));
              p0 = i16x8.add(p0, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(c0, mask), interleave)));
              p1 = i16x8.add(p1, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(i16x8.shr_u(c0, 4), mask), interleave)));
              p2 = i16x8.add(p2, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(c1, mask), interleave)));
              p3 = i16x8.add(p3, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(v128.and(i16x8.shr_u(c1, 4), mask), interleave)));
            } else {
              const qi = i16x8.splat(<i16>(<i8>(entry >>> 16)));
              const qj = i16x8.splat(<i16>(<i8>(entry >>> 24)));
              const i0 = i16x8.extend_low_i8x16_u(ci);
              const i1 = i16x8.extend_high_i8x16_u(ci);
              const j0 = i16x8.extend_low_i8x16_u(cj);
              const j1 = i16x8.extend_high_i8x16_u(cj);
              p0 = i16x8.add(p0, i16x8.add(i16x8.mul(v128.and(i0, lowNibbles), qi), i16x8.mul(v128.and(j0, lowNibbles), qj)));
              p1 = i16x8.add(p1, i16x8.add(i16x8.mul(i16x8.shr_u(i0, 4), qi), i16x8.mul(i16x8.shr_u(j0, 4), qj)));
              p2 = i16x8.add(p2, i16x8.add(i16x8.mul(v128.and(i1, lowNibbles), qi), i16x8.mul(v128.and(j1, lowNibbles), qj)));
              p3 = i16x8.add(p3, i16x8.add(i16x8.mul(i16x8.shr_u(i1, 4), qi), i16x8.mul(i16x8.shr_u(j1, 4), qj)));
            }
          }
          // Σ (q − 8)·qh, exact in i16; then + 8·B in i32, times the rows' scales.
          const bias = i16x8.splat(<i16>(B << 3));
          p0 = i16x8.sub(p0, bias);
          p1 = i16x8.sub(p1, bias);
          p2 = i16x8.sub(p2, bias);
          p3 = i16x8.sub(p3, bias);
          const back = i32x4.splat(B << 3);
          accumulate(sums, 0, p0, back, sc, mn, B);
          accumulate(sums, 32, p1, back, sc + 8, mn + 8, B);
          accumulate(sums, 64, p2, back, sc + 16, mn + 16, B);
          accumulate(sums, 96, p3, back, sc + 24, mn + 24, B);
        }
        const dh = v128.load32_splat(q8kScales(hq, ffn) + (<usize>s << 2));
        for (let k = 0; k < 8; k++) {
          const o = <usize>k << 4;
          const d = f32x4.mul(halvesToF32Finite(v128.load16x4_s(base + (<usize>r << 1) + (<usize>k << 3)), signEm, pow2_112), dh);
          const dmin = f32x4.mul(halvesToF32Finite(v128.load16x4_s(base + (<usize>hidden << 1) + (<usize>r << 1) + (<usize>k << 3)), signEm, pow2_112), dh);
          const contribution = f32x4.sub(f32x4.mul(d, f32x4.convert_i32x4_s(v128.load(sums + o))), f32x4.mul(dmin, f32x4.convert_i32x4_s(v128.load(sums + 128 + o))));
          v128.store(out + o, f32x4.add(v128.load(out + o), contribution));
        }
      }
    }
  }
}

/**
 * For 8 rows (an i16x8 of Σ (q − 8)·qh): isum += scale·(that + 8·B), msum += min·B, in `sums`
 * at byte `at` (isum) and 128 + at (msum), the rows' scales and mins at sc and mn.
 */
@inline function accumulate(sums: usize, at: usize, p: v128, back: v128, sc: usize, mn: usize, B: i32): void {
  const scales = i16x8.extend_low_i8x16_u(v128.load64_zero(sc));
  const mins = i16x8.extend_low_i8x16_u(v128.load64_zero(mn));
  const lo = i32x4.add(i32x4.extend_low_i16x8_s(p), back);
  const hi = i32x4.add(i32x4.extend_high_i16x8_s(p), back);
  const splatB = i32x4.splat(B);
  v128.store(sums + at, i32x4.add(v128.load(sums + at), i32x4.mul(lo, i32x4.extend_low_i16x8_u(scales))));
  v128.store(sums + at + 16, i32x4.add(v128.load(sums + at + 16), i32x4.mul(hi, i32x4.extend_high_i16x8_u(scales))));
  v128.store(sums + 128 + at, i32x4.add(v128.load(sums + 128 + at), i32x4.mul(splatB, i32x4.extend_low_i16x8_u(mins))));
  v128.store(sums + 128 + at + 16, i32x4.add(v128.load(sums + 128 + at + 16), i32x4.mul(splatB, i32x4.extend_high_i16x8_u(mins))));
}
