// IQ4_XS matrices in Q4_0's four-row groups (quantized.ts): each 32-value sub-block a 16-byte block of
// kvalues_iq4nl indices (value i in the low nibble of byte i, value i + 16 in the high), in Q4_0's
// 64-byte lines; per superblock a group also holds
//   [4 × f16 d] [8 sub-blocks × 4 rows i8 scale (ls − 32)]   (40 bytes)
// before its values. The values are signed, so a product multiplies |x| by the value carrying x's
// sign (the relaxed dot wants one operand in 0…127). It is the reference's: per superblock
// isum = Σ_j s_j·Σ v·x exactly, then fround(fround(dx·d)·f32(isum)), rows as lanes.

import { q8I16, q8kScales } from "./activations";
import { F16_SIGN_EM, IQ4NL_VALUES, NIBBLE_MASK, POW2_112, constant, halvesToF32Finite, transposeSum } from "./simd";
import { activationRow, blockOffset, listedRow, storeLanes, storeListed, valueRegionBytes } from "./quantized";
import { Q4_0 } from "./types";

const META_BYTES: usize = 40;

export function iq4xsGroupBytes(cols: i32): usize {
  return <usize>(cols >> 8) * META_BYTES + valueRegionBytes(Q4_0, cols >> 5);
}

/** Packs `rows` GGUF IQ4_XS rows at src into four-row groups at dst. */
export function packIQ4XS(src: usize, dst: usize, rows: i32, cols: i32): void {
  const nsb = cols >> 8;
  const bytes = iq4xsGroupBytes(cols);
  const groups = (rows + 3) >> 2;
  if ((rows & 3) != 0 || (cols >> 5) % 4 != 0) memory.fill(dst, 0, <usize>groups * bytes);
  const values = <usize>nsb * META_BYTES;
  for (let row = 0; row < rows; row++) {
    const group = dst + <usize>(row >> 2) * bytes;
    const lane = <usize>(row & 3);
    for (let sb = 0; sb < nsb; sb++) {
      const block = src + (<usize>row * <usize>nsb + <usize>sb) * 136;
      const meta = group + <usize>sb * META_BYTES;
      store<u16>(meta + (lane << 1), load<u16>(block));
      const high = <i32>load<u16>(block, 2);
      for (let j = 0; j < 8; j++) {
        const ls = ((<i32>load<u8>(block + 4 + <usize>(j >> 1)) >> (4 * (j & 1))) & 0xf) | (((high >> (2 * j)) & 3) << 4);
        store<i8>(meta + 8 + (<usize>j << 2) + lane, <i8>(ls - 32));
        // The file's sub-block j is already 16 bytes of nibbles in this order.
        v128.store(group + values + blockOffset(Q4_0, sb * 8 + j) + (lane << 6), v128.load(block + 8 + (<usize>j << 4)));
      }
    }
  }
}

/** Σ v·x of 16 values: indices (nibbles) into the value table, x's magnitudes and sign masks. */
@inline function signedSums(nibbles: v128, table: v128, magnitude: v128, sign: v128, x16: usize): v128 {
  const v = i8x16.swizzle(table, nibbles);
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(v, sign), sign), magnitude));
  }
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(v), v128.load(x16)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(v), v128.load(x16, 16)));
}

/**
 * Four rows · one q8_k activation row. p0..p3: each row's first value line; m0..m3: its group's
 * first metadata, l0..l3 its lane there (one group: m0 four times, lanes 0…3).
 */
@inline function iq4xsRows4(nsb: i32, p0: usize, p1: usize, p2: usize, p3: usize, m0: usize, m1: usize, m2: usize, m3: usize,
  l0: usize, l1: usize, l2: usize, l3: usize, x: usize, cols: i32): v128 {
  const mask = constant(NIBBLE_MASK);
  const table = constant(IQ4NL_VALUES);
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const x16 = q8I16(x, cols);
  const dxs = q8kScales(x, cols);
  let acc = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    let a0 = i32x4.splat(0);
    let a1 = i32x4.splat(0);
    let a2 = i32x4.splat(0);
    let a3 = i32x4.splat(0);
    for (let j = 0; j < 8; j++) {
      const b = (sb << 3) + j;
      const xl = v128.load(x + (<usize>b << 5));
      const xh = v128.load(x + (<usize>b << 5), 16);
      const magLo = i8x16.abs(xl);
      const magHi = i8x16.abs(xh);
      const signLo = i8x16.shr_s(xl, 7);
      const signHi = i8x16.shr_s(xh, 7);
      const xw = x16 + (<usize>b << 6);
      const o: usize = 8 + (<usize>j << 2);
      const w0 = v128.load(p0);
      const w1 = v128.load(p1);
      const w2 = v128.load(p2);
      const w3 = v128.load(p3);
      a0 = i32x4.add(a0, i32x4.mul(i32x4.add(signedSums(v128.and(w0, mask), table, magLo, signLo, xw), signedSums(v128.and(i16x8.shr_u(w0, 4), mask), table, magHi, signHi, xw + 32)),
        i32x4.splat(<i32>load<i8>(m0 + o + l0))));
      a1 = i32x4.add(a1, i32x4.mul(i32x4.add(signedSums(v128.and(w1, mask), table, magLo, signLo, xw), signedSums(v128.and(i16x8.shr_u(w1, 4), mask), table, magHi, signHi, xw + 32)),
        i32x4.splat(<i32>load<i8>(m1 + o + l1))));
      a2 = i32x4.add(a2, i32x4.mul(i32x4.add(signedSums(v128.and(w2, mask), table, magLo, signLo, xw), signedSums(v128.and(i16x8.shr_u(w2, 4), mask), table, magHi, signHi, xw + 32)),
        i32x4.splat(<i32>load<i8>(m2 + o + l2))));
      a3 = i32x4.add(a3, i32x4.mul(i32x4.add(signedSums(v128.and(w3, mask), table, magLo, signLo, xw), signedSums(v128.and(i16x8.shr_u(w3, 4), mask), table, magHi, signHi, xw + 32)),
        i32x4.splat(<i32>load<i8>(m3 + o + l3))));
      const step: usize = (j & 3) == 3 ? 256 - 3 * 16 : 16;
      p0 += step;
      p1 += step;
      p2 += step;
      p3 += step;
    }
    const isum = transposeSum(a0, a1, a2, a3);
    const hd = i32x4(<i32>load<i16>(m0 + (l0 << 1)), <i32>load<i16>(m1 + (l1 << 1)), <i32>load<i16>(m2 + (l2 << 1)), <i32>load<i16>(m3 + (l3 << 1)));
    const d = f32x4.mul(v128.load32_splat(dxs + (<usize>sb << 2)), halvesToF32Finite(hd, signEm, pow2_112));
    acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(isum)));
    m0 += META_BYTES;
    m1 += META_BYTES;
    m2 += META_BYTES;
    m3 += META_BYTES;
  }
  return acc;
}

/** y[t][r] = W[r]·x[t] for the rows of groups [g0, g1) and all n activation rows. */
export function iq4xsMatmul(w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, yIndex: usize, g0: i32, g1: i32): void {
  const nsb = cols >> 8;
  const group = iq4xsGroupBytes(cols);
  const chunk = max<i32>(1, <i32>((<usize>131072) / group));
  const values = <usize>nsb * META_BYTES;
  for (let c = g0; c < g1; c += chunk) {
    const cEnd = min<i32>(c + chunk, g1);
    for (let t = 0; t < n; t++) {
      const xt = activationRow(x, xStride, xIndex, t);
      const yt = activationRow(y, yStride, yIndex, t);
      for (let g = c; g < cEnd; g++) {
        const base = w + <usize>g * group;
        const v = base + values;
        storeLanes(yt + (<usize>g << 4), iq4xsRows4(nsb, v, v + 64, v + 128, v + 192, base, base, base, base, 0, 1, 2, 3, xt, cols), rows - (g << 2));
      }
    }
  }
}

/** out[i] = W[i]·x for the `count` rows i listed (i32) at `list`, gathered four at a time. */
export function iq4xsGatheredRows(w: usize, cols: i32, list: usize, count: i32, x: usize, out: usize): void {
  const nsb = cols >> 8;
  const group = iq4xsGroupBytes(cols);
  const values = <usize>nsb * META_BYTES;
  for (let k = 0; k < count; k += 4) {
    const i0 = listedRow(list, k, 0, count);
    const i1 = listedRow(list, k, 1, count);
    const i2 = listedRow(list, k, 2, count);
    const i3 = listedRow(list, k, 3, count);
    const g0 = w + <usize>(i0 >> 2) * group;
    const g1 = w + <usize>(i1 >> 2) * group;
    const g2 = w + <usize>(i2 >> 2) * group;
    const g3 = w + <usize>(i3 >> 2) * group;
    const acc = iq4xsRows4(nsb,
      g0 + values + (<usize>(i0 & 3) << 6), g1 + values + (<usize>(i1 & 3) << 6),
      g2 + values + (<usize>(i2 & 3) << 6), g3 + values + (<usize>(i3 & 3) << 6),
      g0, g1, g2, g3, <usize>(i0 & 3), <usize>(i1 & 3), <usize>(i2 & 3), <usize>(i3 & 3), x, cols);
    storeListed(out, acc, i0, i1, i2, i3, k, count);
  }
}
