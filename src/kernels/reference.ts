import { GgmlType, ggmlRowBytes } from "../gguf/types.js";
import { fp16ToFp32, fp32ToFp16 } from "../quant/half.js";
import { ACTIVATION_FORMATS, WEIGHT_FORMATS, activationRowBytes, weightFormat } from "../quant/formats/index.js";
import {
  ActivationFormat,
  AttentionParams,
  DOWN_CHUNK,
  DownLayout,
  downChunk,
  ExpertRef,
  ExpertTask,
  Kernels,
  KvLayerRef,
  MatrixProduct,
  MatrixRef,
  WeightKind,
  activationFormatFor,
} from "./api.js";
import { Arena, Ptr } from "./arena.js";
import type { PackerDescriptor } from "./packer.js";

const fround = Math.fround;

/**
 * The plain-TS definition of every kernel: single-threaded, straightforward loops over the
 * arena, weights kept in their GGUF layout. The WASM kernels are tested against it. Products go
 * through the format table (src/quant/formats): activations prepared in ggml's block layouts,
 * then each format's reference `dot`.
 */
export class ReferenceKernels implements Kernels {
  readonly name = "reference";
  readonly threads = 1;
  readonly reservedArenaBytes = 1 << 16;
  readonly packer: PackerDescriptor = { url: new URL("./reference-packer.js", import.meta.url).href, options: {}, scratchBytes: 0 };
  private arenaCount = 0;

  createArena(initialBytes = this.reservedArenaBytes): Arena {
    return new Arena(this.arenaCount++, this.reservedArenaBytes, initialBytes);
  }

  supports(type: GgmlType): boolean {
    return WEIGHT_FORMATS[type] !== undefined;
  }

  packedBytes(_kind: WeightKind, type: GgmlType, rows: number, cols: number): number {
    return ggmlRowBytes(type, cols) * rows;
  }

  pack(arena: Arena, kind: WeightKind, type: GgmlType, rows: number, cols: number, src: Ptr, dst: Ptr): void {
    const bytes = this.packedBytes(kind, type, rows, cols);
    arena.bytes.copyWithin(dst, src, src + bytes);
  }

  activationBytes(format: ActivationFormat, cols: number): number {
    return activationRowBytes(format, cols);
  }

  prepareActivations(arena: Arena, format: ActivationFormat, src: Ptr, rows: number, cols: number, dst: Ptr): void {
    const rowBytes = this.activationBytes(format, cols);
    const { quantize } = ACTIVATION_FORMATS[format];
    for (let r = 0; r < rows; r++) quantize(arena.f32(src + 4 * r * cols, cols), arena.bytes, dst + r * rowBytes);
  }

  /** One weight row · one prepared activation row. */
  private dot(arena: Arena, type: GgmlType, w: Ptr, x: Ptr, cols: number): number {
    return weightFormat(type).dot(arena.bytes, w, arena.bytes, x, cols);
  }

  matmul(w: MatrixRef, x: Ptr, n: number, y: Ptr): void {
    const arena = w.arena;
    const rowBytes = ggmlRowBytes(w.type, w.cols);
    const xBytes = this.activationBytes(activationFormatFor(w.type), w.cols);
    for (let t = 0; t < n; t++) {
      const out = arena.f32(y + 4 * t * w.rows, w.rows);
      for (let r = 0; r < w.rows; r++) out[r] = this.dot(arena, w.type, w.ptr + r * rowBytes, x + t * xBytes, w.cols);
    }
  }

  matmuls(products: readonly MatrixProduct[], n: number): void {
    for (const { w, x, y } of products) this.matmul(w, x, n, y);
  }

  expertScratchBytes(hidden: number, ffn: number, _tokens: number, _gateType: GgmlType, downType: GgmlType): number {
    // g (f32), h (f32), prepared h (for the down product)
    return 8 * ffn + this.activationBytes(activationFormatFor(downType), ffn) + 4 * hidden + 256;
  }

  expertsForward(tasks: readonly ExpertTask[], x: Ptr, out: Ptr, scratch: Ptr, sparse: boolean): number {
    let active = 0;
    for (const task of tasks) {
      const { gate, up } = task.expert;
      const arena = gate.arena;
      const ffn = gate.rows;
      const hidden = task.expert.down.hidden;
      const xBytes = this.activationBytes(activationFormatFor(gate.type), gate.cols);
      const gateRowBytes = ggmlRowBytes(gate.type, gate.cols);
      const upRowBytes = ggmlRowBytes(up.type, up.cols);
      const gPtr = scratch;
      const hPtr = scratch + 4 * ffn;
      const preparedH = scratch + 8 * ffn;
      const rows = arena.i32(task.rows, task.count).slice();
      const outRows = arena.i32(task.outRows, task.count).slice();
      for (let j = 0; j < task.count; j++) {
        const xRow = x + rows[j]! * xBytes;
        const g = arena.f32(gPtr, ffn);
        for (let i = 0; i < ffn; i++) g[i] = this.dot(arena, gate.type, gate.ptr + i * gateRowBytes, xRow, gate.cols);
        const h = arena.f32(hPtr, ffn);
        for (let i = 0; i < ffn; i++) {
          if (g[i]! > 0) active++;
          if (sparse && !(g[i]! > 0)) {
            h[i] = 0;
            continue;
          }
          const u = this.dot(arena, up.type, up.ptr + i * upRowBytes, xRow, up.cols);
          h[i] = fround(Math.max(g[i]!, 0) * u);
        }
        this.downProduct(arena, task.expert, hPtr, preparedH, arena.f32(out + 4 * outRows[j]! * hidden, hidden));
      }
    }
    return active;
  }

  /**
   * out = down · h in chunks of neurons: each chunk's partial sum from zero (as below), then
   * out = ((p0 + p1) + p2) + … Neurons with h = 0 contribute exact zeros, so skipping them (as the
   * WASM kernels do) changes nothing. Upstream chunks are downChunk(type) neurons (DOWN_CHUNK for
   * Q4_0, Q8_0 and floats; every other type's product is one dot per row), transposed ones
   * DOWN_CHUNK.
   */
  private downProduct(arena: Arena, expert: ExpertRef, hPtr: Ptr, preparedH: Ptr, out: Float32Array): void {
    const { down } = expert;
    const { hidden, ffn } = down;
    out.fill(0);
    if (down.layout === "upstream") {
      // llama.cpp's product: h prepared for the down matrix's type (quantized per activation
      // block), then per output row the product of its chunk of columns (a dot as `matmul` does).
      const format = activationFormatFor(down.type);
      this.prepareActivations(arena, format, hPtr, 1, ffn, preparedH);
      const rowBytes = ggmlRowBytes(down.type, ffn);
      const chunk = downChunk(down.type);
      for (let c = 0; c < ffn; c += chunk) {
        const cols = Math.min(chunk, ffn - c);
        const wOffset = ggmlRowBytes(down.type, c);
        const xOffset = this.activationBytes(format, c);
        for (let r = 0; r < hidden; r++) {
          out[r] = fround(out[r]! + this.dot(arena, down.type, down.ptr + r * rowBytes + wOffset, preparedH + xOffset, cols));
        }
      }
      return;
    }
    // Transposed: row i holds neuron i's contribution to every output; accumulate in neuron order.
    const h = arena.f32(hPtr, ffn);
    const rowBytes = ggmlRowBytes(down.type, hidden);
    const column = new Float32Array(hidden);
    const partial = new Float32Array(hidden);
    const dequantizeRow = weightFormat(down.type).dequantize;
    for (let c = 0; c < ffn; c += DOWN_CHUNK) {
      partial.fill(0);
      for (let i = c; i < Math.min(ffn, c + DOWN_CHUNK); i++) {
        const hi = h[i]!;
        if (hi === 0) continue;
        dequantizeRow(arena.bytes, down.ptr + i * rowBytes, column);
        for (let r = 0; r < hidden; r++) partial[r] = fround(partial[r]! + fround(hi * column[r]!));
      }
      for (let r = 0; r < hidden; r++) out[r] = fround(out[r]! + partial[r]!);
    }
  }

  rmsNorm(arena: Arena, src: Ptr, weight: Ptr, rows: number, cols: number, eps: number, dst: Ptr): void {
    const w = arena.f32(weight, cols);
    for (let r = 0; r < rows; r++) {
      const x = arena.f32(src + 4 * r * cols, cols);
      const out = arena.f32(dst + 4 * r * cols, cols);
      let sum = 0;
      for (let i = 0; i < cols; i++) sum += x[i]! * x[i]!;
      const mean = fround(sum / cols);
      const scale = fround(1 / fround(Math.sqrt(fround(mean + fround(eps)))));
      for (let i = 0; i < cols; i++) out[i] = fround(fround(x[i]! * scale) * w[i]!);
    }
  }

  rope(arena: Arena, x: Ptr, n: number, heads: number, headDim: number, cos: Ptr, sin: Ptr): void {
    const half = headDim / 2;
    for (let t = 0; t < n; t++) {
      const c = arena.f32(cos + 4 * t * half, half);
      const s = arena.f32(sin + 4 * t * half, half);
      for (let h = 0; h < heads; h++) {
        const v = arena.f32(x + 4 * (t * heads + h) * headDim, headDim);
        for (let i = 0; i < half; i++) {
          const x0 = v[i]!;
          const x1 = v[i + half]!;
          v[i] = fround(fround(x0 * c[i]!) - fround(x1 * s[i]!));
          v[i + half] = fround(fround(x0 * s[i]!) + fround(x1 * c[i]!));
        }
      }
    }
  }

  storeKv(cache: KvLayerRef, k: Ptr, v: Ptr, n: number, positions: Ptr): void {
    const { arena, kvHeads, headDim, capacity } = cache;
    const width = kvHeads * headDim;
    const pos = arena.i32(positions, n);
    const view = new DataView(arena.bytes.buffer);
    for (let t = 0; t < n; t++) {
      const slot = pos[t]! % capacity;
      const kSrc = arena.f32(k + 4 * t * width, width);
      const vSrc = arena.f32(v + 4 * t * width, width);
      if (cache.type === "f32") {
        arena.f32(cache.k + 4 * slot * width, width).set(kSrc);
        arena.f32(cache.v + 4 * slot * width, width).set(vSrc);
      } else {
        for (let i = 0; i < width; i++) {
          view.setUint16(cache.k + 2 * (slot * width + i), fp32ToFp16(kSrc[i]!), true);
          view.setUint16(cache.v + 2 * (slot * width + i), fp32ToFp16(vSrc[i]!), true);
        }
      }
    }
  }

  attention(cache: KvLayerRef, q: Ptr, n: number, positions: Ptr, params: AttentionParams, out: Ptr): void {
    const { arena, capacity, headDim } = cache;
    const { heads, kvHeads, window, scale } = params;
    const group = heads / kvHeads;
    const width = kvHeads * headDim;
    const pos = arena.i32(positions, n).slice();
    const view = new DataView(arena.bytes.buffer);
    const read = cache.type === "f32"
      ? (base: Ptr, index: number) => view.getFloat32(base + 4 * index, true)
      : (base: Ptr, index: number) => fp16ToFp32(view.getUint16(base + 2 * index, true));
    for (let t = 0; t < n; t++) {
      const p = pos[t]!;
      const first = Math.max(0, window === Infinity ? 0 : p - window + 1);
      if (p - first + 1 > capacity) throw new RangeError(`attention span ${p - first + 1} exceeds KV capacity ${capacity}`);
      const span = p - first + 1;
      const scores = new Float64Array(span);
      for (let h = 0; h < heads; h++) {
        const kvHead = Math.floor(h / group);
        const qv = arena.f32(q + 4 * (t * heads + h) * headDim, headDim);
        let max = -Infinity;
        for (let j = 0; j < span; j++) {
          const slot = (first + j) % capacity;
          let dot = 0;
          for (let i = 0; i < headDim; i++) dot += qv[i]! * read(cache.k, slot * width + kvHead * headDim + i);
          const s = fround(fround(dot) * scale);
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < span; j++) {
          const e = fround(Math.exp(fround(scores[j]! - max)));
          scores[j] = e;
          sum += e;
        }
        const inv = fround(1 / sum);
        const o = arena.f32(out + 4 * (t * heads + h) * headDim, headDim);
        const acc = new Float64Array(headDim);
        for (let j = 0; j < span; j++) {
          const pj = fround(scores[j]! * inv);
          const slot = (first + j) % capacity;
          for (let i = 0; i < headDim; i++) acc[i]! += pj * read(cache.v, slot * width + kvHead * headDim + i);
        }
        for (let i = 0; i < headDim; i++) o[i] = fround(acc[i]!);
      }
    }
  }

  add(arena: Arena, a: Ptr, b: Ptr, count: number, dst: Ptr): void {
    const x = arena.f32(a, count);
    const y = arena.f32(b, count);
    const out = arena.f32(dst, count);
    for (let i = 0; i < count; i++) out[i] = fround(x[i]! + y[i]!);
  }

  moeCombine(arena: Arena, y: Ptr, weights: Ptr, n: number, k: number, hidden: number, residual: Ptr, out: Ptr): void {
    const w = arena.f32(weights, n * k);
    for (let t = 0; t < n; t++) {
      const res = arena.f32(residual + 4 * t * hidden, hidden);
      const o = arena.f32(out + 4 * t * hidden, hidden);
      for (let i = 0; i < hidden; i++) {
        let sum = fround(arena.heapF32[(y >> 2) + (t * k) * hidden + i]! * w[t * k]!);
        for (let s = 1; s < k; s++) sum = fround(sum + fround(arena.heapF32[(y >> 2) + (t * k + s) * hidden + i]! * w[t * k + s]!));
        o[i] = fround(sum + res[i]!);
      }
    }
  }

  dequantizeRows(arena: Arena, type: GgmlType, src: Ptr, n: number, cols: number, dst: Ptr): void {
    const rowBytes = ggmlRowBytes(type, cols);
    const { dequantize } = weightFormat(type);
    for (let r = 0; r < n; r++) dequantize(arena.bytes, src + r * rowBytes, arena.f32(dst + 4 * r * cols, cols));
  }

  sumBlocks(arena: Arena, src: Ptr, blocks: number): number {
    const words = new Int32Array(arena.bytes.buffer, arena.bytes.byteOffset + src, blocks * 16);
    let sum = 0;
    for (let i = 0; i < words.length; i++) sum = (sum + words[i]!) | 0;
    return sum;
  }

  async dispose(): Promise<void> {}
}

export type { DownLayout };
