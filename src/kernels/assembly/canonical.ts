// The canonical form every block format decodes to, one block of one row at a time, so that one
// product, one gathered product and one dequantization serve them all:
//   [i8 × 256 values] [i32 × 16 group scales] [i32 × 16 group mins] [f32 f0] [f32 f1]
// A group is 16 consecutive values (formats with 32-value sub-blocks repeat their scale); a block of
// 32 values fills the first 32 values and 2 groups. With x the activation block, the block's integer
// sums are
//   isum = Σ_g scale_g · Σ_{i∈g} v_i·x_i      msum = Σ_g min_g · Σ_{i∈g} x_i   (q8_k blocks only)
// and its f32 contribution, by the format's form (dx: the activation block's scale, sx: its q8_1 sum):
//   FORM_DK    fround(fround(fround(f0·dx)·f1) · f32(isum + msum))       f1: a power of two
//   FORM_DMIN  fround(fround(fround(f0·dx)·f32(isum)) − fround(fround(f1·dx)·f32(msum)))
//   FORM_Q81   fround(fround(fround(f0·dx)·f32(isum)) + fround(f1·sx))
//   FORM_SUB   each 32-value activation block k the weight block spans is a block of its own,
//              fround(fround(f0·dx_k) · f32(isum_k)) (Q1_0, Q2_0)
// added to the row's f32 sum block by block, which is what the plain-TS reference
// (src/quant/formats) computes, bit for bit.

export const CANON_VALUES: usize = 0;
export const CANON_SCALES: usize = 256;
export const CANON_MINS: usize = 320;
export const CANON_F0: usize = 384;
export const CANON_F1: usize = 388;
export const CANON_BYTES: usize = 400;

export const FORM_DK: i32 = 0;
export const FORM_DMIN: i32 = 1;
export const FORM_Q81: i32 = 2;
export const FORM_SUB: i32 = 3;

/** Sets groups [g0, g1) of a canonical block to one scale and min. */
@inline export function setGroups(c: usize, g0: i32, g1: i32, scale: i32, min: i32): void {
  for (let g = g0; g < g1; g++) {
    store<i32>(c + CANON_SCALES + (<usize>g << 2), scale);
    store<i32>(c + CANON_MINS + (<usize>g << 2), min);
  }
}
