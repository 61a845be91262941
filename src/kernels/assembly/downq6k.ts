// An expert's Q6_K down projection in llama.cpp's orientation, packed neuron-major in the file's 210
// bytes per row and superblock (see down.ts for the idea). Per superblock s of 256 neurons:
//   [hidden × f16 d] [16 groups × hidden i8 scale]
//   [256 columns × hidden/2 bytes: low nibbles, Q4_0's columns (16 rows per 8 bytes)]
//   [256 columns × hidden/4 bytes: high 2 bits, per 32 rows 8 bytes, byte k holding rows k, k + 8,
//    k + 16, k + 24 in bits 0-1, 2-3, 4-5, 6-7]
// Each superblock adds to out[r] fround(fround(d_r·dh)·f32(isum_r)), isum_r = Σ_g sc_rg·Σ_{i∈g}
// (q_ri − 32)·qh_i over the 16-neuron groups g — the reference's dense product exactly, visiting only
// neurons with qh ≠ 0. Pairs stay within a group (scales are per group), Σ q·qh is widened to i32
// every two pairs (four neurons: 4·63·127 fits i16), and the −32 comes off through Σ qh per group.

import { q8kScales, q8kSums } from "./activations";
import { F16_SIGN_EM, NIBBLE_MASK, PAIR_SHUFFLE, POW2_112, constant, halvesToF32Finite } from "./simd";
import { hqOffset, pairCountsOffset, pairsOffset } from "./expert";
import { activationRow } from "./quantized";
import { nibbleChunk, transpose16 } from "./down";
import { unpackQ6K } from "./q6k";

@inline export function downQ6KSuperblockBytes(hidden: i32): usize {
  return <usize>hidden * 210;
}

/**
 * Packs an upstream Q6_K down matrix (`hidden` rows × `ffn` columns, ffn a multiple of 256, hidden
 * of 32) neuron-major. `scratch`: 4352 bytes.
 */
export function packDownQ6K(src: usize, dst: usize, hidden: i32, ffn: i32, scratch: usize): void {
  const nsb = ffn >> 8;
  const rowBytes = <usize>nsb * 210;
  const superBytes = downQ6KSuperblockBytes(hidden);
  const nibbleBytes = <usize>(hidden >> 1);
  const highBytes = <usize>(hidden >> 2);
  for (let s = 0; s < nsb; s++) {
    const out = dst + <usize>s * superBytes;
    const scales = out + (<usize>hidden << 1);
    const nibbles = scales + (<usize>hidden << 4);
    const highs = nibbles + (<usize>256 * nibbleBytes);
    memory.fill(highs, 0, <usize>256 * highBytes);
    for (let r = 0; r < hidden; r++) {
      const block = src + <usize>r * rowBytes + <usize>s * 210;
      store<u16>(out + (<usize>r << 1), load<u16>(block, 208));
      for (let g = 0; g < 16; g++) store<i8>(scales + (<usize>g * <usize>hidden) + <usize>r, load<i8>(block + 192 + <usize>g));
    }
    // Sixteen rows at a time: their 256 six-bit values each into scratch, then 16 × 16 tiles
    // transposed so a neuron's 16 values lie together: low nibbles as Q4_0's column chunk, high bits
    // or-ed into the column's 8 bytes of its 32-row chunk (rows 0-15 in bits 0-3, 16-31 in 4-7).
    const tile = scratch + 4096;
    for (let r = 0; r < hidden; r += 16) {
      for (let k = 0; k < 16; k++) unpackQ6K(src + <usize>(r + k) * rowBytes + <usize>s * 210, scratch + (<usize>k << 8));
      const shift: u32 = (r & 16) ? 4 : 0;
      for (let v0 = 0; v0 < 256; v0 += 16) {
        transpose16(scratch + <usize>v0, 256, tile, 16);
        for (let e = 0; e < 16; e++) {
          const column = v128.load(tile + (<usize>e << 4));
          const n = <usize>(v0 + e);
          v128.store64_lane(nibbles + n * nibbleBytes + (<usize>r >> 1), nibbleChunk(v128.and(column, i8x16.splat(0x0f))), 0);
          const h = i8x16.shr_u(column, 4);
          const bits = v128.or(i8x16.shl(h, shift), i8x16.shl(i64x2.shuffle(h, h, 1, 0), shift + 2));
          const at = highs + n * highBytes + (<usize>(r >> 5) << 3);
          v128.store64_lane(at, v128.or(v128.load64_zero(at), bits), 0);
        }
      }
    }
  }
}

/**
 * The pairs of one token's quantized h for Q6_K down products: per 32-neuron block b, the pairs of
 * its first 16 neurons then of its second, never one of each (their scales differ); counts as
 * first | second << 16. Only nonzero qh when `sparse`; an odd neuron pairs with itself at weight 0.
 */
export function buildGroupPairs(token: usize, ffn: i32, b0: i32, b1: i32, sparse: bool): void {
  const hq = token + hqOffset(ffn);
  for (let b = b0; b < b1; b++) {
    const pairs = token + pairsOffset(ffn) + (<usize>b << 6);
    let count = 0;
    let counts = 0;
    for (let half = 0; half < 2; half++) {
      const start = count;
      let pending = -1;
      for (let e = half << 4; e < (half << 4) + 16; e++) {
        const q = <i32>load<i8>(hq + (<usize>b << 5) + <usize>e);
        if (sparse && q == 0) continue;
        if (pending < 0) {
          pending = e | ((q & 0xff) << 16);
          continue;
        }
        store<i32>(pairs + (<usize>count << 2), (pending & 0xff) | (e << 8) | (pending & 0xff0000) | ((q & 0xff) << 24));
        count++;
        pending = -1;
      }
      if (pending >= 0) {
        store<i32>(pairs + (<usize>count << 2), (pending & 0xff) | ((pending & 0xff) << 8) | (pending & 0xff0000));
        count++;
      }
      counts |= (count - start) << (half << 4);
    }
    store<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2), counts);
  }
}

/**
 * The down product for tokens j < n of one expert, output rows [r0, r1) (multiples of 32), from each
 * token's q8_k h and group pair lists; `sums`: 128 bytes of this thread's scratch.
 */
export function downQ6K(down: usize, hidden: i32, ffn: i32, n: i32, scratch: usize, tokenStride: usize,
  y: usize, yRows: usize, yStride: usize, r0: i32, r1: i32, sums: usize): void {
  const nsb = ffn >> 8;
  const superBytes = downQ6KSuperblockBytes(hidden);
  const nibbleBytes = <usize>(hidden >> 1);
  const highBytes = <usize>(hidden >> 2);
  const mask = constant(NIBBLE_MASK);
  const interleave = constant(PAIR_SHUFFLE);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const three = i8x16.splat(0x03);
  const twelve = i8x16.splat(0x0c);
  const top = i8x16.splat(0x30);
  for (let r = r0; r < r1; r += 32) {
    for (let j = 0; j < n; j++) {
      const token = scratch + <usize>j * tokenStride;
      const hq = token + hqOffset(ffn);
      const out = activationRow(y, yStride, yRows, j) + (<usize>r << 2);
      for (let k: usize = 0; k < 128; k += 16) v128.store(out + k, f32x4.splat(0));
      for (let s = 0; s < nsb; s++) {
        const base = down + <usize>s * superBytes;
        const scales = base + (<usize>hidden << 1);
        const nibbles = scales + (<usize>hidden << 4) + (<usize>r >> 1);
        const highs = scales + (<usize>hidden << 4) + <usize>256 * nibbleBytes + (<usize>r >> 2);
        const bsums = q8kSums(hq, ffn) + (<usize>s << 6);
        for (let k: usize = 0; k < 128; k += 16) v128.store(sums + k, i32x4.splat(0));
        for (let g = 0; g < 16; g++) {
          const b = (s << 3) + (g >> 1);
          const counts = load<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2));
          const first = (g & 1) ? counts & 0xffff : 0;
          const count = (g & 1) ? counts >>> 16 : counts & 0xffff;
          const pairs = token + pairsOffset(ffn) + (<usize>b << 6) + (<usize>first << 2);
          // Σ q·qh for rows 0-7, 8-15, 16-23, 24-31 (8 i32x4), two pairs at a time in i16.
          let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
          let a4 = i32x4.splat(0), a5 = i32x4.splat(0), a6 = i32x4.splat(0), a7 = i32x4.splat(0);
          for (let p = 0; p < count; p += 2) {
            let p0 = i16x8.splat(0), p1 = i16x8.splat(0), p2 = i16x8.splat(0), p3 = i16x8.splat(0);
            for (let u = p; u < min<i32>(count, p + 2); u++) {
              const entry = load<i32>(pairs + (<usize>u << 2));
              const ni = <usize>(((g >> 1) << 5) + (entry & 0xff));
              const nj = <usize>(((g >> 1) << 5) + ((entry >> 8) & 0xff));
              const ci = v128.load(nibbles + ni * nibbleBytes);
              const cj = v128.load(nibbles + nj * nibbleBytes);
              const hi = v128.load64_zero(highs + ni * highBytes);
              const hh = i64x2.replace_lane(hi, 1, load<u64>(highs + nj * highBytes));
              const c0 = i64x2.shuffle(ci, cj, 0, 2);
              const c1 = i64x2.shuffle(ci, cj, 1, 3);
              const q0 = v128.or(v128.and(c0, mask), i8x16.shl(v128.and(hh, three), 4));
              const q1 = v128.or(v128.and(i16x8.shr_u(c0, 4), mask), i8x16.shl(v128.and(hh, twelve), 2));
              const q2 = v128.or(v128.and(c1, mask), v128.and(hh, top));
              const q3 = v128.or(v128.and(i16x8.shr_u(c1, 4), mask), v128.and(i8x16.shr_u(hh, 2), top));
              if (ASC_FEATURE_RELAXED_SIMD) {
                const q = i16x8.splat(<i16>(entry >>> 16));
                p0 = i16x8.add(p0, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(q0, interleave)));
                p1 = i16x8.add(p1, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(q1, interleave)));
                p2 = i16x8.add(p2, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(q2, interleave)));
                p3 = i16x8.add(p3, i16x8.relaxed_dot_i8x16_i7x16_s(q, i8x16.relaxed_swizzle(q3, interleave)));
              } else {
                const qi = i16x8.splat(<i16>(<i8>(entry >>> 16)));
                const qj = i16x8.splat(<i16>(<i8>(entry >>> 24)));
                p0 = i16x8.add(p0, i16x8.add(i16x8.mul(i16x8.extend_low_i8x16_u(q0), qi), i16x8.mul(i16x8.extend_high_i8x16_u(q0), qj)));
                p1 = i16x8.add(p1, i16x8.add(i16x8.mul(i16x8.extend_low_i8x16_u(q1), qi), i16x8.mul(i16x8.extend_high_i8x16_u(q1), qj)));
                p2 = i16x8.add(p2, i16x8.add(i16x8.mul(i16x8.extend_low_i8x16_u(q2), qi), i16x8.mul(i16x8.extend_high_i8x16_u(q2), qj)));
                p3 = i16x8.add(p3, i16x8.add(i16x8.mul(i16x8.extend_low_i8x16_u(q3), qi), i16x8.mul(i16x8.extend_high_i8x16_u(q3), qj)));
              }
            }
            a0 = i32x4.add(a0, i32x4.extend_low_i16x8_s(p0));
            a1 = i32x4.add(a1, i32x4.extend_high_i16x8_s(p0));
            a2 = i32x4.add(a2, i32x4.extend_low_i16x8_s(p1));
            a3 = i32x4.add(a3, i32x4.extend_high_i16x8_s(p1));
            a4 = i32x4.add(a4, i32x4.extend_low_i16x8_s(p2));
            a5 = i32x4.add(a5, i32x4.extend_high_i16x8_s(p2));
            a6 = i32x4.add(a6, i32x4.extend_low_i16x8_s(p3));
            a7 = i32x4.add(a7, i32x4.extend_high_i16x8_s(p3));
          }
          // isum += sc·(Σ q·qh − 32·B_g), B_g = Σ qh over the group.
          const bias = i32x4.splat(load<i32>(bsums + (<usize>g << 2)) << 5);
          const sc = scales + <usize>g * <usize>hidden + <usize>r;
          groupAdd(sums, 0, a0, bias, sc);
          groupAdd(sums, 16, a1, bias, sc + 4);
          groupAdd(sums, 32, a2, bias, sc + 8);
          groupAdd(sums, 48, a3, bias, sc + 12);
          groupAdd(sums, 64, a4, bias, sc + 16);
          groupAdd(sums, 80, a5, bias, sc + 20);
          groupAdd(sums, 96, a6, bias, sc + 24);
          groupAdd(sums, 112, a7, bias, sc + 28);
        }
        const dh = v128.load32_splat(q8kScales(hq, ffn) + (<usize>s << 2));
        for (let k = 0; k < 8; k++) {
          const o = <usize>k << 4;
          const d = f32x4.mul(halvesToF32Finite(v128.load16x4_s(base + (<usize>r << 1) + (<usize>k << 3)), signEm, pow2_112), dh);
          v128.store(out + o, f32x4.add(v128.load(out + o), f32x4.mul(d, f32x4.convert_i32x4_s(v128.load(sums + o)))));
        }
      }
    }
  }
}

/** sums[at] += scale·(partials − bias) for 4 rows, their i8 scales at sc. */
@inline function groupAdd(sums: usize, at: usize, partials: v128, bias: v128, sc: usize): void {
  const scale = i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(sc)));
  v128.store(sums + at, i32x4.add(v128.load(sums + at), i32x4.mul(i32x4.sub(partials, bias), scale)));
}
