import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../src/gguf/types.js";
import { testModel } from "./helpers/models.js";
import { agreement, engineLogits, oracleLogits, randomTokens } from "./helpers/compare.js";
import { GgufFile } from "../src/gguf/reader.js";
import { readConfig } from "../src/model/config.js";

function vocabOf(path: string): number {
  const file = GgufFile.open(path);
  try {
    return readConfig(file).vocabSize;
  } finally {
    file.close();
  }
}

async function compare(path: string, positions: number) {
  const vocab = vocabOf(path);
  const tokens = randomTokens(positions, vocab);
  const theirs = await oracleLogits(path, tokens, vocab);
  const ours = await engineLogits(path, tokens);
  return agreement(theirs, ours);
}

const F32_TOLERANCE = 1e-4;

test("F32 tiny model (sigmoid gating, tied output) agrees with llama.cpp at every position", async () => {
  const result = await compare(testModel({ preset: "tiny" }), 96);
  assert.ok(result.maxRelative <= F32_TOLERANCE, `max relative difference ${result.maxRelative}`);
});

test("F32 softmax gating with a separate output matrix agrees with llama.cpp", async () => {
  const result = await compare(testModel({ preset: "tiny", shape: { gating: "softmax", tiedOutput: false } }), 96);
  assert.ok(result.maxRelative <= F32_TOLERANCE, `max relative difference ${result.maxRelative}`);
});

test("F32 21B-shaped model (query width 112 ≠ hidden 96, GQA group 7) agrees with llama.cpp", async () => {
  const result = await compare(testModel({ preset: "tiny-21b" }), 96);
  assert.ok(result.maxRelative <= F32_TOLERANCE, `max relative difference ${result.maxRelative}`);
});

test("F32 NoPE/sliding-window model agrees with llama.cpp past the 4096-token window", async () => {
  const result = await compare(testModel({ preset: "tiny-swa" }), 4400);
  assert.equal(result.positions, 4400);
  assert.ok(result.maxRelative <= F32_TOLERANCE, `max relative difference ${result.maxRelative}`);
});

for (const [name, type] of [["Q8_0", GgmlType.Q8_0], ["Q4_0", GgmlType.Q4_0]] as const) {
  test(`${name} model: mean KL ≤ 1e-3 and top-1 ≥ 99 % over 300 forced positions`, async () => {
    const result = await compare(testModel({ preset: "tiny", type, shape: { tiedOutput: false } }), 300);
    assert.ok(result.meanKl <= 1e-3, `mean KL ${result.meanKl}`);
    assert.ok(result.top1 >= 0.99, `top-1 agreement ${result.top1}`);
  });
}

test("absent expert_gating_func means sigmoid", async () => {
  const tokens = randomTokens(32, 1000);
  const sigmoid = await engineLogits(testModel({ preset: "tiny", shape: { gating: "sigmoid" } }), tokens);
  const absent = await engineLogits(testModel({ preset: "tiny", shape: { gating: "absent" } }), tokens);
  const softmax = await engineLogits(testModel({ preset: "tiny", shape: { gating: "softmax" } }), tokens);
  assert.deepEqual(absent, sigmoid);
  assert.notDeepEqual(softmax, sigmoid);
});

test("PowerInfer's transposed ffn_down_exps gives the same logits as llama.cpp's orientation", async () => {
  const tokens = randomTokens(48, 1000);
  const upstream = await engineLogits(testModel({ preset: "tiny", shape: { downLayout: "upstream", expertFfn: 96 } }), tokens);
  const transposed = await engineLogits(testModel({ preset: "tiny", shape: { downLayout: "transposed", expertFfn: 96 } }), tokens);
  const result = agreement(upstream, transposed);
  assert.ok(result.maxRelative <= 1e-5, `max relative difference ${result.maxRelative}`);
});
