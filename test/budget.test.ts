import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../src/gguf/types.js";
import { loadSmallThinker, LoadOptions } from "../src/model/load.js";
import { MemoryPlan } from "../src/model/plan.js";
import { ExpertStore } from "../src/experts/store.js";
import { ExpertCounters } from "../src/experts/source.js";
import { testKernels, randomTokens } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

/** 4 layers × 16 experts of 3 × 256×256 Q4_0: large enough that a budget caches only some. */
const path = () =>
  testModel({
    preset: "tiny", type: GgmlType.Q4_0,
    shape: { layers: 4, hidden: 256, expertFfn: 256, experts: 16, expertsUsed: 4 },
    routing: { hotFraction: 0.25, hotFrequency: 0.6 }, sparsity: 0.65,
  });

/** Fixed so the plans do not depend on the test process's own memory. */
const PROCESS_BYTES = 64 << 20;
const tokens = randomTokens(48, 1000, 11);

async function run(options: LoadOptions): Promise<{ logits: Float32Array[]; plan: MemoryPlan } & ExpertCounters> {
  let plan: MemoryPlan | undefined;
  const model = loadSmallThinker(path(), await testKernels(), { contextSize: 128, batchSize: 16, processBytes: PROCESS_BYTES, onPlan: (p) => (plan = p), ...options });
  const logits: Float32Array[] = [];
  const keep = (_: number, row: Float32Array) => logits.push(Float32Array.from(row));
  model.forward(tokens.slice(0, 24), { logits: "all", onLogits: keep });
  for (const token of tokens.slice(24)) model.forward([token], { logits: "last", onLogits: keep });
  const counters = { ...model.experts.counters };
  model.close();
  return { logits, plan: plan!, ...counters };
}

function identical(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length && a.every((row, i) => row.length === b[i]!.length && row.every((v, j) => Object.is(v, b[i]![j])));
}

test("logits are bit-identical under every budget, with sparsity and prefetch on or off", async () => {
  const resident = await run({});
  assert.ok(resident.plan.allResident);
  const minimum = resident.plan.minimum;
  const full = resident.plan.total;
  const budgets = [minimum, Math.round(minimum + (full - minimum) * 0.3), Math.round(minimum + (full - minimum) * 0.7), full];
  const cached: number[] = [];
  for (const memory of budgets) {
    for (const sparse of [true, false]) {
      for (const prefetch of [true, false]) {
        const result = await run({ memory, sparse, prefetch });
        cached.push(result.plan.cachedExperts);
        assert.ok(identical(result.logits, resident.logits), `budget ${memory} (${result.plan.cachedExperts} experts cached), sparse ${sparse}, prefetch ${prefetch}`);
      }
    }
  }
  assert.equal(Math.min(...cached), 8, "the minimum budget caches 2 × top-k experts");
  assert.ok(cached.some((c) => c > 8 && c < 64), "a budget in between streams some experts");
});

test("the store streams experts under a small budget and the frequency policy beats LRU on skewed routing", async () => {
  const resident = await run({});
  const memory = resident.plan.minimum + 20 * resident.plan.expertBytes;
  const frequency = await run({ memory, policy: "frequency" });
  const lru = await run({ memory, policy: "lru" });
  assert.ok(frequency.misses > 0 && lru.misses > 0);
  const rate = (r: { hits: number; misses: number }) => r.hits / (r.hits + r.misses);
  assert.ok(rate(frequency) > rate(lru), `hit rate frequency ${rate(frequency).toFixed(3)} vs lru ${rate(lru).toFixed(3)}`);
});

test("experts guessed for the next layers are read ahead and used, without changing a bit", async () => {
  const resident = await run({});
  const memory = resident.plan.minimum + 20 * resident.plan.expertBytes;
  const guessing = await run({ memory, lookahead: 2 });
  const plain = await run({ memory, lookahead: 0 });
  assert.ok(identical(guessing.logits, resident.logits) && identical(plain.logits, resident.logits));
  assert.equal(plain.predictedReads, 0);
  assert.ok(guessing.predictedReads > 0, "guesses were read");
  assert.ok(guessing.predictedUsed > 0 && guessing.predictedUsed <= guessing.predictedReads, `${guessing.predictedUsed} of ${guessing.predictedReads} guesses used`);
});

test("a budget below the minimum is refused, saying the minimum", async () => {
  const resident = await run({});
  await assert.rejects(
    async () => run({ memory: resident.plan.minimum - 1 }),
    (error: Error) => error instanceof RangeError && /too small .* needs at least/.test(error.message),
  );
});

test("the plan adds up and the store holds exactly the planned number of experts", async () => {
  const resident = await run({});
  const memory = resident.plan.minimum + 10 * resident.plan.expertBytes;
  let plan: MemoryPlan | undefined;
  const model = loadSmallThinker(path(), await testKernels(), { contextSize: 128, batchSize: 16, processBytes: PROCESS_BYTES, memory, onPlan: (p) => (plan = p) });
  try {
    assert.ok(model.experts instanceof ExpertStore);
    assert.ok(plan!.total <= memory);
    assert.equal(plan!.total, plan!.baseline + plan!.dense + plan!.kv + plan!.buffers + plan!.cachedExperts * plan!.expertBytes);
    const arenaBytes = model.arenas.reduce((sum, arena) => sum + arena.used, 0);
    assert.ok(arenaBytes <= plan!.total - plan!.baseline, `arenas use ${arenaBytes} bytes, plan allows ${plan!.total - plan!.baseline}`);
  } finally {
    model.close();
  }
});
