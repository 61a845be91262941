import { test } from "node:test";
import assert from "node:assert/strict";
import { GgufFile } from "../src/gguf/reader.js";
import { ggmlTypeName } from "../src/gguf/types.js";
import { LoadOptions, loadSmallThinker } from "../src/model/load.js";
import { MemoryPlan } from "../src/model/plan.js";
import { LLAMA_FTYPES } from "../src/bench/llama-direct.js";
import { randomTokens, testKernels } from "./helpers/compare.js";
import { llamaQuantizedModel } from "./helpers/models.js";

// Every type an expert can have, in files llama.cpp's quantizer made (--pure: every matrix of the
// file type's own type), and llama.cpp's default Q4_K_M mix (Q6_K downs on some layers only: experts
// of different sizes by layer): the logits are bit-identical whether the experts are all resident or
// streamed through the smallest cache the plan allows or a middling one, with sparsity on or off,
// with prefetch and lookahead on or off.

const PROCESS_BYTES = 64 << 20;
const tokens = randomTokens(20, 1000, 5);

interface Run {
  logits: Float32Array[];
  plan: MemoryPlan;
}

async function run(path: string, options: LoadOptions): Promise<Run> {
  let plan: MemoryPlan | undefined;
  const model = loadSmallThinker(path, await testKernels(), { contextSize: 64, batchSize: 8, processBytes: PROCESS_BYTES, kvType: "f32", onPlan: (p) => (plan = p), ...options });
  const logits: Float32Array[] = [];
  const keep = (_: number, row: Float32Array) => logits.push(Float32Array.from(row));
  try {
    model.forward(tokens.slice(0, 12), { logits: "all", onLogits: keep });
    for (const token of tokens.slice(12)) model.forward([token], { logits: "last", onLogits: keep });
  } finally {
    model.close();
  }
  return { logits, plan: plan! };
}

function identical(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length && a.every((row, i) => row.length === b[i]!.length && row.every((v, j) => Object.is(v, b[i]![j])));
}

function expertTypes(path: string): string {
  const file = GgufFile.open(path);
  try {
    const types = new Set(file.tensors.filter((t) => t.name.includes("_exps")).map((t) => ggmlTypeName(t.type)));
    return [...types].join("/");
  } finally {
    file.close();
  }
}

// One file type per distinct expert type (a pure file holds the type the file type is named for).
const PURE = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ2_XXS", "IQ2_XS", "IQ2_S",
  "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "Q1_0", "Q2_0"];
const files = [
  ...PURE.map((name) => ({ name: `${name} (pure)`, type: LLAMA_FTYPES.find((f) => f.name === name)!, pure: true })),
  { name: "Q4_K_M (llama.cpp's mix)", type: LLAMA_FTYPES.find((f) => f.name === "Q4_K_M")!, pure: false },
];

for (const { name, type, pure } of files) {
  test(`${name}: experts streamed under a budget give the resident logits bit for bit, sparse or dense, prefetch on or off`, async () => {
    const path = llamaQuantizedModel({ preset: "tiny-k", shape: { tiedOutput: false, experts: 32, expertsUsed: 4 } }, type, pure);
    const what = `${name}, experts ${expertTypes(path)}`;
    const resident = await run(path, {});
    assert.ok(resident.plan.allResident, what);
    const { total, totalExperts, expertBytes } = resident.plan;
    const { minimum } = (await run(path, { ioWorkers: 1, ioDepth: 2 })).plan;
    const middle = Math.round(minimum + (total - minimum) * 0.4);
    // One reader with little staging, so that even experts of 2 bits per weight outweigh the I/O buffers.
    const io = { ioWorkers: 1, ioDepth: 2 };
    const variants: LoadOptions[] = [
      { sparse: false },
      { memory: minimum, prefetch: true, lookahead: 2, ...io },
      { memory: minimum, sparse: false, prefetch: false, lookahead: 0, ...io },
      { memory: middle, policy: "lru", ...io },
    ];
    const cached: number[] = [];
    for (const options of variants) {
      const result = await run(path, options);
      cached.push(result.plan.cachedExperts);
      assert.ok(identical(result.logits, resident.logits), `${what}: ${JSON.stringify(options)} (${result.plan.cachedExperts} of ${totalExperts} experts of ${expertBytes} bytes cached)`);
    }
    assert.ok(cached.some((c) => c < totalExperts), `${what}: some budget streams experts (${cached.join(", ")})`);
  });
}
