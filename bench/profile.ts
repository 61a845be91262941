import { parseArgs } from "node:util";
import { Kernels } from "../src/kernels/api.js";
import { Op } from "../src/kernels/wasm/jobs.js";
import { createWasmKernels } from "../src/kernels/wasm/kernels.js";
import { loadSmallThinker } from "../src/model/load.js";

// Where the forward pass spends its time, per kernel: the model runs on the WASM kernels wrapped in
// a timing proxy (each call is synchronous, so its wall time is the kernel's, all threads included),
// over a prefill of --prompt tokens and --decode single-token steps after it. "(other JS)" is the
// rest: routing, expert bookkeeping, buffer handling. Indented "job" lines are the pool jobs the
// kernel calls made (included in the kernels' times). Rounds alternate prefill and decode; medians
// over rounds are shown (the machine may be shared).
//   node dist/bench/profile.js -m model.gguf [--threads 2] [--prompt 512] [--decode 64] [--rounds 3]

const { values } = parseArgs({
  options: {
    model: { type: "string", short: "m" },
    threads: { type: "string", default: "2" },
    prompt: { type: "string", default: "512" },
    decode: { type: "string", default: "64" },
    rounds: { type: "string", default: "3" },
    batch: { type: "string", default: "256" },
  },
});
if (!values.model) throw new Error("usage: node dist/bench/profile.js -m model.gguf [--threads N] [--prompt N] [--decode N] [--rounds N]");
const threads = Number(values.threads);
const promptTokens = Number(values.prompt);
const decodeTokens = Number(values.decode);
const rounds = Number(values.rounds);

type Times = Map<string, { ms: number; calls: number }>;
let times: Times = new Map();

/** A key per kernel, matrix products by shape. */
function keyOf(name: string, args: unknown[]): string {
  if (name === "matmul") {
    const w = args[0] as { rows: number; cols: number };
    return `matmul ${w.rows}×${w.cols}`;
  }
  return name;
}

const UNTIMED = new Set(["createArena", "packedBytes", "activationBytes", "expertScratchBytes", "pack", "dispose"]);

function timed(kernels: Kernels): Kernels {
  return new Proxy(kernels, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      if (typeof prop !== "string" || UNTIMED.has(prop)) return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        const start = performance.now();
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        const key = keyOf(prop, args);
        const entry = times.get(key) ?? { ms: 0, calls: 0 };
        entry.ms += performance.now() - start;
        entry.calls++;
        times.set(key, entry);
        return result;
      };
    },
  });
}

const kernels = await createWasmKernels({ threads });
// Pool jobs by op as well (what a kernel call turns into).
const opNames = Object.fromEntries(Object.entries(Op).map(([name, code]) => [code, name]));
const pool = (kernels as unknown as { pool: { run: (op: number, args: ArrayLike<number>, units?: number) => number } }).pool;
const run = pool.run.bind(pool);
pool.run = (op, args, units) => {
  const start = performance.now();
  const result = run(op, args, units);
  const key = `  job ${opNames[op] ?? op}${(units ?? 1) > 1 ? "" : " (inline)"}`;
  const entry = times.get(key) ?? { ms: 0, calls: 0 };
  entry.ms += performance.now() - start;
  entry.calls++;
  times.set(key, entry);
  return result;
};
const model = loadSmallThinker(values.model, timed(kernels), { contextSize: promptTokens + decodeTokens + 16, batchSize: Number(values.batch) });
const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 13) % Math.min(150000, model.config.vocabSize));

interface Phase {
  total: number;
  times: Times;
}
const phases: { prefill: Phase[]; decode: Phase[] } = { prefill: [], decode: [] };
const argmax = (logits: Float32Array) => {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
};
for (let round = 0; round < rounds; round++) {
  model.kv.truncate(0);
  let logits: Float32Array = new Float32Array(0);
  const keep = (_: number, row: Float32Array) => (logits = row);
  times = new Map();
  let start = performance.now();
  model.forward(prompt, { logits: "last", onLogits: keep });
  phases.prefill.push({ total: performance.now() - start, times });
  times = new Map();
  start = performance.now();
  for (let i = 0; i < decodeTokens; i++) model.forward([argmax(logits)], { logits: "last", onLogits: keep });
  phases.decode.push({ total: performance.now() - start, times });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function show(label: string, list: Phase[], tokens: number): void {
  const total = median(list.map((p) => p.total)) / tokens;
  console.log(`${label}: ${total.toFixed(2)} ms per token (${(1000 / total).toFixed(1)} tok/s), median of ${list.length}`);
  const keys = [...new Set(list.flatMap((p) => [...p.times.keys()]))];
  const rows = keys.map((key) => ({
    key,
    ms: median(list.map((p) => p.times.get(key)?.ms ?? 0)) / tokens,
    calls: median(list.map((p) => p.times.get(key)?.calls ?? 0)),
  })).sort((a, b) => b.ms - a.ms);
  for (const row of rows) console.log(`  ${row.key.padEnd(28)} ${row.ms.toFixed(3).padStart(8)} ms/token  ${(row.calls / tokens).toFixed(1).padStart(7)} calls/token`);
  const other = median(list.map((p) => p.total - [...p.times].filter(([key]) => !key.startsWith(" ")).reduce((sum, [, t]) => sum + t.ms, 0))) / tokens;
  console.log(`  ${"(other JS)".padEnd(28)} ${other.toFixed(3).padStart(8)} ms/token`);
}

console.log(`${values.model}: ${threads} thread${threads > 1 ? "s" : ""}, ${kernels.name}, prefill ${promptTokens} tokens, decode ${decodeTokens} tokens, ${rounds} rounds`);
show(`prefill`, phases.prefill, promptTokens);
show(`decode`, phases.decode, decodeTokens);
const { gateActive, gateTotal } = model.stats;
console.log(`gate > 0 for ${((100 * gateActive) / Math.max(1, gateTotal)).toFixed(1)}% of (token, neuron) pairs`);
model.close();
await kernels.dispose();
