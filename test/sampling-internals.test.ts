import { test } from "node:test";
import assert from "node:assert/strict";
import { applyPenalties, penaltiesEnabled } from "../src/sampling/penalties.js";
import { SeededRandom } from "../src/sampling/random.js";
import { logSoftmax, logSumExp, softmax } from "../src/sampling/softmax.js";

test("penalties change exactly the tokens in the window, by llama.cpp's formula", () => {
  const logits = Float32Array.from([2, -2, 1, 0.5, 3, 0]);
  const options = { repeatPenalty: 2, repeatLastN: 5, presencePenalty: 0.3, frequencyPenalty: 0.1 };
  const out = new Float32Array(logits.length);
  // the window is the last five: [1, 0, 4, 0, 5]; token 2 (the oldest) falls outside it
  applyPenalties(logits, [2, 1, 0, 4, 0, 5], options, out);
  const expected = [
    2 / 2 - 2 * 0.1 - 0.3, // positive: divided, then two occurrences
    -2 * 2 - 0.1 - 0.3, // negative: multiplied
    1,
    0.5,
    3 / 2 - 0.1 - 0.3,
    0 * 2 - 0.1 - 0.3, // zero counts as non-positive
  ];
  assert.deepEqual(Array.from(out), expected.map(Math.fround));

  applyPenalties(logits, [2, 1, 0, 4, 0, 5], { ...options, repeatLastN: -1 }, out);
  assert.equal(out[2], Math.fround(1 / 2 - 0.1 - 0.3), "-1 includes the whole history");
});

test("penalties are off when the window is empty or every penalty is neutral", () => {
  const neutral = { repeatPenalty: 1, repeatLastN: 64, presencePenalty: 0, frequencyPenalty: 0 };
  assert.equal(penaltiesEnabled(neutral), false);
  assert.equal(penaltiesEnabled({ ...neutral, repeatPenalty: 1.1, repeatLastN: 0 }), false);
  assert.equal(penaltiesEnabled({ ...neutral, repeatPenalty: 1.1 }), true);
  assert.equal(penaltiesEnabled({ ...neutral, presencePenalty: -0.5 }), true);
  assert.equal(penaltiesEnabled({ ...neutral, frequencyPenalty: 0.5 }), true);
});

test("softmax and log-softmax match the definition and survive huge logits", () => {
  const logits = [1, 2, 3, -Infinity];
  const denominator = Math.exp(1) + Math.exp(2) + Math.exp(3);
  const probabilities = softmax(logits);
  [Math.exp(1), Math.exp(2), Math.exp(3), 0].forEach((numerator, i) => {
    assert.ok(Math.abs(probabilities[i]! - numerator / denominator) < 1e-7, `p[${i}]`);
  });
  const logProbabilities = logSoftmax(logits);
  assert.ok(Math.abs(logProbabilities[2]! - (3 - Math.log(denominator))) < 1e-6);
  assert.equal(logProbabilities[3], -Infinity);

  const huge = Float32Array.from([1000, 1001, 999]);
  assert.ok(Math.abs(logSumExp(huge) - (1001 + Math.log(1 + Math.exp(-1) + Math.exp(-2)))) < 1e-9);
  const hugeProbabilities = softmax(huge);
  assert.ok(Math.abs(hugeProbabilities.reduce((sum, p) => sum + p, 0) - 1) < 1e-6);
  assert.ok(hugeProbabilities[1]! > hugeProbabilities[0]! && hugeProbabilities[0]! > hugeProbabilities[2]!);
});

test("softmax rejects logits with no defined distribution", () => {
  assert.throws(() => softmax([]), /at least one logit/);
  assert.throws(() => softmax([-Infinity, -Infinity]), /every logit is -Infinity/);
  assert.throws(() => logSoftmax([0, NaN]), /logit 1 is NaN/);
  assert.throws(() => logSumExp([Infinity]), /logit 0 is Infinity/);
});

test("the random stream is uniform in [0, 1) and fixed by the seed", () => {
  const random = new SeededRandom(12345);
  const buckets = new Array<number>(10).fill(0);
  for (let i = 0; i < 100000; i++) {
    const value = random.nextDouble();
    assert.ok(value >= 0 && value < 1);
    buckets[Math.floor(value * 10)]!++;
  }
  for (const count of buckets) assert.ok(Math.abs(count - 10000) < 500, `bucket counts ${buckets}`);
  const first = (seed: number) => {
    const stream = new SeededRandom(seed);
    return Array.from({ length: 6 }, () => stream.nextUint32());
  };
  // pinned so the stream (and so every seeded generation) stays the same across versions
  assert.deepEqual(first(0), [3809008728, 1133695204, 53579671, 2891528803, 139681546, 2203266335]);
  assert.deepEqual(first(2 ** 53 - 1), [835879718, 1401573518, 2740521765, 3906735500, 3363362928, 545491777]);
});
