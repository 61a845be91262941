import { test } from "node:test";
import assert from "node:assert/strict";
import { GgufFile } from "../src/gguf/reader.js";
import { GgmlType } from "../src/gguf/types.js";
import { LoadOptions, loadSmallThinker } from "../src/model/load.js";
import { MemoryPlan } from "../src/model/plan.js";
import { agreement, engineLogits, oracleLogits, randomTokens, testKernels } from "./helpers/compare.js";
import { TestModelSpec, testModel } from "./helpers/models.js";

// Models split as llama-gguf-split splits them, loaded from their first part: every tensor read
// from the part that holds it, by the dense weight loader, the token-embedding reads and the
// expert store's I/O threads.

function partsOf(path: string, names: (name: string) => boolean): number[] {
  const file = GgufFile.open(path);
  try {
    return [...new Set(file.tensors.filter((t) => names(t.name)).map((t) => t.part))].sort();
  } finally {
    file.close();
  }
}

function identical(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length && a.every((row, i) => row.length === b[i]!.length && row.every((v, j) => Object.is(v, b[i]![j])));
}

const tiny: TestModelSpec = { preset: "tiny", shape: { tiedOutput: false } };

test("a model split in 3 gives llama.cpp's logits (which loads it from its first part too) and ours on the unsplit file bit for bit", async () => {
  const whole = testModel(tiny);
  const split = testModel({ ...tiny, file: { split: 3 } });
  assert.match(split, /-00001-of-00003\.gguf$/);
  // The embeddings in the first part, the output head in the last, the layers in between.
  assert.deepEqual(partsOf(split, (n) => n === "token_embd.weight"), [0]);
  assert.deepEqual(partsOf(split, (n) => n === "output.weight"), [2]);
  assert.deepEqual(partsOf(split, (n) => n.startsWith("blk.")), [0, 1, 2]);
  const tokens = randomTokens(96, 1000);
  const ours = await engineLogits(split, tokens);
  assert.ok(identical(ours, await engineLogits(whole, tokens)), "split and whole differ");
  const result = agreement(await oracleLogits(split, tokens, 1261), ours);
  assert.equal(result.positions, tokens.length);
  assert.ok(result.maxRelative <= 1e-4, `max relative difference ${result.maxRelative}`);
});

/** Large enough that a budget caches only some experts (as test/budget.test.ts). */
const streamed: TestModelSpec = {
  preset: "tiny", type: GgmlType.Q4_0,
  shape: { layers: 4, hidden: 256, expertFfn: 256, experts: 16, expertsUsed: 4 },
  routing: { hotFraction: 0.25, hotFrequency: 0.6 }, sparsity: 0.65,
};

test("under a memory budget, experts streamed from the parts that hold them give the unsplit file's logits bit for bit", async () => {
  const whole = testModel(streamed);
  const split = testModel({ ...streamed, file: { split: 4 } });
  const expertParts = partsOf(split, (n) => n.includes("_exps."));
  assert.ok(expertParts.length >= 3, `experts in parts ${expertParts}`);
  const tokens = randomTokens(40, 1000, 11);
  const run = async (path: string, options: LoadOptions) => {
    let plan: MemoryPlan | undefined;
    const model = loadSmallThinker(path, await testKernels(), { contextSize: 128, batchSize: 16, processBytes: 64 << 20, onPlan: (p) => (plan = p), ...options });
    const logits: Float32Array[] = [];
    const keep = (_: number, row: Float32Array) => logits.push(Float32Array.from(row));
    try {
      model.forward(tokens.slice(0, 16), { logits: "all", onLogits: keep });
      for (const token of tokens.slice(16)) model.forward([token], { logits: "last", onLogits: keep });
      return { logits, plan: plan!, misses: model.experts.counters.misses, bytesRead: model.experts.counters.bytesRead };
    } finally {
      model.close();
    }
  };
  const resident = await run(whole, {});
  assert.ok(resident.plan.allResident);
  const memory = resident.plan.minimum + 10 * resident.plan.expertBytes;
  for (const prefetch of [true, false]) {
    const budgeted = await run(split, { memory, prefetch, lookahead: prefetch ? 2 : 0 });
    assert.ok(!budgeted.plan.allResident && budgeted.misses > 0 && budgeted.bytesRead > 0, `prefetch ${prefetch}: ${budgeted.misses} experts read`);
    assert.ok(identical(budgeted.logits, resident.logits), `prefetch ${prefetch}: the split model streamed differs from the whole one resident`);
  }
  assert.ok(identical((await run(split, {})).logits, resident.logits), "the split model resident differs");
});
