// Q6_K matrices in four-row groups, the file's 210 bytes per row and superblock rearranged so that a
// 32-value sub-block's 6-bit values come out of two loads with byte-wise shifts and masks:
//   [4 × f16 d] [4 rows × 16 groups i8 scale]                          (72 bytes)
//   [8 sub-blocks × 4 rows × 16 bytes: low nibbles, value i in the low nibble of byte i, i + 16 high]
//   [4 sub-block pairs × 4 rows × 16 bytes: high 2 bits, byte i holding values i, i + 16 of the
//    pair's first sub-block in bits 0-1, 2-3 and of its second in bits 4-5, 6-7]
// per superblock. Values are unsigned (0…63); the −32 is taken off through the activations' sums
// per 16 values. The product is the reference's: isum = Σ_g sc_g·Σ (q − 32)·x exactly per superblock,
// then fround(fround(dx·d)·f32(isum)), rows as lanes.

import { q8I16, q8kScales, q8kSums16 } from "./activations";
import { F16_SIGN_EM, POW2_112, constant, halvesToF32Finite, transposeSum } from "./simd";
import { activationRow, listedRow, storeLanes, storeListed } from "./quantized";

const META_BYTES: usize = 72;
const SUPERBLOCK_BYTES: usize = META_BYTES + 512 + 256;

export function q6kGroupBytes(cols: i32): usize {
  return <usize>(cols >> 8) * SUPERBLOCK_BYTES;
}

/**
 * The 256 unsigned 6-bit values of the Q6_K superblock at `block`, in order, as bytes at `out`:
 * each half of 128 values takes 64 low-nibble bytes and 32 high-bit bytes of the file.
 */
export function unpackQ6K(block: usize, out: usize): void {
  const mask = i8x16.splat(0x0f);
  const three = i8x16.splat(3);
  for (let half = 0; half < 2; half++) {
    const ql = block + (<usize>half << 6);
    const qh = block + 128 + (<usize>half << 5);
    const v = out + (<usize>half << 7);
    for (let k: usize = 0; k < 32; k += 16) {
      const l0 = v128.load(ql + k);
      const l1 = v128.load(ql + k + 32);
      const h = v128.load(qh + k);
      v128.store(v + k, v128.or(v128.and(l0, mask), i8x16.shl(v128.and(h, three), 4)));
      v128.store(v + k + 32, v128.or(v128.and(l1, mask), i8x16.shl(v128.and(i8x16.shr_u(h, 2), three), 4)));
      v128.store(v + k + 64, v128.or(i8x16.shr_u(l0, 4), i8x16.shl(v128.and(i8x16.shr_u(h, 4), three), 4)));
      v128.store(v + k + 96, v128.or(i8x16.shr_u(l1, 4), i8x16.shl(i8x16.shr_u(h, 6), 4)));
    }
  }
}

/** Packs `rows` GGUF Q6_K rows at src into four-row groups at dst. `scratch`: 256 bytes. */
export function packQ6K(src: usize, dst: usize, rows: i32, cols: i32, scratch: usize): void {
  const nsb = cols >> 8;
  const bytes = q6kGroupBytes(cols);
  const groups = (rows + 3) >> 2;
  // Missing rows of a last group must read as zeros.
  if ((rows & 3) != 0) memory.fill(dst, 0, <usize>groups * bytes);
  const mask = i8x16.splat(0x0f);
  for (let row = 0; row < rows; row++) {
    const group = dst + <usize>(row >> 2) * bytes;
    const lane = <usize>(row & 3);
    for (let sb = 0; sb < nsb; sb++) {
      const block = src + (<usize>row * <usize>nsb + <usize>sb) * 210;
      const base = group + <usize>sb * SUPERBLOCK_BYTES;
      store<u16>(base + (lane << 1), load<u16>(block, 208));
      v128.store(base + 8 + (lane << 4), v128.load(block + 192));
      unpackQ6K(block, scratch);
      for (let sub = 0; sub < 8; sub++) {
        const q = scratch + (<usize>sub << 5);
        const lo = v128.load(q);
        const hi = v128.load(q, 16);
        v128.store(base + META_BYTES + (<usize>sub << 6) + (lane << 4), v128.or(v128.and(lo, mask), i16x8.shl(v128.and(hi, mask), 4)));
      }
      for (let pair = 0; pair < 4; pair++) {
        const q = scratch + (<usize>pair << 6);
        const a = i8x16.shr_u(v128.load(q), 4);
        const b = i8x16.shr_u(v128.load(q, 16), 4);
        const c = i8x16.shr_u(v128.load(q, 32), 4);
        const d = i8x16.shr_u(v128.load(q, 48), 4);
        v128.store(base + META_BYTES + 512 + (<usize>pair << 6) + (lane << 4), v128.or(v128.or(a, i8x16.shl(b, 2)), v128.or(i8x16.shl(c, 4), i8x16.shl(d, 6))));
      }
    }
  }
}

/**
 * One row's i32x4 partial sums of Σ_g sc_g·Σ q·x over a superblock (q unsigned, without the −32):
 * nib, high: the row's first nibble and high-bit vectors; scales: its first scale (4 bytes apart).
 */
@inline function rowPartials(nib: usize, high: usize, scales: usize, x: usize, x16: usize): v128 {
  const mask = i8x16.splat(0x0f);
  const three = i8x16.splat(0x03);
  const twelve = i8x16.splat(0x0c);
  const top = i8x16.splat(0x30);
  let acc = i32x4.splat(0);
  for (let pair = 0; pair < 4; pair++) {
    const hb = v128.load(high + (<usize>pair << 6));
    // Shifts of 16-bit lanes are cheaper than byte shifts and safe here: the masked bits stay in their byte.
    const s = pair << 1;
    acc = i32x4.add(acc, subBlockSums(v128.load(nib + (<usize>s << 6)), i16x8.shl(v128.and(hb, three), 4), i16x8.shl(v128.and(hb, twelve), 2),
      scales + <usize>(2 * s), x + (<usize>s << 5), x16 + (<usize>s << 6), mask));
    acc = i32x4.add(acc, subBlockSums(v128.load(nib + (<usize>(s + 1) << 6)), v128.and(hb, top), v128.and(i16x8.shr_u(hb, 2), top),
      scales + <usize>(2 * s + 2), x + (<usize>(s + 1) << 5), x16 + (<usize>(s + 1) << 6), mask));
  }
  return acc;
}

/** sc·Σ q·x of one 32-value sub-block: its nibbles w, high bits (in place) of values 0-15 and 16-31. */
@inline function subBlockSums(w: v128, hLo: v128, hHi: v128, scales: usize, xb: usize, xw: usize, mask: v128): v128 {
  const qLo = v128.or(v128.and(w, mask), hLo);
  const qHi = v128.or(v128.and(i16x8.shr_u(w, 4), mask), hHi);
  const sLo = <i32>load<i8>(scales);
  const sHi = <i32>load<i8>(scales, 1);
  if (ASC_FEATURE_RELAXED_SIMD) {
    // One dot with the scale sums each pair of pair sums, scaled: exact in i32.
    return i32x4.add(
      i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb), qLo), i16x8.splat(<i16>sLo)),
      i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb, 16), qHi), i16x8.splat(<i16>sHi)));
  }
  const pLo = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(qLo), v128.load(xw)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(qLo), v128.load(xw, 16)));
  const pHi = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(qHi), v128.load(xw, 32)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(qHi), v128.load(xw, 48)));
  return i32x4.add(i32x4.mul(pLo, i32x4.splat(sLo)), i32x4.mul(pHi, i32x4.splat(sHi)));
}

/** One row's Σ_g sc_g·32·bsum_g (the −32 of every value), its 16 scales at `scales`, the i16 sums at s16: i32x4 partials. */
@inline function rowBias(scales: usize, s16: usize): v128 {
  const sc = v128.load(scales);
  const sums = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(sc), v128.load(s16)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(sc), v128.load(s16, 16)));
  return i32x4.shl(sums, 5);
}

/**
 * Four rows · one q8_k activation row. b0..b3: each row's group superblock base; l0..l3: its lane.
 * Rows of one group pass the same base four times with lanes 0…3.
 */
@inline function q6kRows4(nsb: i32, b0: usize, b1: usize, b2: usize, b3: usize, l0: usize, l1: usize, l2: usize, l3: usize,
  x: usize, cols: i32): v128 {
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const x16 = q8I16(x, cols);
  const dxs = q8kScales(x, cols);
  const sums = q8kSums16(x, cols);
  let acc = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const o = <usize>sb * SUPERBLOCK_BYTES;
    const xs = x + (<usize>sb << 8);
    const xw = x16 + (<usize>sb << 9);
    const bs = sums + (<usize>sb << 5);
    const r0 = i32x4.sub(rowPartials(b0 + o + META_BYTES + (l0 << 4), b0 + o + META_BYTES + 512 + (l0 << 4), b0 + o + 8 + (l0 << 4), xs, xw), rowBias(b0 + o + 8 + (l0 << 4), bs));
    const r1 = i32x4.sub(rowPartials(b1 + o + META_BYTES + (l1 << 4), b1 + o + META_BYTES + 512 + (l1 << 4), b1 + o + 8 + (l1 << 4), xs, xw), rowBias(b1 + o + 8 + (l1 << 4), bs));
    const r2 = i32x4.sub(rowPartials(b2 + o + META_BYTES + (l2 << 4), b2 + o + META_BYTES + 512 + (l2 << 4), b2 + o + 8 + (l2 << 4), xs, xw), rowBias(b2 + o + 8 + (l2 << 4), bs));
    const r3 = i32x4.sub(rowPartials(b3 + o + META_BYTES + (l3 << 4), b3 + o + META_BYTES + 512 + (l3 << 4), b3 + o + 8 + (l3 << 4), xs, xw), rowBias(b3 + o + 8 + (l3 << 4), bs));
    const isum = transposeSum(r0, r1, r2, r3);
    const hd = i32x4(<i32>load<i16>(b0 + o + (l0 << 1)), <i32>load<i16>(b1 + o + (l1 << 1)), <i32>load<i16>(b2 + o + (l2 << 1)), <i32>load<i16>(b3 + o + (l3 << 1)));
    const d = f32x4.mul(v128.load32_splat(dxs + (<usize>sb << 2)), halvesToF32Finite(hd, signEm, pow2_112));
    acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(isum)));
  }
  return acc;
}

/** y[t][r] = W[r]·x[t] for the rows of groups [g0, g1) and all n activation rows. */
export function q6kMatmul(w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, yIndex: usize, g0: i32, g1: i32): void {
  const nsb = cols >> 8;
  const group = q6kGroupBytes(cols);
  const chunk = max<i32>(1, <i32>((<usize>131072) / group));
  for (let c = g0; c < g1; c += chunk) {
    const cEnd = min<i32>(c + chunk, g1);
    for (let t = 0; t < n; t++) {
      const xt = activationRow(x, xStride, xIndex, t);
      const yt = activationRow(y, yStride, yIndex, t);
      for (let g = c; g < cEnd; g++) {
        const base = w + <usize>g * group;
        storeLanes(yt + (<usize>g << 4), q6kRows4(nsb, base, base, base, base, 0, 1, 2, 3, xt, cols), rows - (g << 2));
      }
    }
  }
}

/** out[i] = W[i]·x for the `count` rows i listed (i32) at `list`, gathered four at a time. */
export function q6kGatheredRows(w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  const nsb = cols >> 8;
  const group = q6kGroupBytes(cols);
  for (let k = 0; k < count; k += 4) {
    const i0 = listedRow(list, k, 0, count);
    const i1 = listedRow(list, k, 1, count);
    const i2 = listedRow(list, k, 2, count);
    const i3 = listedRow(list, k, 3, count);
    const acc = q6kRows4(nsb, w + <usize>(i0 >> 2) * group, w + <usize>(i1 >> 2) * group, w + <usize>(i2 >> 2) * group, w + <usize>(i3 >> 2) * group,
      <usize>(i0 & 3), <usize>(i1 & 3), <usize>(i2 & 3), <usize>(i3 & 3), x, cols);
    storeListed(out, acc, i0, i1, i2, i3, k, count);
  }
}
