import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../src/gguf/types.js";
import { KvCache } from "../src/kv/cache.js";
import { loadSmallThinker, LoadOptions } from "../src/model/load.js";
import { SequenceChunk, SmallThinkerModel } from "../src/model/model.js";
import { defaultParallel } from "../src/model/plan.js";
import { randomTokens, testKernels } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

/**
 * A batched forward pass gives every sequence the same bits as evaluating it alone: each sequence
 * keeps its own positions, KV cache and attention, and no row's arithmetic depends on the rows
 * beside it.
 */

const BATCH = 16;
const SEQUENCES = 3;

/** A seeded generator of whole numbers below n. */
function random(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

function load(path: string, options: LoadOptions = {}): Promise<SmallThinkerModel> {
  return testKernels().then((kernels) => loadSmallThinker(path, kernels, { contextSize: 256, batchSize: BATCH, parallel: SEQUENCES, ...options }));
}

/** Every position's logits of `tokens` evaluated alone in the first sequence, a batch at a time. */
function alone(model: SmallThinkerModel, tokens: number[]): Float32Array[] {
  model.kv.truncate(0);
  const rows: Float32Array[] = [];
  model.forward(tokens, { logits: "all", onLogits: (i, logits) => (rows[i] = Float32Array.from(logits)) });
  return rows;
}

/**
 * Every position's logits of each sequence, evaluated together in steps: each step gives every
 * unfinished sequence a random share of the batch (one token, as in decoding, or a run of prompt
 * tokens), and with `abandon` some steps are cut off between layers first and then run again.
 */
function together(model: SmallThinkerModel, sequences: number[][], seed: number, abandon: boolean): Float32Array[][] {
  const pick = random(seed);
  const caches = model.kvs;
  for (const kv of caches) kv.truncate(0);
  const rows: Float32Array[][] = sequences.map(() => []);
  const done = sequences.map(() => 0);
  let steps = 0;
  while (done.some((d, s) => d < sequences[s]!.length)) {
    let room = BATCH;
    const chunks: SequenceChunk[] = [];
    for (const s of [...sequences.keys()].sort(() => pick(3) - 1)) {
      const left = sequences[s]!.length - done[s]!;
      if (left === 0 || room === 0) continue;
      // mostly single tokens (decode steps), sometimes a run (a prompt chunk)
      const count = Math.min(left, room, pick(3) === 0 ? 1 + pick(room) : 1);
      room -= count;
      const start = done[s]!;
      chunks.push({ kv: caches[s]!, tokens: sequences[s]!.slice(start, start + count), logits: "all", onLogits: (i, logits) => (rows[s]![start + i] = Float32Array.from(logits)) });
    }
    if (abandon && pick(4) === 0) {
      const cutAt = pick(2 * model.config.layers);
      let asked = 0;
      assert.equal(model.forwardBatch(chunks, () => asked++ === cutAt), false);
    }
    assert.ok(model.forwardBatch(chunks));
    for (const chunk of chunks) done[caches.indexOf(chunk.kv as KvCache)]! += chunk.tokens.length;
    steps++;
  }
  assert.ok(steps > Math.max(...sequences.map((s) => s.length)) / BATCH, "the sequences shared steps");
  return rows;
}

function assertBits(actual: Float32Array[], expected: Float32Array[], context: string): void {
  assert.equal(actual.length, expected.length, context);
  expected.forEach((row, position) => {
    const mine = actual[position]!;
    for (let v = 0; v < row.length; v++) {
      if (!Object.is(mine[v], row[v])) assert.fail(`${context}: position ${position}, logit ${v}: ${mine[v]} batched vs ${row[v]} alone`);
    }
  });
}

const MODELS: { name: string; path: () => string; options?: LoadOptions }[] = [
  { name: "F32 tiny model, f32 KV cache", path: () => testModel({ preset: "tiny" }), options: { kvType: "f32" } },
  // window 24 < context: the sliding-window rings wrap (capacity window + batch - 1)
  { name: "F32 sliding-window model (rings that wrap), f16 KV cache", path: () => testModel({ preset: "tiny-swa", shape: { slidingWindow: 24 } }) },
  {
    name: "Q4_0 model with sparse experts under a memory budget",
    path: () => testModel({ preset: "tiny", type: GgmlType.Q4_0, shape: { layers: 4, hidden: 256, expertFfn: 256, experts: 16, expertsUsed: 4 }, routing: { hotFraction: 0.25, hotFrequency: 0.6 }, sparsity: 0.65 }),
    options: { memory: 0 },
  },
];

for (const { name, path, options = {} } of MODELS) {
  test(`${name}: sequences evaluated together get the bits they get alone`, async () => {
    const budgeted = options.memory === 0;
    const processBytes = 64 << 20;
    let model = await load(path(), budgeted ? { processBytes } : options);
    if (budgeted) {
      // the smallest budget that works: experts stream from the file, cached a few at a time
      const minimum = model.plan.minimum;
      model.close();
      model = await load(path(), { memory: minimum, processBytes });
      assert.equal(model.plan.allResident, false);
    }
    try {
      const vocab = model.config.vocabSize;
      const sequences = [randomTokens(70, vocab, 1), randomTokens(45, vocab, 2), randomTokens(90, vocab, 3)];
      const expected = sequences.map((tokens) => alone(model, tokens));
      for (const [seed, abandon] of [[1, false], [2, true]] as const) {
        const rows = together(model, sequences, seed, abandon);
        sequences.forEach((_, s) => assertBits(rows[s]!, expected[s]!, `seed ${seed}${abandon ? " with abandoned steps" : ""}, sequence ${s}`));
      }
    } finally {
      model.close();
    }
  });
}

test("the memory plan counts every sequence's KV cache", async () => {
  const path = testModel({ preset: "tiny" });
  const one = await load(path, { parallel: 1, processBytes: 64 << 20 });
  const three = await load(path, { parallel: 3, processBytes: 64 << 20 });
  try {
    assert.equal(three.plan.kv, 3 * one.plan.kv);
    assert.equal(three.plan.parallel, 3);
    assert.equal(three.kvs.length, 3);
    assert.equal(three.plan.total - one.plan.total, 2 * one.plan.kv);
  } finally {
    one.close();
    three.close();
  }
});

test("a batch that names one cache twice, or holds more than the batch size, is refused", async () => {
  const model = await load(testModel({ preset: "tiny" }));
  try {
    const kv = model.kvs[0]!;
    kv.truncate(0);
    assert.throws(() => model.forwardBatch([{ kv, tokens: [1], logits: "last" }, { kv, tokens: [2], logits: "last" }]), /twice/);
    assert.throws(() => model.forwardBatch([{ kv, tokens: randomTokens(BATCH + 1, 100), logits: "none" }]), /batch size/);
    assert.equal(kv.length, 0);
  } finally {
    model.close();
  }
});

test("the default number of sequences: up to 4, their KV caches within an eighth of the budget (1 GiB without one)", () => {
  const MiB = 1 << 20;
  assert.equal(defaultParallel(100 * MiB, undefined), 4);
  assert.equal(defaultParallel(300 * MiB, undefined), 3);
  assert.equal(defaultParallel(2048 * MiB, undefined), 1, "at least one");
  assert.equal(defaultParallel(64 * MiB, 8192 * MiB), 4);
  assert.equal(defaultParallel(64 * MiB, 1024 * MiB), 2);
  assert.equal(defaultParallel(64 * MiB, 256 * MiB), 1);
});
