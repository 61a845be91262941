import { Kernels } from "../../src/kernels/api.js";
import { createWasmKernels } from "../../src/kernels/wasm/kernels.js";
import { loadSmallThinker, LoadOptions } from "../../src/model/load.js";
import type { Token } from "node-llama-cpp";
import { getOracle } from "./oracle.js";

let kernelsPromise: Promise<Kernels> | undefined;

/** The kernels the engine runs on (shared by the tests of one file). */
export function testKernels(): Promise<Kernels> {
  kernelsPromise ??= createWasmKernels({ threads: 2 });
  return kernelsPromise;
}

/** llama.cpp's logits for every position of `tokens` (F32 KV cache, no flash attention). */
export async function oracleLogits(path: string, tokens: number[], vocab: number): Promise<Float32Array[]> {
  const llama = await getOracle();
  const model = await llama.loadModel({ modelPath: path });
  try {
    const context = await model.createContext({
      contextSize: Math.max(256, tokens.length + 8),
      batchSize: 512,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      flashAttention: false,
      threads: 2,
    });
    const results = await context.getSequence().controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { logits: true } }]));
    const rows = results.map((r) => {
      const row = new Float32Array(vocab);
      for (const [token, value] of r?.next.logits ?? []) row[token] = value;
      return row;
    });
    await context.dispose();
    return rows;
  } finally {
    await model.dispose();
  }
}

/** Our logits for every position of `tokens`. */
export async function engineLogits(path: string, tokens: number[], options: LoadOptions = {}): Promise<Float32Array[]> {
  const model = loadSmallThinker(path, await testKernels(), { kvType: "f32", contextSize: tokens.length + 8, ...options });
  const rows: Float32Array[] = [];
  model.forward(tokens, { logits: "all", onLogits: (i, logits) => (rows[i] = Float32Array.from(logits)) });
  model.close();
  return rows;
}

export interface Agreement {
  /** Largest |ours − theirs| over a position's logits, divided by that position's largest |theirs|. */
  maxRelative: number;
  meanKl: number;
  top1: number;
  positions: number;
}

function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const log = Math.log(sum) + max;
  return Float64Array.from(logits, (v) => v - log);
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export function agreement(theirs: Float32Array[], ours: Float32Array[]): Agreement {
  let maxRelative = 0;
  let kl = 0;
  let top1 = 0;
  theirs.forEach((ref, i) => {
    const mine = ours[i]!;
    let scale = 0;
    let diff = 0;
    for (let v = 0; v < ref.length; v++) {
      scale = Math.max(scale, Math.abs(ref[v]!));
      diff = Math.max(diff, Math.abs(ref[v]! - mine[v]!));
    }
    maxRelative = Math.max(maxRelative, diff / scale);
    const p = logSoftmax(ref);
    const q = logSoftmax(mine);
    let sum = 0;
    for (let v = 0; v < ref.length; v++) sum += Math.exp(p[v]!) * (p[v]! - q[v]!);
    kl += sum;
    if (argmax(ref) === argmax(mine)) top1++;
  });
  return { maxRelative, meanKl: kl / theirs.length, top1: top1 / theirs.length, positions: theirs.length };
}

/** A seeded sequence of token ids below `vocab` (forced decoding input). */
export function randomTokens(count: number, vocab: number, seed = 7): number[] {
  let s = seed >>> 0;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % vocab;
  });
}
