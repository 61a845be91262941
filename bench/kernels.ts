import { availableParallelism, cpus } from "node:os";
import { GgmlType, ggmlRowBytes } from "../src/gguf/types.js";
import { ExpertRef, ExpertTask, Kernels, KvLayerRef, MatrixRef } from "../src/kernels/api.js";
import { Arena, Ptr } from "../src/kernels/arena.js";
import { ReferenceKernels } from "../src/kernels/reference.js";
import { createWasmKernels } from "../src/kernels/wasm/kernels.js";
import { quantize } from "../src/quant/index.js";

// Kernel throughput on 4B-shaped work, in GB/s of (file-sized) weights: a Q4_0 expert matrix
// (768×1536) hot in cache, ~200 distinct ones cycled through DRAM (decode-like), the output head,
// the fused sparse expert at ~40% active neurons, a 64-row GEMM and decode attention at 4K context;
// WASM at 1 and 2 threads against the plain-TS reference. Medians of interleaved rounds.
//   node dist/bench/kernels.js [rounds] [case name filter]

const ROUNDS = Math.max(7, Number(process.argv[2] ?? 9));
const FILTER = process.argv[3] ?? "";
const HIDDEN = 1536;
const FFN = 768;
const MATRICES = 200;
const HEAD_ROWS = 151936;

function randoms(count: number, seed: number, offset = 0): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2 ** 32 - 0.5 + offset;
  }
  return out;
}

function q4Bytes(rows: number, cols: number, seed: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(ggmlRowBytes(GgmlType.Q4_0, cols) * rows);
  const chunk = 4096;
  for (let r = 0; r < rows; r += chunk) {
    const count = Math.min(chunk, rows - r);
    quantize(GgmlType.Q4_0, randoms(count * cols, seed + r, offset), bytes, r * ggmlRowBytes(GgmlType.Q4_0, cols));
  }
  return bytes;
}

class Bench {
  readonly arena: Arena;
  constructor(readonly kernels: Kernels, bytes: number) {
    this.arena = kernels.createArena(bytes);
  }
  put(data: Uint8Array | Float32Array | Int32Array): Ptr {
    const ptr = this.arena.alloc(data.byteLength);
    this.arena.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ptr);
    return ptr;
  }
  matrix(raw: Uint8Array, rows: number, cols: number): MatrixRef {
    const src = this.put(raw);
    const ptr = this.arena.alloc(this.kernels.packedBytes("matrix", GgmlType.Q4_0, rows, cols));
    this.kernels.pack(this.arena, "matrix", GgmlType.Q4_0, rows, cols, src, ptr);
    return { arena: this.arena, ptr, type: GgmlType.Q4_0, rows, cols };
  }
  q8(x: Float32Array, rows: number, cols: number): Ptr {
    const src = this.put(x);
    const dst = this.arena.alloc(rows * this.kernels.activationBytes("q8_0", cols));
    this.kernels.prepareActivations(this.arena, "q8_0", src, rows, cols, dst);
    return dst;
  }
}

interface Case {
  name: string;
  /** Bytes of weights one call processes (× rows for a GEMM). */
  bytes: number;
  /** Calls per timing. */
  calls: number;
  run: (call: number) => void;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

interface Timing {
  /** Median over rounds of a round's mean time per call (ms): what a stream of calls gets. */
  roundMean: number;
  /** Median single call (ms): the kernel itself, without the stalls other processes cause. */
  call: number;
}

function measure(cases: Case[], rounds: number): Map<string, Timing> {
  const means = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const calls = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (const c of cases) for (let i = 0; i < c.calls; i++) c.run(i);
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      const start = performance.now();
      let last = start;
      for (let i = 0; i < c.calls; i++) {
        c.run(i);
        const now = performance.now();
        calls.get(c.name)!.push(now - last);
        last = now;
      }
      means.get(c.name)!.push((last - start) / c.calls);
    }
  }
  return new Map(cases.map((c) => [c.name, { roundMean: median(means.get(c.name)!), call: median(calls.get(c.name)!) }]));
}

async function main(): Promise<void> {
  const expertRaw = q4Bytes(FFN, HIDDEN, 1);
  const matrices = Array.from({ length: MATRICES }, (_, i) => q4Bytes(FFN, HIDDEN, 100 + i));
  const headRaw = q4Bytes(HEAD_ROWS, HIDDEN, 7);
  // Gate rows lean negative against a positive-leaning input, so that about 40% of g is > 0.
  const gateRaw = q4Bytes(FFN, HIDDEN, 3, -0.011);
  const upRaw = q4Bytes(FFN, HIDDEN, 4);
  const downRaw = q4Bytes(HIDDEN, FFN, 5);
  const x = randoms(64 * HIDDEN, 9, 0.05);
  const matrixBytes = expertRaw.length;
  const cases: Case[] = [];

  const kernelsList: Kernels[] = [await createWasmKernels({ threads: 1 }), await createWasmKernels({ threads: 2 }), new ReferenceKernels()];
  for (const kernels of kernelsList) {
    const label = `${kernels.name} ×${kernels.threads}`;
    const reference = kernels instanceof ReferenceKernels;
    const b = new Bench(kernels, (reference ? 96 : 720) << 20);
    const one = b.matrix(expertRaw, FFN, HIDDEN);
    const xq = b.q8(x, 64, HIDDEN);
    const y = b.arena.alloc(4 * 64 * HEAD_ROWS);
    cases.push({ name: `${label}: Q4_0 768×1536 matvec`, bytes: matrixBytes, calls: reference ? 2 : 200, run: () => kernels.matmul(one, xq, 1, y) });
    if (!reference) {
      const many = matrices.map((raw) => b.matrix(raw, FFN, HIDDEN));
      cases.push({ name: `${label}: Q4_0 768×1536 × ${MATRICES} distinct`, bytes: matrixBytes, calls: MATRICES, run: (i) => kernels.matmul(many[i]!, xq, 1, y) });
      const head = b.matrix(headRaw, HEAD_ROWS, HIDDEN);
      cases.push({ name: `${label}: Q4_0 151936×1536 output head`, bytes: headRaw.length, calls: 3, run: () => kernels.matmul(head, xq, 1, y) });
      cases.push({ name: `${label}: Q4_0 768×1536 GEMM, 64 rows`, bytes: matrixBytes * 64, calls: 5, run: () => kernels.matmul(one, xq, 64, y) });
    }
    const down = (() => {
      const src = b.put(downRaw);
      const ptr = b.arena.alloc(kernels.packedBytes("expert-down", GgmlType.Q4_0, HIDDEN, FFN, "upstream"));
      kernels.pack(b.arena, "expert-down", GgmlType.Q4_0, HIDDEN, FFN, src, ptr, "upstream");
      return { arena: b.arena, ptr, type: GgmlType.Q4_0, hidden: HIDDEN, ffn: FFN, layout: "upstream" as const };
    })();
    const expert: ExpertRef = { gate: b.matrix(gateRaw, FFN, HIDDEN), up: b.matrix(upRaw, FFN, HIDDEN), down };
    const scratch = b.arena.alloc(kernels.expertScratchBytes(HIDDEN, FFN, 256, GgmlType.Q4_0, GgmlType.Q4_0));
    const rowsList = b.put(Int32Array.from({ length: 64 }, (_, i) => i));
    const task = (e: ExpertRef, count: number): ExpertTask => ({ expert: e, rows: rowsList, outRows: rowsList, count });
    const active = kernels.expertsForward([task(expert, 1)], xq, y, scratch, true);
    const expertBytes = 3 * matrixBytes;
    for (const sparse of reference ? [true] : [true, false]) {
      cases.push({ name: `${label}: expert, ${sparse ? "sparse" : "dense"} (${((100 * active) / FFN).toFixed(0)}% active)`, bytes: expertBytes,
        calls: reference ? 1 : 100, run: () => kernels.expertsForward([task(expert, 1)], xq, y, scratch, sparse) });
    }
    if (reference) break;
    cases.push({ name: `${label}: expert, sparse, 64 tokens`, bytes: expertBytes * 64, calls: 3, run: () => kernels.expertsForward([task(expert, 64)], xq, y, scratch, true) });
    // Decode-like: a layer's 4 experts out of 64 distinct ones (cycled through DRAM), one call.
    const pool = Array.from({ length: 64 }, (_, i) => {
      const d = (() => {
        const src = b.put(q4Bytes(HIDDEN, FFN, 500 + i));
        const ptr = b.arena.alloc(kernels.packedBytes("expert-down", GgmlType.Q4_0, HIDDEN, FFN, "upstream"));
        kernels.pack(b.arena, "expert-down", GgmlType.Q4_0, HIDDEN, FFN, src, ptr, "upstream");
        return { arena: b.arena, ptr, type: GgmlType.Q4_0, hidden: HIDDEN, ffn: FFN, layout: "upstream" as const };
      })();
      return { gate: b.matrix(q4Bytes(FFN, HIDDEN, 300 + i, -0.011), FFN, HIDDEN), up: b.matrix(q4Bytes(FFN, HIDDEN, 400 + i), FFN, HIDDEN), down: d };
    });
    const outRows = [0, 1, 2, 3].map((i) => b.put(new Int32Array([i])));
    cases.push({ name: `${label}: 4 experts × 1 token, 64 distinct`, bytes: 4 * expertBytes, calls: 16,
      run: (call) => kernels.expertsForward([0, 1, 2, 3].map((i) => ({ expert: pool[(4 * call + i) % 64]!, rows: rowsList, outRows: outRows[i]!, count: 1 })), xq, y, scratch, true) });
    const [capacity, kvHeads, headDim, heads] = [4096, 2, 128, 12];
    const kvBytes = 2 * capacity * kvHeads * headDim;
    const cache: KvLayerRef = { arena: b.arena, k: b.arena.alloc(kvBytes), v: b.arena.alloc(kvBytes), type: "f16", capacity, kvHeads, headDim };
    const keys = b.put(randoms(4096 * kvHeads * headDim, 11));
    kernels.storeKv(cache, keys, keys, 4096, b.put(Int32Array.from({ length: 4096 }, (_, i) => i)));
    const position = b.put(new Int32Array([4095]));
    const q = b.put(randoms(heads * headDim, 12));
    cases.push({ name: `${label}: attention decode, f16 KV, 4096 positions`, bytes: 2 * kvBytes, calls: 50,
      run: () => kernels.attention(cache, q, 1, position, { heads, kvHeads, headDim, window: Infinity, scale: 0.088 }, y) });
  }

  const selected = cases.filter((c) => c.name.includes(FILTER));
  const results = measure(selected, ROUNDS);
  console.log(`${cpus()[0]?.model ?? "cpu"}, ${availableParallelism()} threads available, Node ${process.version}`);
  console.log(`kernel benchmarks, ${ROUNDS} interleaved rounds; GB/s of file-sized weights (× rows for a GEMM)`);
  console.log(`${"".padEnd(64)} ${"median of round means".padStart(26)}   ${"median call".padStart(21)}`);
  const show = (ms: number, bytes: number) => `${(bytes / ms / 1e6).toFixed(2).padStart(7)} GB/s ${(ms * 1e3).toFixed(1).padStart(9)} µs`;
  for (const c of selected) {
    const { roundMean, call } = results.get(c.name)!;
    console.log(`${c.name.padEnd(64)} ${show(roundMean, c.bytes)}   ${show(call, c.bytes)}`);
  }
  for (const kernels of kernelsList) await kernels.dispose();
}

await main();
