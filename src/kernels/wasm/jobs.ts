import { DOWN_CHUNK } from "../api.js";
import { KernelExports } from "./exports.js";
import { ATTENTION_CHUNK, MatrixKind, PRODUCT_TABLE, partialBytes, threadScratch } from "./layout.js";

/**
 * Jobs the main thread hands to the pool. A job is cut into `units` pieces, contiguous ranges fixed
 * by (total, units, unit); whichever thread claims a unit runs it with its own scratch
 * (`participant`: 0 = main). No output element's arithmetic depends on the cut or on who runs it.
 */
export const Op = {
  Prepare: 1,
  Matmul: 2,
  ExpertChunks: 3,
  ExpertRows: 4,
  RmsNorm: 5,
  Rope: 6,
  StoreKv: 7,
  AttendUnits: 8,
  AttendChunks: 9,
  FoldChunks: 10,
  Add: 11,
  MoeCombine: 12,
  Dequantize: 13,
  Matmuls: 14,
  SumBlocks: 15,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Argument 0 of every job is the arena index; the rest are listed per op in `runUnit`. */
export type JobArgs = ArrayLike<number>;

/** [start, end) of piece `unit` when `total` items are cut into `units` runs of whole `align`s. */
export function share(total: number, units: number, unit: number, align = 1): [number, number] {
  const blocks = Math.ceil(total / align);
  const base = Math.floor(blocks / units);
  const extra = blocks % units;
  const start = unit * base + Math.min(unit, extra);
  const count = base + (unit < extra ? 1 : 0);
  return [Math.min(total, start * align), Math.min(total, (start + count) * align)];
}

/** What a participant needs to run jobs: an instance per arena and that arena's memory. */
export interface JobContext {
  instance(arena: number): KernelExports;
  memory(arena: number): WebAssembly.Memory;
}

/** Runs one unit of a job; returns a count for jobs that produce one. */
export function runUnit(context: JobContext, op: OpCode, a: JobArgs, unit: number, units: number, participant: number): number {
  const k = context.instance(a[0]!);
  switch (op) {
    case Op.Prepare: {
      const [format, src, cols, dst, rows] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!];
      const [r0, r1] = share(rows, units, unit);
      if (r0 < r1) k.prepareRows(format, src, cols, dst, r0, r1);
      return 0;
    }
    case Op.Matmuls: {
      // One unit = one piece of the products listed in the arena's product table.
      k.matmulPiece(PRODUCT_TABLE, a[1]!, a[2]!, unit, threadScratch(participant));
      return 0;
    }
    case Op.Matmul: {
      const [kind, type, w, cols, rows, x, xStride, n, y, yStride] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!, a[10]!];
      if (kind !== MatrixKind.Float && kind !== MatrixKind.Block) {
        // Four-row groups.
        const [g0, g1] = share(Math.ceil(rows / 4), units, unit);
        if (g0 >= g1) return 0;
        if (kind === MatrixKind.Quant) k.quantMatmul(type, w, cols, rows, x, xStride, 0, n, y, yStride, g0, g1);
        else if (kind === MatrixKind.Q4K) k.q4kMatmul(w, cols, rows, x, xStride, 0, n, y, yStride, 0, g0, g1);
        else if (kind === MatrixKind.Q6K) k.q6kMatmul(w, cols, rows, x, xStride, 0, n, y, yStride, 0, g0, g1);
        else k.iq4xsMatmul(w, cols, rows, x, xStride, 0, n, y, yStride, 0, g0, g1);
        return 0;
      }
      const [r0, r1] = share(rows, units, unit, 4);
      if (r0 >= r1) return 0;
      if (kind === MatrixKind.Block) k.blockMatmul(type, w, cols, x, xStride, 0, n, y, yStride, 0, r0, r1, threadScratch(participant));
      else k.floatMatmul(type, w, cols, rows, x, xStride, 0, n, y, yStride, r0, r1);
      return 0;
    }
    case Op.ExpertChunks: {
      // One unit = (task, run of chunks of neurons): each task's chunks are cut into `splits` runs.
      // Runs of chunks are whole multiples of `align` chunks (a block format's activation blocks).
      const [table, tasks, type, downType, quantUpstream, downKind, hidden, ffn, x, xStride, scratch, tokenStride, partials, sparse, splits, align] =
        [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!, a[10]!, a[11]!, a[12]!, a[13]!, a[14]!, a[15]!, a[16]!];
      const chunks = Math.ceil(ffn / DOWN_CHUNK);
      const [u0, u1] = share(tasks * splits, units, unit);
      let active = 0;
      for (let u = u0; u < u1; u++) {
        const [c0, c1] = share(chunks, splits, u % splits, align);
        if (c0 < c1) {
          active += k.expertChunks(table, Math.floor(u / splits), c0, c1, type, downType, quantUpstream, downKind, hidden, ffn, x, xStride,
            scratch, tokenStride, partials, threadScratch(participant), sparse);
        }
      }
      return active;
    }
    case Op.ExpertRows: {
      // One unit = (task, range of output rows).
      const [table, tasks, downType, quantUpstream, downKind, hidden, ffn, scratch, tokenStride, out, ranges] =
        [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!, a[10]!, a[11]!];
      const [u0, u1] = share(tasks * ranges, units, unit);
      for (let u = u0; u < u1; u++) {
        const [r0, r1] = share(hidden, ranges, u % ranges, 32);
        if (r0 < r1) {
          k.expertRows(table, Math.floor(u / ranges), downType, quantUpstream, downKind, hidden, ffn, scratch, tokenStride, out, threadScratch(participant), r0, r1);
        }
      }
      return 0;
    }
    case Op.RmsNorm: {
      const [src, weight, cols, eps, dst, rows] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!];
      const [r0, r1] = share(rows, units, unit);
      if (r0 < r1) k.rmsNorm(src, weight, cols, eps, dst, r0, r1);
      return 0;
    }
    case Op.Rope: {
      const [x, heads, headDim, cos, sin, n] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!];
      const [t0, t1] = share(n, units, unit);
      if (t0 < t1) k.rope(x, heads, headDim, cos, sin, t0, t1);
      return 0;
    }
    case Op.StoreKv: {
      const [kCache, vCache, half, capacity, width, keys, values, positions, n] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!];
      const [s0, s1] = share(capacity, units, unit);
      if (s0 < s1) k.storeKv(kCache, vCache, half, capacity, width, keys, values, positions, n, s0, s1);
      return 0;
    }
    case Op.AttendUnits: {
      // One unit = (KV head, block of `block` query tokens); the last blocks (the most work) first.
      const [keys, values, half, capacity, kvHeads, group, headDim, scale, window, q, positions, n, out, block] =
        [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!, a[10]!, a[11]!, a[12]!, a[13]!, a[14]!];
      const blocks = Math.ceil(n / block);
      const [u0, u1] = share(blocks * kvHeads, units, unit);
      const element = half ? 2 : 4;
      const qStride = 4 * kvHeads * group * headDim;
      for (let u = u0; u < u1; u++) {
        const h = u % kvHeads;
        const b = blocks - 1 - Math.floor(u / kvHeads);
        const head = 4 * h * group * headDim;
        k.attendBlock(keys + h * headDim * element, values + h * headDim * element, half, kvHeads * headDim * element, capacity,
          q + head, qStride, group, headDim, scale, positions, b * block, Math.min(n, (b + 1) * block), window, ATTENTION_CHUNK,
          threadScratch(participant), out + head);
      }
      return 0;
    }
    case Op.AttendChunks: {
      // One unit = (KV head, chunk) of a single query; summaries go to `partials` [head][chunk].
      const [keys, values, half, capacity, kvHeads, group, headDim, scale, window, q, position, chunks, partials] =
        [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, a[9]!, a[10]!, a[11]!, a[12]!, a[13]!];
      const [u0, u1] = share(kvHeads * chunks, units, unit);
      const element = half ? 2 : 4;
      const stride = partialBytes(group, headDim);
      for (let u = u0; u < u1;) {
        const h = Math.floor(u / chunks);
        const c0 = u % chunks;
        const c1 = Math.min(chunks, c0 + (u1 - u));
        k.attendChunks(keys + h * headDim * element, values + h * headDim * element, half, kvHeads * headDim * element, capacity,
          q + 4 * h * group * headDim, group, headDim, scale, position, window, ATTENTION_CHUNK, c0, c1, threadScratch(participant),
          partials + (h * chunks + c0) * stride);
        u += c1 - c0;
      }
      return 0;
    }
    case Op.FoldChunks: {
      const [kvHeads, group, headDim, chunks, partials, out] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!];
      const [h0, h1] = share(kvHeads, units, unit);
      for (let h = h0; h < h1; h++) {
        k.foldStored(partials + h * chunks * partialBytes(group, headDim), chunks, group, headDim, out + 4 * h * group * headDim);
      }
      return 0;
    }
    case Op.Add: {
      const [x, y, dst, count] = [a[1]!, a[2]!, a[3]!, a[4]!];
      const [i0, i1] = share(count, units, unit, 4);
      if (i0 < i1) k.add(x, y, dst, i0, i1);
      return 0;
    }
    case Op.MoeCombine: {
      const [y, weights, n, experts, hidden, residual, out] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!];
      const [t0, t1] = share(n, units, unit);
      if (t0 < t1) k.moeCombine(y, weights, experts, hidden, residual, out, t0, t1);
      return 0;
    }
    case Op.Dequantize: {
      const [type, src, cols, dst, n] = [a[1]!, a[2]!, a[3]!, a[4]!, a[5]!];
      const [r0, r1] = share(n, units, unit);
      if (r0 < r1) k.dequantizeRows(type, src, cols, dst, r0, r1, threadScratch(participant));
      return 0;
    }
    case Op.SumBlocks: {
      const [b0, b1] = share(a[2]!, units, unit);
      return b0 < b1 ? k.sumBlocks(a[1]!, b0, b1) : 0;
    }
  }
}
