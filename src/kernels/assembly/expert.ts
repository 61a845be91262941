// The fused ReGLU expert, first phase: for neurons [n0, n1) (a multiple of 32 wide) of every token,
// g = gate·x (dense), u = up·x where g > 0 (all rows when not sparse), h = relu(g)·u, then h made
// ready for the down projection. The second phase (down.ts) splits the output rows instead.
//
// Each token owns a scratch region of `expertTokenBytes(ffn)`:
//   g f32[ffn] | h f32[ffn] | active rows i32[ffn] | h as a q8 row | pair counts i32[ffn/32] | pairs i32[ffn/32][16]

import { q8RowBytes, quantizeBlocks, roundToBf16, roundToF16 } from "./activations";
import { floatGatheredRows, floatMatmul } from "./floats";
import { activationRow, quantGatheredRows, quantMatmul } from "./quantized";
import { Q4_0, Q8_0 } from "./types";

/**
 * How h is prepared for the down projection (numbered as DownKind in src/kernels/wasm/kernels.ts);
 * 1 leaves it as f32 (every type in PowerInfer's orientation, F32 in llama.cpp's).
 */
const DOWN_QUANT: i32 = 0; // q8 row and neuron pairs (Q4_0/Q8_0 in llama.cpp's orientation)
const DOWN_F16: i32 = 2; // rounded to f16 (F16, llama.cpp's orientation)
const DOWN_BF16: i32 = 3; // rounded to bf16

@inline export function hOffset(ffn: i32): usize {
  return <usize>ffn << 2;
}
@inline export function activeOffset(ffn: i32): usize {
  return <usize>ffn << 3;
}
@inline export function hqOffset(ffn: i32): usize {
  return <usize>ffn * 12;
}
@inline export function pairCountsOffset(ffn: i32): usize {
  return hqOffset(ffn) + q8RowBytes(ffn);
}
@inline export function pairsOffset(ffn: i32): usize {
  return pairCountsOffset(ffn) + (<usize>(ffn >> 5) << 2);
}
export function expertTokenBytes(ffn: i32): usize {
  return (pairsOffset(ffn) + (<usize>(ffn >> 5) << 6) + 63) & ~63;
}

@inline function isQuant(type: i32): bool {
  return type == Q4_0 || type == Q8_0;
}

function matmul(type: i32, w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, r0: i32, r1: i32): void {
  if (isQuant(type)) quantMatmul(type, w, cols, rows, x, xStride, xIndex, n, y, yStride, r0 >> 2, (r1 + 3) >> 2);
  else floatMatmul(type, w, cols, rows, x, xStride, xIndex, n, y, yStride, r0, r1);
}

/** Phase one for neurons [n0, n1); returns how many (token, neuron) pairs had g > 0. */
export function expertGateUp(type: i32, gate: usize, up: usize, hidden: i32, ffn: i32, x: usize, xStride: usize, xRows: usize,
  n: i32, scratch: usize, tokenStride: usize, downKind: i32, n0: i32, n1: i32, sparse: bool): i32 {
  matmul(type, gate, hidden, ffn, x, xStride, xRows, n, scratch, tokenStride, n0, n1);
  if (!sparse) matmul(type, up, hidden, ffn, x, xStride, xRows, n, scratch + hOffset(ffn), tokenStride, n0, n1);
  let active = 0;
  for (let j = 0; j < n; j++) {
    const token = scratch + <usize>j * tokenStride;
    const h = token + hOffset(ffn);
    const list = token + activeOffset(ffn) + (<usize>n0 << 2);
    let count = 0;
    for (let i = n0; i < n1; i++) {
      if (load<f32>(token + (<usize>i << 2)) > 0) {
        store<i32>(list + (<usize>count << 2), i);
        count++;
      }
    }
    active += count;
    if (sparse) {
      memory.fill(h + (<usize>n0 << 2), 0, <usize>(n1 - n0) << 2);
      const xj = activationRow(x, xStride, xRows, j);
      if (isQuant(type)) quantGatheredRows(type, up, hidden, list, count, xj, h);
      else floatGatheredRows(type, up, hidden, list, count, xj, h);
      for (let k = 0; k < count; k++) {
        const i = <usize>load<i32>(list + (<usize>k << 2));
        store<f32>(h + (i << 2), load<f32>(token + (i << 2)) * load<f32>(h + (i << 2)));
      }
    } else {
      for (let i = n0; i < n1; i++) {
        const o = <usize>i << 2;
        store<f32>(h + o, max<f32>(load<f32>(token + o), 0) * load<f32>(h + o));
      }
    }
    prepareForDown(token, ffn, downKind, n0, n1, sparse);
  }
  return active;
}

function prepareForDown(token: usize, ffn: i32, downKind: i32, n0: i32, n1: i32, sparse: bool): void {
  const h = token + hOffset(ffn);
  if (downKind == DOWN_F16) roundToF16(h + (<usize>n0 << 2), h + (<usize>n0 << 2), n1 - n0);
  else if (downKind == DOWN_BF16) roundToBf16(h + (<usize>n0 << 2), h + (<usize>n0 << 2), n1 - n0);
  if (downKind != DOWN_QUANT) return;
  const hq = token + hqOffset(ffn);
  quantizeBlocks(h, ffn, hq, n0 >> 5, n1 >> 5);
  for (let b = n0 >> 5; b < n1 >> 5; b++) {
    const pairs = token + pairsOffset(ffn) + (<usize>b << 6);
    let count = 0;
    let pending = -1;
    for (let e = 0; e < 32; e++) {
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
      // An odd neuron pairs with itself at weight 0.
      store<i32>(pairs + (<usize>count << 2), (pending & 0xff) | ((pending & 0xff) << 8) | (pending & 0xff0000));
      count++;
    }
    store<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2), count);
  }
}

/** The nonzero entries of h (neuron order) as an i32 list; returns the count. */
export function nonzeroNeurons(h: usize, ffn: i32, list: usize): i32 {
  let count = 0;
  for (let i = 0; i < ffn; i++) {
    if (load<f32>(h + (<usize>i << 2)) != 0) {
      store<i32>(list + (<usize>count << 2), i);
      count++;
    }
  }
  return count;
}
