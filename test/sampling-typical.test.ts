import { test } from "node:test";
import assert from "node:assert/strict";
import { argmax, selectCandidates } from "../src/sampling/candidates.js";
import { Sampler } from "../src/sampling/index.js";
import { keepTypical } from "../src/sampling/typical.js";

/**
 * Typical sampling and min_keep against distributions worked out by hand.
 *
 * p = (1/2, 1/4, 1/8, 1/8): entropy H = (1/2·1 + 1/4·2 + 2·1/8·3) ln 2 = 1.75 ln 2, surprisals
 * -ln p = (1, 2, 3, 3) ln 2, so |-ln p - H| = (0.75, 0.25, 1.25, 1.25) ln 2: typicality ranks token
 * 1 first, then 0, then 2 and 3; their cumulative probability is 1/4, 3/4, 7/8, 1.
 */
const PROBABILITIES = [0.5, 0.25, 0.125, 0.125];
const LOGITS = Float32Array.from(PROBABILITIES, Math.log);
const UNFILTERED = { topK: 0, topP: 1, minP: 0 };

function kept(typicalP: number, minKeep = 0, logits = LOGITS): number[] {
  const ids = Int32Array.from(logits.keys());
  const count = keepTypical(logits, ids, logits.length, typicalP, minKeep);
  return Array.from(ids.subarray(0, count));
}

function frequencies(options: ConstructorParameters<typeof Sampler>[0], logits = LOGITS, draws = 20_000): number[] {
  const sampler = new Sampler({ seed: 3, temperature: 1, ...UNFILTERED, ...options }, logits.length);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.sample(logits, [])]!++;
  return counts.map((count) => count / draws);
}

/** Within 4.5 standard deviations of a binomial proportion over `draws`. */
function assertNear(actual: number[], expected: number[], draws = 20_000): void {
  actual.forEach((value, id) => {
    const p = expected[id]!;
    const tolerance = 4.5 * Math.sqrt((p * (1 - p)) / draws) + 1e-9;
    assert.ok(Math.abs(value - p) <= tolerance, `token ${id}: ${value} vs ${p} (±${tolerance.toFixed(4)}) in ${JSON.stringify(actual)}`);
  });
}

test("typical sampling keeps the most typical tokens until their mass exceeds typical_p, best ranked first", () => {
  // 1/4 > 0.2: the one most typical token, which is not the most likely one
  assert.deepEqual(kept(0.2), [1]);
  // 1/4 ≤ 0.5 < 3/4: tokens 1 and 0, written back ranked by score
  assert.deepEqual(kept(0.5), [0, 1]);
  assert.deepEqual(kept(0.74), [0, 1]);
  assert.deepEqual(kept(0.76), [0, 1, 2], "3/4 is not above 0.76: one more");
  assert.deepEqual(kept(0.8), [0, 1, 2]);
  assert.deepEqual(kept(0.9), [0, 1, 2, 3]);
  assert.deepEqual(kept(1), [0, 1, 2, 3], "1 disables it");
  assert.deepEqual(kept(0.2, 3), [0, 1, 2], "min_keep keeps more");
});

test("a typical_p sampler draws from the renormalized typical set", () => {
  assertNear(frequencies({ typicalP: 0.2 }), [0, 1, 0, 0]);
  assertNear(frequencies({ typicalP: 0.5 }), [2 / 3, 1 / 3, 0, 0]);
  assertNear(frequencies({ typicalP: 0.8 }), [4 / 7, 2 / 7, 1 / 7, 0]);
  assertNear(frequencies({ typicalP: 0.2, minKeep: 3 }), [4 / 7, 2 / 7, 1 / 7, 0]);
  assertNear(frequencies({ typicalP: 1 }), PROBABILITIES);
});

test("typical sampling runs after top-k and before top-p and min-p, which then go by the best kept token", () => {
  // top-k 2 leaves (2/3, 1/3): H = 0.637 nats, surprisals ln 1.5 = 0.405 and ln 3 = 1.099, so now
  // token 0 is the more typical one and typical_p 0.2 keeps it alone (without top-k: token 1)
  assertNear(frequencies({ topK: 2, typicalP: 0.2 }), [1, 0, 0, 0]);
  // typical 0.8 keeps 0, 1, 2 (4/7, 2/7, 1/7); top-p 0.8 of that keeps 0 and 1 (6/7 ≥ 0.8), where
  // top-p alone would keep three (7/8 ≥ 0.8)
  assertNear(frequencies({ typicalP: 0.8, topP: 0.8 }), [2 / 3, 1 / 3, 0, 0]);
  // p = (0.4, 0.15 × 4): H = 1.505 nats; surprisals 0.916 and 1.897, so the four small tokens are
  // the typical ones and typical_p 0.35 keeps three of them (0.45 > 0.35). min-p 0.9 is relative
  // to the best of those: all three stay (relative to token 0 none would)
  const peaked = Float32Array.from([0.4, 0.15, 0.15, 0.15, 0.15], Math.log);
  assert.deepEqual(kept(0.35, 0, peaked), [1, 2, 3]);
  assertNear(frequencies({ typicalP: 0.35, minP: 0.9 }, peaked), [0, 1 / 3, 1 / 3, 1 / 3, 0]);
});

test("min_keep holds top-p and min-p to at least that many tokens, with and without top-k", () => {
  const select = (options: { topK: number; topP: number; minP: number; minKeep?: number }) => {
    const ids = new Int32Array(LOGITS.length);
    const count = selectCandidates(LOGITS, LOGITS[argmax(LOGITS)]!, options, ids);
    return Array.from(ids.subarray(0, count)).sort((a, b) => a - b);
  };
  for (const topK of [0, 4]) {
    assert.deepEqual(select({ topK, topP: 0.5, minP: 0 }), [0], "top-p 0.5 keeps the first token (1/2 ≥ 0.5)");
    assert.deepEqual(select({ topK, topP: 0.5, minP: 0, minKeep: 2 }), [0, 1]);
    assert.deepEqual(select({ topK, topP: 1, minP: 0.6 }), [0], "min-p 0.6: only p ≥ 0.3");
    assert.deepEqual(select({ topK, topP: 1, minP: 0.6, minKeep: 3 }), [0, 1, 2]);
    assert.deepEqual(select({ topK, topP: 0.5, minP: 0.6, minKeep: 9 }), [0, 1, 2, 3], "never more than there are");
  }
  assertNear(frequencies({ topP: 0.5, minKeep: 2 }), [2 / 3, 1 / 3, 0, 0]);
});

test("typical_p and min_keep are checked like the other options", () => {
  assert.throws(() => new Sampler({ typicalP: 0 }, 4), /typicalP must be a number in \(0, 1\]/);
  assert.throws(() => new Sampler({ typicalP: 1.5 }, 4), /typicalP/);
  assert.throws(() => new Sampler({ minKeep: -1 }, 4), /minKeep must be an integer >= 0/);
  assert.throws(() => new Sampler({ minKeep: 1.5 }, 4), /minKeep/);
});
