// The fused ReGLU expert, first phase: for neurons [n0, n1) (a multiple of 32 wide) of every token,
// g = gate·x (dense), u = up·x where g > 0 (all rows when not sparse), h = relu(g)·u, then h made
// ready for the down projection. The second phase (down.ts) splits the output rows instead.
//
// Each token owns a scratch region of `expertTokenBytes(ffn)`:
//   g f32[ffn] | h f32[ffn] | active rows i32[ffn] | h prepared for down (q8_0, q8_1 or q8_k row) |
//   pair counts i32[ffn/32] | pairs i32[ffn/32][16]

import { q8_1RowBytes, q8kRowBytes, q8RowBytes, quantizeBlocks, quantizeBlocks1, quantizeBlocksK, roundToBf16, roundToF16 } from "./activations";
import { activationFormat, blockDownRows, blockGatheredRows, blockMatmul, blockValues, isBlockFormat } from "./blocks";
import { floatGatheredRows, floatMatmul } from "./floats";
import { MATRIX_BLOCK, MATRIX_IQ4XS, MATRIX_Q4K, MATRIX_Q6K, MATRIX_QUANT, activationRow, matrixKindOf, quantGatheredRows, quantMatmul, touchGatheredRows } from "./quantized";
import { q4kGatheredRows, q4kMatmul } from "./q4k";
import { q6kGatheredRows, q6kMatmul } from "./q6k";
import { downQ4K } from "./downq4k";
import { buildGroupPairs, downQ6K } from "./downq6k";
import { iq4xsGatheredRows, iq4xsMatmul } from "./iq4xs";
import { Q4_0, Q8_0 } from "./types";
import { CHUNK_BLOCKS, CHUNK_NEURONS, expertDown } from "./down";

/**
 * How h is prepared for the down projection (numbered as DownKind in src/kernels/wasm/kernels.ts);
 * 1 leaves it as f32 (every type in PowerInfer's orientation, F32 in llama.cpp's).
 */
const DOWN_QUANT: i32 = 0; // q8 row and neuron pairs (Q4_0/Q8_0 in llama.cpp's orientation)
const DOWN_F16: i32 = 2; // rounded to f16 (F16, llama.cpp's orientation)
const DOWN_BF16: i32 = 3; // rounded to bf16
const DOWN_BLOCK: i32 = 4; // a row of the block format's activation format, once a unit's neurons are done
const DOWN_Q4K: i32 = 5; // a q8_k row and neuron pairs, once a unit's neurons are done (Q4_K in llama.cpp's orientation)
const DOWN_Q6K: i32 = 6; // a q8_k row and pairs within 16-neuron groups (Q6_K in llama.cpp's orientation)

@inline export function hOffset(ffn: i32): usize {
  return <usize>ffn << 2;
}
@inline export function activeOffset(ffn: i32): usize {
  return <usize>ffn << 3;
}
@inline export function hqOffset(ffn: i32): usize {
  return <usize>ffn * 12;
}
/** Room for h in any activation format a down matrix takes. */
@inline function hqBytes(ffn: i32): usize {
  return max<usize>(q8_1RowBytes(ffn), ffn % 256 == 0 ? q8kRowBytes(ffn) : 0);
}
@inline export function pairCountsOffset(ffn: i32): usize {
  return hqOffset(ffn) + hqBytes(ffn);
}
/** Where a thread's block-format scratch starts in its `list` area (after the neuron list and touch sink). */
@inline export function blockScratch(list: usize, ffn: i32): usize {
  return list + ((<usize>ffn * 4 + 16 + 63) & ~63);
}
@inline export function pairsOffset(ffn: i32): usize {
  return pairCountsOffset(ffn) + (<usize>(ffn >> 5) << 2);
}
export function expertTokenBytes(ffn: i32): usize {
  return (pairsOffset(ffn) + (<usize>(ffn >> 5) << 6) + 63) & ~63;
}

function matmul(type: i32, w: usize, cols: i32, rows: i32, x: usize, xStride: usize, xIndex: usize, n: i32,
  y: usize, yStride: usize, r0: i32, r1: i32, scratch: usize): void {
  const kind = matrixKindOf(type);
  if (kind == MATRIX_QUANT) quantMatmul(type, w, cols, rows, x, xStride, xIndex, n, y, yStride, r0 >> 2, (r1 + 3) >> 2);
  else if (kind == MATRIX_Q4K) q4kMatmul(w, cols, rows, x, xStride, xIndex, n, y, yStride, 0, r0 >> 2, (r1 + 3) >> 2);
  else if (kind == MATRIX_Q6K) q6kMatmul(w, cols, rows, x, xStride, xIndex, n, y, yStride, 0, r0 >> 2, (r1 + 3) >> 2);
  else if (kind == MATRIX_IQ4XS) iq4xsMatmul(w, cols, rows, x, xStride, xIndex, n, y, yStride, 0, r0 >> 2, (r1 + 3) >> 2);
  else if (kind == MATRIX_BLOCK) blockMatmul(type, w, cols, x, xStride, xIndex, n, y, yStride, 0, r0, r1, scratch);
  else floatMatmul(type, w, cols, rows, x, xStride, xIndex, n, y, yStride, r0, r1);
}

/** Phase one for neurons [n0, n1); returns how many (token, neuron) pairs had g > 0. */
export function expertGateUp(type: i32, gate: usize, up: usize, hidden: i32, ffn: i32, x: usize, xStride: usize, xRows: usize,
  n: i32, scratch: usize, tokenStride: usize, downKind: i32, n0: i32, n1: i32, sparse: bool, touchSink: usize, work: usize): i32 {
  matmul(type, gate, hidden, ffn, x, xStride, xRows, n, scratch, tokenStride, n0, n1, work);
  if (!sparse) matmul(type, up, hidden, ffn, x, xStride, xRows, n, scratch + hOffset(ffn), tokenStride, n0, n1, work);
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
      const kind = matrixKindOf(type);
      if (kind == MATRIX_QUANT) {
        if (j == 0) v128.store(touchSink, v128.or(v128.load(touchSink), touchGatheredRows(type, up, hidden, list, count)));
        quantGatheredRows(type, up, hidden, list, count, xj, h);
      } else if (kind == MATRIX_Q4K) {
        q4kGatheredRows(up, hidden, list, count, xj, h);
      } else if (kind == MATRIX_Q6K) {
        q6kGatheredRows(up, hidden, list, count, xj, h);
      } else if (kind == MATRIX_IQ4XS) {
        iq4xsGatheredRows(up, hidden, list, count, xj, h);
      } else if (kind == MATRIX_BLOCK) {
        blockGatheredRows(type, up, hidden, list, count, xj, h, work);
      } else {
        floatGatheredRows(type, up, hidden, list, count, xj, h);
      }
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
  quantizeBlocks(h, ffn, token + hqOffset(ffn), n0 >> 5, n1 >> 5);
  buildPairs(token, ffn, n0 >> 5, n1 >> 5, sparse);
}

/**
 * The neuron pairs of 32-neuron blocks [b0, b1) of one token's quantized h (its i8 values at hq),
 * for the neuron-major down products: each pair (i, j, qh_i, qh_j) one i32; only nonzero qh when
 * `sparse`; an odd neuron pairs with itself at weight 0.
 */
function buildPairs(token: usize, ffn: i32, b0: i32, b1: i32, sparse: bool): void {
  const hq = token + hqOffset(ffn);
  for (let b = b0; b < b1; b++) {
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
      store<i32>(pairs + (<usize>count << 2), (pending & 0xff) | ((pending & 0xff) << 8) | (pending & 0xff0000));
      count++;
    }
    store<i32>(token + pairCountsOffset(ffn) + (<usize>b << 2), count);
  }
}

/** The nonzero entries of h among neurons [n0, n1) (in order) as an i32 list; returns the count. */
export function nonzeroNeurons(h: usize, n0: i32, n1: i32, list: usize): i32 {
  let count = 0;
  for (let i = n0; i < n1; i++) {
    if (load<f32>(h + (<usize>i << 2)) != 0) {
      store<i32>(list + (<usize>count << 2), i);
      count++;
    }
  }
  return count;
}

// A layer's experts run as tasks described by a table of TASK_BYTES per task (i32 fields):
//   gate, up, down (packed matrices), count (tokens), rows (i32 list: the tokens' rows of x),
//   outRows (i32 list: where each token's result goes), base (index of the task's first token among
//   all tasks' tokens: its scratch region and partial sums), unused.
// Scratch: token regions (expertTokenBytes each) for all tokens, then, for few tokens, the chunk
// partial sums [token][chunk][hidden] f32.

const TASK_BYTES: usize = 32;

@inline function field(table: usize, task: i32, index: i32): i32 {
  return load<i32>(table + (<usize>task * TASK_BYTES) + (<usize>index << 2));
}

export function chunkCount(ffn: i32): i32 {
  return (ffn + CHUNK_NEURONS - 1) / CHUNK_NEURONS;
}

/**
 * One unit of phase one: neurons of chunks [c0, c1) of task `task` for all its tokens (the gate rows
 * as one stream, then the up rows of all the active neurons); when `partials` is nonzero, also each
 * chunk's down partial sums of every output row. Returns pairs with g > 0.
 */
export function expertChunks(table: usize, task: i32, c0: i32, c1: i32, type: i32, downType: i32, quantUpstream: bool, downKind: i32,
  hidden: i32, ffn: i32, x: usize, xStride: usize, scratch: usize, tokenStride: usize, partials: usize, list: usize, sparse: bool): i32 {
  const n = field(table, task, 3);
  const base = field(table, task, 6);
  const n0 = c0 * CHUNK_NEURONS;
  const n1 = min<i32>(ffn, c1 * CHUNK_NEURONS);
  const tokens = scratch + <usize>base * tokenStride;
  // One token: the whole run at once (longer streams). More: a chunk at a time, so that its up rows
  // stay in cache from one token to the next.
  const step = n == 1 ? n1 - n0 : CHUNK_NEURONS;
  let active = 0;
  for (let m = n0; m < n1; m += step) {
    active += expertGateUp(type, <usize>field(table, task, 0), <usize>field(table, task, 1), hidden, ffn, x, xStride,
      <usize>field(table, task, 4), n, tokens, tokenStride, downKind, m, min<i32>(n1, m + step), sparse, list + (<usize>ffn << 2),
      blockScratch(list, ffn));
  }
  // A block format's activation blocks may span several chunks: this unit's (whole blocks) are done.
  if (downKind == DOWN_BLOCK || downKind == DOWN_Q4K || downKind == DOWN_Q6K) {
    for (let j = 0; j < n; j++) {
      const token = tokens + <usize>j * tokenStride;
      prepareBlockDown(downType, token, ffn, n0, n1);
      if (downKind == DOWN_Q4K) buildPairs(token, ffn, n0 >> 5, n1 >> 5, sparse);
      else if (downKind == DOWN_Q6K) buildGroupPairs(token, ffn, n0 >> 5, n1 >> 5, sparse);
    }
  }
  if (partials) {
    const chunks = chunkCount(ffn);
    const rowBytes = <usize>hidden << 2;
    for (let c = c0; c < c1; c++) {
      expertDown(downType, quantUpstream, <usize>field(table, task, 2), hidden, ffn, n, tokens, tokenStride,
        partials + (<usize>(base * chunks + c)) * rowBytes, 0, <usize>chunks * rowBytes, list, 0, hidden,
        c * CHUNK_BLOCKS, min<i32>(ffn, (c + 1) * CHUNK_NEURONS) >> 5);
    }
  }
  return active;
}

/** h of neurons [n0, n1) (whole activation blocks) of one token, in the down matrix's activation format. */
function prepareBlockDown(downType: i32, token: usize, ffn: i32, n0: i32, n1: i32): void {
  const h = token + hOffset(ffn);
  const hq = token + hqOffset(ffn);
  const format = activationFormat(downType);
  if (format == 5) quantizeBlocksK(h, ffn, hq, n0 >> 8, n1 >> 8);
  else if (format == 4) quantizeBlocks1(h, ffn, hq, n0 >> 5, n1 >> 5);
  else quantizeBlocks(h, ffn, hq, n0 >> 5, n1 >> 5);
}

/** Phase two of task `task`: output rows [r0, r1) (multiples of 32) of all its tokens. */
export function expertRows(table: usize, task: i32, downType: i32, quantUpstream: bool, downKind: i32, hidden: i32, ffn: i32, scratch: usize,
  tokenStride: usize, out: usize, list: usize, r0: i32, r1: i32): void {
  const base = field(table, task, 6);
  if (downKind == DOWN_Q4K || downKind == DOWN_Q6K) {
    const down = <usize>field(table, task, 2);
    const tokens = scratch + <usize>base * tokenStride;
    const outRows = <usize>field(table, task, 5);
    const n = field(table, task, 3);
    if (downKind == DOWN_Q4K) downQ4K(down, hidden, ffn, n, tokens, tokenStride, out, outRows, <usize>hidden << 2, r0, r1, blockScratch(list, ffn));
    else downQ6K(down, hidden, ffn, n, tokens, tokenStride, out, outRows, <usize>hidden << 2, r0, r1, blockScratch(list, ffn));
    return;
  }
  if (downKind == DOWN_BLOCK) {
    // llama.cpp's orientation: the dense product of the down rows with each token's prepared h.
    blockMatmul(downType, <usize>field(table, task, 2), ffn, scratch + <usize>base * tokenStride + hqOffset(ffn), tokenStride, 0,
      field(table, task, 3), out, <usize>hidden << 2, <usize>field(table, task, 5), r0, r1, blockScratch(list, ffn));
    return;
  }
  expertDown(downType, quantUpstream, <usize>field(table, task, 2), hidden, ffn, field(table, task, 3), scratch + <usize>base * tokenStride,
    tokenStride, out, <usize>field(table, task, 5), <usize>hidden << 2, list, r0, r1, 0, ffn >> 5);
}

/** After phase one with partials: each token's result = its chunk sums added in order. */
export function expertReduce(table: usize, tasks: i32, hidden: i32, ffn: i32, partials: usize, out: usize): void {
  const chunks = chunkCount(ffn);
  const rowBytes = <usize>hidden << 2;
  for (let t = 0; t < tasks; t++) {
    const n = field(table, t, 3);
    const base = field(table, t, 6);
    const outRows = <usize>field(table, t, 5);
    for (let j = 0; j < n; j++) {
      const first = partials + <usize>((base + j) * chunks) * rowBytes;
      const o = out + <usize>load<i32>(outRows + (<usize>j << 2)) * rowBytes;
      for (let i = 0; i < hidden; i += 4) {
        const off = <usize>i << 2;
        let sum = v128.load(first + off);
        for (let c = 1; c < chunks; c++) sum = f32x4.add(sum, v128.load(first + <usize>c * rowBytes + off));
        v128.store(o + off, sum);
      }
    }
  }
}
