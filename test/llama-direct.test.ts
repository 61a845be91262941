import { test } from "node:test";
import assert from "node:assert/strict";
import type { Token } from "node-llama-cpp";
import { GgmlType } from "../src/gguf/types.js";
import { GgufFile } from "../src/gguf/reader.js";
import { readConfig } from "../src/model/config.js";
import type { LlamaDirect, LlamaDirectOptions } from "../src/bench/llama-direct.js";
import { testModel } from "./helpers/models.js";
import { getOracle, needsOracle, requireOracleBinaries } from "./helpers/oracle.js";
import { agreement, randomTokens } from "./helpers/compare.js";

// A separate output matrix: with the tiny model's tied embeddings greedy decoding repeats one
// token forever, which would make token equality a weak check.
const path = testModel({ preset: "tiny", type: GgmlType.Q4_0, shape: { tiedOutput: false } });
const file = GgufFile.open(path);
const VOCAB = readConfig(file).vocabSize;
file.close();
const prompt = randomTokens(16, 1000, 3);
const GENERATED = 24;
const settings = { contextSize: 256, batchSize: 64, threads: 2 };

/** node-llama-cpp on the same file: its greedy continuation of the prompt and, fed that sequence, its logits at every position. */
async function nodeLlamaCpp(): Promise<{ greedy: number[]; logits: Float32Array[] }> {
  const llama = await getOracle();
  const model = await llama.loadModel({ modelPath: path, useMmap: true });
  try {
    const context = await model.createContext({ ...settings, flashAttention: false });
    const sequence = context.getSequence();
    const greedy: number[] = [];
    for await (const token of sequence.evaluate(prompt as Token[], { temperature: 0 })) {
      greedy.push(token);
      if (greedy.length === GENERATED) break;
    }
    await sequence.clearHistory();
    const forced = [...prompt, ...greedy] as Token[];
    const results = await sequence.controlledEvaluate(forced.map((t) => [t, { generateNext: { logits: true } }]));
    const logits = results.map((r) => {
      const row = new Float32Array(VOCAB);
      for (const [token, value] of r?.next.logits ?? []) row[token] = value;
      return row;
    });
    await context.dispose();
    return { greedy, logits };
  } finally {
    await model.dispose();
  }
}

let referencePromise: ReturnType<typeof nodeLlamaCpp> | undefined;
const reference = () => (referencePromise ??= nodeLlamaCpp());

/** The driver under test, imported once its native dependencies are known to be there. */
async function openLlamaDirect(options: LlamaDirectOptions): Promise<LlamaDirect> {
  requireOracleBinaries();
  return (await import("../src/bench/llama-direct.js")).openLlamaDirect(options);
}

for (const useExtraBufts of [false, true]) {
  test(`greedy tokens equal node-llama-cpp's (${useExtraBufts ? "weights repacked, as node-llama-cpp does" : "no repacking"}), again after reset`, needsOracle, async () => {
    const { greedy } = await reference();
    const direct = await openLlamaDirect({ modelPath: path, ...settings, useExtraBufts });
    try {
      assert.equal(direct.vocabSize, VOCAB);
      direct.prefill(prompt);
      assert.deepEqual(direct.decodeGreedy(GENERATED), greedy);
      direct.reset();
      direct.prefill(prompt);
      assert.deepEqual(direct.decodeGreedy(GENERATED), greedy);
    } finally {
      direct.close();
    }
  });
}

test("logits agree with node-llama-cpp's at every position (no repacking, one token per llama_decode)", needsOracle, async () => {
  const { greedy, logits: theirs } = await reference();
  const direct = await openLlamaDirect({ modelPath: path, ...settings });
  try {
    const ours = [...prompt, ...greedy].map((token) => {
      direct.prefill([token]);
      return direct.lastLogits();
    });
    const result = agreement(theirs, ours);
    assert.equal(result.top1, 1, `top-1 agreement ${result.top1}`);
    assert.ok(result.maxRelative <= 1e-4, `max relative difference ${result.maxRelative}`);
    // measured 0 (node dist/bench/agreement.js llama-direct, 2026-12-04): the same library on the
    // same file computes the same bits, repacked or not, batched or not, at these 40 positions
    assert.equal(result.maxRelative, 0, `max relative difference ${result.maxRelative}`);
  } finally {
    direct.close();
  }
});

test("a prompt longer than the batch is evaluated in chunks; a full context is an error", needsOracle, async () => {
  // llama.cpp rounds the context up to a multiple of 256.
  const direct = await openLlamaDirect({ modelPath: path, ...settings, contextSize: 256 });
  try {
    direct.prefill(randomTokens(250, 1000));
    assert.equal(direct.decodeGreedy(6).length, 6);
    assert.throws(() => direct.decodeGreedy(1), /llama_decode returned 1 \(context full\): .*failed to find a memory slot/);
  } finally {
    direct.close();
  }
});
