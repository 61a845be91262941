// The module's exports: every entry point takes plain numbers (pointers into the imported shared
// memory, sizes, and the range of the work that one thread does).

import { q8_1RowBytes, q8kRowBytes, q8RowBytes, quantizeBlocks, quantizeBlocks1, quantizeBlocksK, roundToBf16, roundToF16 } from "./activations";
import { blockBytes, blockValues, isBlockFormat } from "./blocks";
import { packDownQuant, transposeFloat } from "./down";
import { elementBytes } from "./floats";
import { packQuantMatrix } from "./quantized";
import { IQ4_XS, Q4_0, Q4_K, Q6_K, Q8_0 } from "./types";
import { packIQ4XS } from "./iq4xs";
import { packQ4K } from "./q4k";
import { packDownQ4K } from "./downq4k";
import { packDownQ6K } from "./downq6k";
import { packQ6K } from "./q6k";

export { initConstants } from "./simd";
export { matmulPiece, quantMatmul, quantGatheredRows } from "./quantized";
export { floatMatmul, floatGatheredRows } from "./floats";
export { blockMatmul } from "./blocks";
export { q4kMatmul } from "./q4k";
export { q6kMatmul } from "./q6k";
export { iq4xsMatmul } from "./iq4xs";
export { chunkCount, expertChunks, expertReduce, expertRows, expertTokenBytes } from "./expert";
export { attendBlock, attendChunks, foldStored } from "./attention";
export { add, dequantizeRows, moeCombine, rmsNorm, rope, storeKv, sumBlocks } from "./elementwise";

// Activation formats, numbered as in src/kernels/wasm/exports.ts.
const FORMAT_F16: i32 = 1;
const FORMAT_BF16: i32 = 2;
const FORMAT_Q8: i32 = 3;
const FORMAT_Q8_1: i32 = 4;
const FORMAT_Q8_K: i32 = 5;

export function activationRowBytes(format: i32, cols: i32): usize {
  if (format == FORMAT_Q8) return q8RowBytes(cols);
  if (format == FORMAT_Q8_1) return q8_1RowBytes(cols);
  if (format == FORMAT_Q8_K) return q8kRowBytes(cols);
  return ((<usize>cols << 2) + 15) & ~15;
}

/** Prepares rows [r0, r1) of f32 rows at src (cols each) into rows of `format` at dst. */
export function prepareRows(format: i32, src: usize, cols: i32, dst: usize, r0: i32, r1: i32): void {
  const rowBytes = activationRowBytes(format, cols);
  for (let r = r0; r < r1; r++) {
    const from = src + <usize>r * <usize>cols * 4;
    const to = dst + <usize>r * rowBytes;
    if (format == FORMAT_Q8) quantizeBlocks(from, cols, to, 0, cols >> 5);
    else if (format == FORMAT_Q8_1) quantizeBlocks1(from, cols, to, 0, cols >> 5);
    else if (format == FORMAT_Q8_K) quantizeBlocksK(from, cols, to, 0, cols >> 8);
    else if (format == FORMAT_F16) roundToF16(from, to, cols);
    else if (format == FORMAT_BF16) roundToBf16(from, to, cols);
    else memory.copy(to, from, <usize>cols << 2);
  }
}

/** Bytes of `rows` GGUF rows of `cols` values. */
function fileBytes(type: i32, rows: i32, cols: i32): usize {
  if (type == Q4_0 || type == Q8_0) return <usize>rows * <usize>(cols >> 5) * (type == Q4_0 ? 18 : 34);
  if (isBlockFormat(type)) return <usize>rows * <usize>(cols / blockValues(type)) * blockBytes(type);
  return <usize>rows * <usize>cols * elementBytes(type);
}

/** Packs `rows` GGUF rows at src into the kernels' matrix layout at dst. `scratch`: 256 bytes. */
export function packMatrix(type: i32, src: usize, dst: usize, rows: i32, cols: i32, scratch: usize): void {
  if (type == Q4_0 || type == Q8_0) packQuantMatrix(type, src, dst, rows, cols);
  else if (type == Q4_K) packQ4K(src, dst, rows, cols);
  else if (type == Q6_K) packQ6K(src, dst, rows, cols, scratch);
  else if (type == IQ4_XS) packIQ4XS(src, dst, rows, cols);
  else memory.copy(dst, src, fileBytes(type, rows, cols));
}

/**
 * Packs an expert's down matrix as the file holds it (`rows` × `cols`, see DownLayout): llama.cpp's
 * orientation becomes neuron-major (quantized) or one row per neuron (floats); PowerInfer's is
 * already one row per neuron. `scratch`: 4352 bytes.
 */
export function packDown(type: i32, upstream: bool, src: usize, dst: usize, rows: i32, cols: i32, scratch: usize): void {
  if (upstream && type == Q4_K) {
    packDownQ4K(src, dst, rows, cols, scratch);
  } else if (upstream && type == Q6_K) {
    packDownQ6K(src, dst, rows, cols, scratch);
  } else if (!upstream || isBlockFormat(type)) {
    // Other block formats keep the file's layout in both orientations (see blocks.ts).
    memory.copy(dst, src, fileBytes(type, rows, cols));
  } else if (type == Q4_0 || type == Q8_0) {
    packDownQuant(type, src, dst, rows, cols, scratch);
  } else {
    transposeFloat(<i32>elementBytes(type), src, dst, rows, cols);
  }
}
