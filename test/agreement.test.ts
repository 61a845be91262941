import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../src/gguf/types.js";
import { testModel } from "./helpers/models.js";
import { agreement, compareWithOracle, engineLogits, randomTokens } from "./helpers/compare.js";
import { needsOracle } from "./helpers/oracle.js";

// Every bound sits a stated factor above the error measured on 2026-12-04 (node dist/bench/agreement.js
// prints them all; rerun it after changing the arithmetic). The engine and llama.cpp differ only in
// float summation order, so F32 runs agree to a few float ulps of the largest logit: an RMS-norm
// epsilon ×10 (3–6e-6) or a RoPE exponent off by 0.1 % fails these by a wide margin.
const F32_MAX_RELATIVE = 1.5e-6;

test("F32 tiny model (sigmoid gating, tied output) agrees with llama.cpp at every position", needsOracle, async () => {
  const result = await compareWithOracle(testModel({ preset: "tiny" }), 96);
  // measured 2.24e-7; bound 6.7×
  assert.ok(result.maxRelative <= F32_MAX_RELATIVE, `max relative difference ${result.maxRelative}`);
});

test("F32 softmax gating with a separate output matrix agrees with llama.cpp", needsOracle, async () => {
  const result = await compareWithOracle(testModel({ preset: "tiny", shape: { gating: "softmax", tiedOutput: false } }), 96);
  // measured 2.61e-7; bound 5.7×
  assert.ok(result.maxRelative <= F32_MAX_RELATIVE, `max relative difference ${result.maxRelative}`);
});

test("F32 21B-shaped model (query width 112 ≠ hidden 96, GQA group 7) agrees with llama.cpp", needsOracle, async () => {
  const result = await compareWithOracle(testModel({ preset: "tiny-21b" }), 96);
  // measured 2.90e-7; bound 5.2×
  assert.ok(result.maxRelative <= F32_MAX_RELATIVE, `max relative difference ${result.maxRelative}`);
});

test("F32 NoPE/sliding-window model agrees with llama.cpp past the 4096-token window", needsOracle, async () => {
  const result = await compareWithOracle(testModel({ preset: "tiny-swa" }), 4400);
  assert.equal(result.positions, 4400);
  // measured 3.06e-7; bound 4.9×
  assert.ok(result.maxRelative <= F32_MAX_RELATIVE, `max relative difference ${result.maxRelative}`);
});

// Quantized weights: activations are quantized to Q8_0 exactly as llama.cpp's CPU backend does and
// the integer block sums are exact, so a position agrees to float-order level like F32. But the
// quantization of activations is a step function: where an activation lies within ~1e-7 of a
// rounding boundary, the engine's attention (another float summation order than llama.cpp's) puts
// it on the other side, one int8 moves by 1, and that position's layer output moves by ~1e-3 —
// then, through the KV cache, every later position's attention too, which flips more roundings.
// On this Q8_0 file and these tokens no rounding flips (so it is held to F32's standard); on the
// Q4_0 file one flips at layer 0, position 79 (the o-projection's input), and 32 of the 221 later
// positions differ by up to 8.6e-3. The plain-TS reference kernels, with another attention order,
// flip at position 191 instead, and llama.cpp itself flips at position 250 between its repacked and
// its plain Q4_0 paths (node dist/bench/agreement.js; issue 13's investigation). So Q4_0 is held by
// its typical position (the median), KL and top-1, each near its measured value. The two top-1
// misses are near-ties: llama.cpp's best two logits differ by 0.005 and 0.008 there.
test("Q8_0 model agrees with llama.cpp at every one of 300 forced positions", needsOracle, async () => {
  const result = await compareWithOracle(testModel({ preset: "tiny", type: GgmlType.Q8_0, shape: { tiedOutput: false } }), 300);
  // measured 1.78e-7; bound 5.6×. A kernel change that reorders attention sums may flip a rounding
  // here (see above): check then that the excess starts at one position and spreads from it.
  assert.ok(result.maxRelative <= 1e-6, `max relative difference ${result.maxRelative}`);
  // measured 1.00e-13; bound 10×
  assert.ok(result.meanKl <= 1e-12, `mean KL ${result.meanKl}`);
  assert.equal(result.top1, 1);
});

test("Q4_0 model agrees with llama.cpp over 300 forced positions but for rounding flips", needsOracle, async () => {
  const result = await compareWithOracle(testModel({ preset: "tiny", type: GgmlType.Q4_0, shape: { tiedOutput: false } }), 300);
  // measured 8.20e-8; bound 6×: most positions are untouched by the flips and agree like F32
  assert.ok(result.medianRelative <= 5e-7, `median relative difference ${result.medianRelative}`);
  // measured 1.31e-5; bound 3.8× (RMS epsilon ×10 alone adds ~1e-4)
  assert.ok(result.meanKl <= 5e-5, `mean KL ${result.meanKl}`);
  // measured 5.06e-4; bound 4×
  assert.ok(result.maxKl <= 2e-3, `largest KL at one position ${result.maxKl}`);
  // measured 0.9933 (298 of 300, the misses near-ties); the floor allows 3 misses
  assert.ok(result.top1 >= 0.99, `top-1 agreement ${result.top1}`);
});

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
  // measured 0: both orientations add the same f32 products in neuron order
  assert.ok(result.maxRelative <= 1e-5, `max relative difference ${result.maxRelative}`);
  assert.deepEqual(transposed, upstream);
});
