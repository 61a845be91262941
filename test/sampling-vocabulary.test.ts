import { test } from "node:test";
import assert from "node:assert/strict";
import { Sampler, type SamplingOptions } from "../src/sampling/index.js";
import { argmax, selectCandidates } from "../src/sampling/candidates.js";
import { SeededRandom } from "../src/sampling/random.js";

// The sampler on whole vocabularies: the filters against a slow reference over many random ones,
// and the 151,936-token vocabulary never sorted whole. Kept apart from the small, exact sampling
// tests so that mutation testing (npm run mutation -- sampling) runs these large cases last.

interface Filters {
  topK: number;
  topP: number;
  minP: number;
}

/** The filters the slow, obvious way: rank the whole vocabulary, cut, renormalize, cut. */
function referenceCandidates(scores: Float32Array, { topK, topP, minP }: Filters): number[] {
  const ranked = Array.from(scores.keys())
    .filter((id) => scores[id] !== -Infinity)
    .sort((a, b) => scores[b]! - scores[a]! || a - b);
  const kept = topK > 0 ? ranked.slice(0, topK) : ranked;
  const maxScore = scores[kept[0]!]!;
  let cut = kept.length;
  if (topP < 1) {
    const weights = kept.map((id) => Math.exp(scores[id]! - maxScore));
    const mass = weights.reduce((sum, weight) => sum + weight, 0);
    let cumulative = 0;
    cut = weights.findIndex((weight) => (cumulative += weight) >= topP * mass) + 1 || kept.length;
  }
  const minScore = minP > 0 ? maxScore + Math.log(minP) : -Infinity;
  return kept.slice(0, cut).filter((id, rank) => rank === 0 || scores[id]! >= minScore);
}

function selected(scores: Float32Array, filters: Filters): number[] {
  const ids = new Int32Array(scores.length);
  const count = selectCandidates(scores, scores[argmax(scores)]!, filters, ids);
  return Array.from(ids.subarray(0, count)).sort((a, b) => a - b);
}

function gaussianLogits(vocabSize: number, random: SeededRandom, spread: number): Float32Array {
  return Float32Array.from({ length: vocabSize }, () => {
    const radius = Math.sqrt(-2 * Math.log(1 - random.nextDouble()));
    return spread * radius * Math.cos(2 * Math.PI * random.nextDouble());
  });
}

function randomLogits(vocabSize: number, seed: number): Float32Array {
  let state = seed;
  return Float32Array.from({ length: vocabSize }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state / 2 ** 32) * 20 - 10;
  });
}

test("top-k, top-p and min-p keep exactly the reference set, over many random vocabularies", () => {
  const random = new SeededRandom(5);
  const shapes: Array<[string, (vocabSize: number) => Float32Array]> = [
    ["peaked", (n) => gaussianLogits(n, random, 3)],
    ["near-flat", (n) => gaussianLogits(n, random, 0.05)],
    // few distinct values, so cuts fall inside runs of equal logits and the id tie-break decides
    ["tied", (n) => Float32Array.from({ length: n }, () => Math.floor(random.nextDouble() * 6))],
    ["masked", (n) => Float32Array.from({ length: n }, (_, id) => (id > 0 && random.nextDouble() < 0.9 ? -Infinity : random.nextDouble()))],
  ];
  let checked = 0;
  for (const vocabSize of [7, 300, 20000]) {
    for (const [shape, makeLogits] of shapes) {
      for (let trial = 0; trial < 12; trial++) {
        const scores = makeLogits(vocabSize);
        const filters: Filters = {
          topK: [0, 1, 5, 40, vocabSize + 3][trial % 5]!,
          topP: [1, 0.95, 0.5, 0.999, 0.1, 0.8][trial % 6]!,
          minP: [0, 0.05, 0.5, 0, 0.01][trial % 4]!,
        };
        assert.deepEqual(
          selected(scores, filters),
          referenceCandidates(scores, filters).sort((a, b) => a - b),
          `${shape} vocabulary of ${vocabSize}, ${JSON.stringify(filters)}`,
        );
        checked++;
      }
    }
  }
  assert.equal(checked, 144);
});

test("without top-k, a near-flat full-size vocabulary still gets the exact top-p cut", () => {
  const random = new SeededRandom(17);
  const scores = gaussianLogits(151936, random, 0.02);
  for (const filters of [
    { topK: 0, topP: 0.95, minP: 0 },
    { topK: 0, topP: 0.3, minP: 0 },
    { topK: 0, topP: 0.95, minP: 0.93 },
  ]) {
    const expected = referenceCandidates(scores, filters).sort((a, b) => a - b);
    assert.ok(expected.length > 1000, `${JSON.stringify(filters)} cuts deep inside the vocabulary, not at ${expected.length}`);
    assert.deepEqual(selected(scores, filters), expected, JSON.stringify(filters));
  }
});

/**
 * Counts the elements every sort sorts while `run` runs: the sampler sorts only through typed
 * arrays (Int32Array of candidate ids) or, should it change, plain arrays; both are watched.
 */
function elementsSorted(run: () => void): number {
  let sorted = 0;
  const typed = Int32Array.prototype;
  const originalTyped = Object.getPrototypeOf(typed).sort as (this: Int32Array, compare?: (a: number, b: number) => number) => Int32Array;
  const originalArray = Array.prototype.sort;
  Object.defineProperty(typed, "sort", {
    configurable: true,
    value(this: Int32Array, compare?: (a: number, b: number) => number) {
      sorted += this.length;
      return originalTyped.call(this, compare);
    },
  });
  Array.prototype.sort = function <T>(this: T[], compare?: (a: T, b: T) => number) {
    sorted += this.length;
    return originalArray.call(this, compare) as T[];
  };
  try {
    run();
  } finally {
    delete (typed as { sort?: unknown }).sort;
    Array.prototype.sort = originalArray;
  }
  return sorted;
}

test("a 151,936-token vocabulary is never sorted whole: per token, sorts touch under 1 % of it", () => {
  // the time this takes is measured by bench/latency.ts, not asserted here
  const vocabSize = 151936;
  const logits = randomLogits(vocabSize, 11);
  const history = Array.from({ length: 64 }, (_, i) => i * 997);
  for (const options of [{}, { topK: 0 }, { topK: 0, minP: 0 }, { repeatPenalty: 1.1, frequencyPenalty: 0.1 }] as SamplingOptions[]) {
    const sampler = new Sampler({ seed: 1, ...options }, vocabSize);
    // the same logits every token, so a few tokens show what each one sorts
    const sorted = elementsSorted(() => {
      for (let i = 0; i < 4; i++) sampler.sample(logits, history);
    });
    // top-k sorts its k survivors; top-p without top-k only the one histogram bucket it cuts in
    // (measured per token: 40, 0, 15 and 40 elements for these four)
    assert.ok(sorted / 4 < vocabSize / 100, `${JSON.stringify(options)}: ${sorted / 4} elements sorted per token`);
  }
  // the counter sees a sort of the vocabulary when there is one
  const ids = new Int32Array(vocabSize);
  assert.equal(elementsSorted(() => ids.sort()), vocabSize);
  assert.equal(elementsSorted(() => [3, 1, 2].sort()), 3);
});
