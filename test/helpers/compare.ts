import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Kernels } from "../../src/kernels/api.js";
import { createWasmKernels } from "../../src/kernels/wasm/kernels.js";
import { loadSmallThinker, LoadOptions } from "../../src/model/load.js";
import type { Token } from "node-llama-cpp";
import { getOracle } from "./oracle.js";
import { GgufFile } from "../../src/gguf/reader.js";
import { readConfig } from "../../src/model/config.js";

let kernelsPromise: Promise<Kernels> | undefined;

/** The kernels the engine runs on (shared by the tests of one file). */
export function testKernels(): Promise<Kernels> {
  kernelsPromise ??= createWasmKernels({ threads: 2 });
  return kernelsPromise;
}

/**
 * SMALLTHINKER_ORACLE_CACHE=DIR keeps llama.cpp's logits in DIR, keyed by the model file's bytes,
 * the tokens and node-llama-cpp's version, so a mutation run (npm run mutation) computes them once
 * instead of once per mutant. The tests themselves never set it: every suite run asks llama.cpp.
 */
const ORACLE_CACHE = process.env.SMALLTHINKER_ORACLE_CACHE;

/** llama.cpp's logits for every position of `tokens` (F32 KV cache, no flash attention). */
export async function oracleLogits(path: string, tokens: number[], vocab: number): Promise<Float32Array[]> {
  if (!ORACLE_CACHE) return computeOracleLogits(path, tokens, vocab);
  const entry = createRequire(import.meta.url).resolve("node-llama-cpp");
  const packageJson = join(entry.slice(0, entry.lastIndexOf("/node_modules/node-llama-cpp/") + "/node_modules/node-llama-cpp/".length), "package.json");
  const version = (JSON.parse(readFileSync(packageJson, "utf8")) as { version: string }).version;
  const key = createHash("sha256").update(readFileSync(path)).update(JSON.stringify([tokens, vocab, version])).digest("hex");
  const file = join(ORACLE_CACHE, `${key}.f32`);
  if (existsSync(file)) {
    const raw = readFileSync(file);
    const all = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
    return tokens.map((_, i) => all.slice(i * vocab, (i + 1) * vocab));
  }
  const rows = await computeOracleLogits(path, tokens, vocab);
  mkdirSync(ORACLE_CACHE, { recursive: true });
  const all = new Float32Array(rows.length * vocab);
  rows.forEach((row, i) => all.set(row, i * vocab));
  writeFileSync(`${file}.${process.pid}`, new Uint8Array(all.buffer));
  renameSync(`${file}.${process.pid}`, file);
  return rows;
}

async function computeOracleLogits(path: string, tokens: number[], vocab: number): Promise<Float32Array[]> {
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
    if (results.length !== tokens.length) throw new Error(`llama.cpp returned ${results.length} positions for ${tokens.length} tokens`);
    const rows = results.map((r, i) => {
      const row = new Float32Array(vocab);
      let filled = 0;
      for (const [token, value] of r?.next.logits ?? []) {
        row[token] = value;
        filled++;
      }
      if (filled !== vocab) throw new Error(`llama.cpp gave ${filled} of ${vocab} logits at position ${i}`);
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
  /** The median over positions of that per-position relative difference. */
  medianRelative: number;
  meanKl: number;
  /** The largest KL(theirs ‖ ours) of any one position. */
  maxKl: number;
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

/**
 * How closely `ours` follows `theirs`, position by position. Both must hold the same number of
 * rows, each the same non-zero length and finite: a missing or truncated side is an error, never a
 * vacuous agreement over zero positions.
 */
export function agreement(theirs: Float32Array[], ours: Float32Array[]): Agreement {
  if (theirs.length === 0) throw new Error("agreement: the reference has no rows");
  if (ours.length !== theirs.length) throw new Error(`agreement: ${ours.length} rows against the reference's ${theirs.length}`);
  let maxRelative = 0;
  let kl = 0;
  let maxKl = 0;
  let top1 = 0;
  const relative: number[] = [];
  theirs.forEach((ref, i) => {
    const mine = ours[i];
    if (!(mine instanceof Float32Array)) throw new Error(`agreement: row ${i} is missing`);
    if (ref.length === 0 || mine.length !== ref.length) throw new Error(`agreement: row ${i} has ${mine.length} values against the reference's ${ref.length}`);
    let scale = 0;
    let diff = 0;
    for (let v = 0; v < ref.length; v++) {
      if (!Number.isFinite(ref[v]!) || !Number.isFinite(mine[v]!)) throw new Error(`agreement: row ${i}, value ${v} is not finite (${ref[v]} against ${mine[v]})`);
      scale = Math.max(scale, Math.abs(ref[v]!));
      diff = Math.max(diff, Math.abs(ref[v]! - mine[v]!));
    }
    if (scale === 0) throw new Error(`agreement: the reference's row ${i} is all zeros`);
    maxRelative = Math.max(maxRelative, diff / scale);
    relative.push(diff / scale);
    const p = logSoftmax(ref);
    const q = logSoftmax(mine);
    let sum = 0;
    for (let v = 0; v < ref.length; v++) sum += Math.exp(p[v]!) * (p[v]! - q[v]!);
    kl += sum;
    maxKl = Math.max(maxKl, sum);
    if (argmax(ref) === argmax(mine)) top1++;
  });
  relative.sort((a, b) => a - b);
  const medianRelative = relative[Math.floor(relative.length / 2)]!;
  return { maxRelative, medianRelative, meanKl: kl / theirs.length, maxKl, top1: top1 / theirs.length, positions: theirs.length };
}

export function vocabOf(path: string): number {
  const file = GgufFile.open(path);
  try {
    return readConfig(file).vocabSize;
  } finally {
    file.close();
  }
}

/** Forced decoding of `positions` seeded tokens through llama.cpp and through the engine. */
export async function compareWithOracle(path: string, positions: number, options: LoadOptions = {}): Promise<Agreement> {
  const vocab = vocabOf(path);
  const tokens = randomTokens(positions, vocab);
  const theirs = await oracleLogits(path, tokens, vocab);
  const ours = await engineLogits(path, tokens, options);
  const result = agreement(theirs, ours);
  if (result.positions !== positions) throw new Error(`compared ${result.positions} positions, asked for ${positions}`);
  return result;
}

/** A seeded sequence of token ids below `vocab` (forced decoding input). */
export function randomTokens(count: number, vocab: number, seed = 7): number[] {
  let s = seed >>> 0;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % vocab;
  });
}
