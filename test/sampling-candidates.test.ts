import { test } from "node:test";
import assert from "node:assert/strict";
import { Sampler, type SamplingOptions } from "../src/sampling/index.js";
import { argmax, selectCandidates } from "../src/sampling/candidates.js";
import { SeededRandom } from "../src/sampling/random.js";

// The edges of the filter chain and of the draw, each small enough to state exactly: cuts that
// land on a tie or exactly on p, min-p after top-k, top-k past the vocabulary, masked tokens,
// weights that underflow or overflow (written for the survivors of mutation testing,
// test/mutation-survivors.md).

type Filters = { topK: number; topP: number; minP: number };

function candidates(logits: number[], filters: Filters): number[] {
  const scores = Float32Array.from(logits);
  const ids = new Int32Array(scores.length);
  const count = selectCandidates(scores, scores[argmax(scores)]!, filters, ids);
  return Array.from(ids.subarray(0, count)).sort((a, b) => a - b);
}

function drawn(logits: number[], options: SamplingOptions, draws = 400): Set<number> {
  const sampler = new Sampler({ seed: 3, ...options }, logits.length);
  const scores = Float32Array.from(logits);
  return new Set(Array.from({ length: draws }, () => sampler.sample(scores, [])));
}

test("masked (-Infinity) tokens are never candidates, with or without top-k", () => {
  const logits = [0, -Infinity, 1, -Infinity, 0.5];
  for (const topK of [0, 4, 5, 8]) assert.deepEqual(candidates(logits, { topK, topP: 1, minP: 0 }), [0, 2, 4], `topK ${topK}`);
});

test("top-k beyond the vocabulary is no filter: the same candidates as top-k 0", () => {
  const logits = [0.3, -1, 2, 0.7, 0.1, 1.5, -0.2];
  for (const filters of [{ topP: 1, minP: 0 }, { topP: 0.6, minP: 0 }, { topP: 1, minP: 0.3 }]) {
    const unfiltered = candidates(logits, { topK: 0, ...filters });
    for (const topK of [7, 8, 100]) assert.deepEqual(candidates(logits, { topK, ...filters }), unfiltered, `${topK} ${JSON.stringify(filters)}`);
  }
});

test("top-p stops at the first token whose cumulative share reaches p exactly", () => {
  // top-k 2 leaves two tied tokens: the first alone holds exactly half of their mass
  assert.deepEqual(candidates([1, 1, 0], { topK: 2, topP: 0.5, minP: 0 }), [0]);
  assert.deepEqual(candidates([1, 1, 0], { topK: 2, topP: 0.50001, minP: 0 }), [0, 1]);
});

test("min-p applies after top-k too, and min-p 1 keeps exactly the tokens tied with the best", () => {
  // probabilities 0.06, 0.4, 0.04, 0.3, 0.2: min-p 0.45 drops those under 0.18
  const handMade = [0.06, 0.4, 0.04, 0.3, 0.2].map(Math.log);
  assert.deepEqual(candidates(handMade, { topK: 4, topP: 1, minP: 0.45 }), [1, 3, 4]);
  for (const topK of [0, 3]) assert.deepEqual(candidates([2, 1, 2, 2], { topK, topP: 1, minP: 1 }), [0, 2, 3], `topK ${topK}`);
});

test("top-p 1 after top-k keeps a token whose weight underflows at temperature 1 but not at 1000", () => {
  // exp(-800) is 0 in doubles, exp(-800 / 1000) is 0.45: the second token must stay drawable
  // (three tokens, so that top-k 2 is a real cut and takes the top-k path)
  assert.deepEqual(candidates([0, -800, -900], { topK: 2, topP: 1, minP: 0 }), [0, 1]);
  assert.deepEqual([...drawn([0, -800, -900], { topK: 2, topP: 1, minP: 0, temperature: 1000 })].sort(), [0, 1]);
});

test("huge logits are drawn by their differences: weights never overflow", () => {
  // e^(500) overflows a double; e^(500 - 500) does not
  assert.deepEqual([...drawn([500, 499.5], { topK: 0, topP: 1, minP: 0, temperature: 1 })].sort(), [0, 1]);
});

test("a one-token vocabulary samples its one token", () => {
  const sampler = new Sampler({ temperature: 1, seed: 1 }, 1);
  assert.equal(sampler.sample(Float32Array.from([0.5]), []), 0);
});

test("without filters, a draw is the inverse CDF of one uniform over the tokens in id order", () => {
  // ranked order (1, 3, 2, 0) differs from id order, so any reordering of candidates shows
  const logits = Float32Array.from([0, 3, 1, 2]);
  const weights = Array.from(logits, (l) => Math.exp(l - 3));
  const total = weights.reduce((a, b) => a + b, 0);
  let differs = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const u = new SeededRandom(seed).nextDouble();
    let cumulative = 0;
    const expected = weights.findIndex((w) => (cumulative += w) > u * total);
    assert.equal(new Sampler({ seed, temperature: 1, topK: 0, topP: 1, minP: 0 }, 4).sample(logits, []), expected, `seed ${seed}`);
    if (expected !== 1) differs++;
  }
  assert.ok(differs > 10, "the seeds reach more than the most likely token");
});

test("top-k equal to the vocabulary size draws what top-k 0 draws, seed for seed", () => {
  const logits = Float32Array.from([0, 3, 1, 2, -1, 2.5]);
  for (const filters of [{ topP: 1, minP: 0 }, { topP: 0.9, minP: 0 }, { topP: 1, minP: 0.1 }]) {
    const off = new Sampler({ seed: 5, temperature: 1, topK: 0, ...filters }, logits.length);
    const whole = new Sampler({ seed: 5, temperature: 1, topK: logits.length, ...filters }, logits.length);
    const a = Array.from({ length: 200 }, () => off.sample(logits, []));
    const b = Array.from({ length: 200 }, () => whole.sample(logits, []));
    assert.deepEqual(b, a, JSON.stringify(filters));
  }
});
