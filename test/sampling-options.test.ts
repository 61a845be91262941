import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_SAMPLING_OPTIONS, Sampler, resolveSamplingOptions, type SamplingOptions } from "../src/sampling/index.js";
import { applyPenalties } from "../src/sampling/penalties.js";

// What the sampler accepts, exactly: each option's edges, its message, the defaults an option
// left undefined falls back to, and the seed an unseeded run picks (found by mutation testing,
// test/mutation-survivors.md).

test("undefined options take the defaults (the CLI passes every flag, most of them undefined)", () => {
  const undefinedOptions = Object.fromEntries(Object.keys(DEFAULT_SAMPLING_OPTIONS).map((name) => [name, undefined])) as SamplingOptions;
  const resolved = resolveSamplingOptions({ ...undefinedOptions, seed: 9 });
  assert.deepEqual(resolved, { ...DEFAULT_SAMPLING_OPTIONS, seed: 9 });
  assert.deepEqual(DEFAULT_SAMPLING_OPTIONS, {
    temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, repeatLastN: 64, presencePenalty: 0, frequencyPenalty: 0, typicalP: 1, minKeep: 0,
  });
});

test("each option's edge values are accepted; one step past them is refused with its expected range", () => {
  const accepted: SamplingOptions[] = [
    { temperature: -5 }, { temperature: 0 }, { topK: 0 }, { topP: Number.MIN_VALUE }, { topP: 1 }, { minP: 0 }, { minP: 1 },
    { repeatPenalty: 0.01 }, { repeatPenalty: 100 }, { repeatLastN: -1 }, { repeatLastN: 0 },
    { presencePenalty: -1e30 }, { frequencyPenalty: 1e30 }, { seed: 0 }, { seed: Number.MAX_SAFE_INTEGER },
  ];
  for (const options of accepted) assert.doesNotThrow(() => resolveSamplingOptions(options), JSON.stringify(options));
  const refused: [SamplingOptions, string][] = [
    [{ temperature: NaN }, "sampling option temperature must be a finite number, got NaN"],
    [{ topK: -1 }, "sampling option topK must be an integer >= 0, got -1"],
    [{ topK: 0.5 }, "sampling option topK must be an integer >= 0, got 0.5"],
    [{ topP: 0 }, "sampling option topP must be a number in (0, 1], got 0"],
    [{ topP: 1.0000001 }, "sampling option topP must be a number in (0, 1], got 1.0000001"],
    [{ minP: -1e-9 }, "sampling option minP must be a number in [0, 1], got -1e-9"],
    [{ minP: 1.0000001 }, "sampling option minP must be a number in [0, 1], got 1.0000001"],
    [{ repeatPenalty: 0.0099 }, "sampling option repeatPenalty must be a number in [0.01, 100], got 0.0099"],
    [{ repeatPenalty: 100.001 }, "sampling option repeatPenalty must be a number in [0.01, 100], got 100.001"],
    [{ repeatLastN: -2 }, "sampling option repeatLastN must be an integer >= -1, got -2"],
    [{ repeatLastN: 0.5 }, "sampling option repeatLastN must be an integer >= -1, got 0.5"],
    [{ presencePenalty: -Infinity }, "sampling option presencePenalty must be a finite number, got -Infinity"],
    [{ frequencyPenalty: NaN }, "sampling option frequencyPenalty must be a finite number, got NaN"],
    [{ seed: -1 }, "sampling option seed must be a non-negative safe integer, got -1"],
    [{ seed: 2 ** 53 }, "sampling option seed must be a non-negative safe integer, got 9007199254740992"],
    [{ seed: "42" } as unknown as SamplingOptions, 'sampling option seed must be a non-negative safe integer, got "42"'],
    [{ temperature: "0.5" } as unknown as SamplingOptions, 'sampling option temperature must be a finite number, got "0.5"'],
    [{ topK: null } as unknown as SamplingOptions, "sampling option topK must be an integer >= 0, got null"],
  ];
  for (const [options, message] of refused) {
    assert.throws(() => resolveSamplingOptions(options), (error: Error) => error instanceof RangeError && error.message === message, message);
  }
  assert.throws(() => resolveSamplingOptions({ top_p: 0.5 } as SamplingOptions), { name: "RangeError", message: "unknown sampling option top_p" });
  assert.throws(() => new Sampler({}, 1.5), { name: "RangeError", message: "vocabSize must be a positive integer, got 1.5" });
});

test("an unseeded sampler draws its seed from the whole 32-bit range", () => {
  const seeds = Array.from({ length: 64 }, () => new Sampler({}, 4).options.seed);
  for (const seed of seeds) assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32, `seed ${seed}`);
  assert.equal(new Set(seeds).size, 64, "64 draws, 64 different seeds");
  // each is above 2^31 with probability 1/2: all 64 below it has probability 2^-64
  assert.ok(seeds.some((seed) => seed >= 2 ** 31), `seeds ${seeds}`);
});

test("the history is checked inside the penalty window only, for every kind of bad id", () => {
  const logits = Float32Array.from([1, 2, 3, 4]);
  const out = new Float32Array(4);
  const options = { repeatPenalty: 2, repeatLastN: 3, presencePenalty: 0, frequencyPenalty: 0 };
  for (const [bad, shown] of [[-1, "-1"], [1.5, "1.5"], [4, "4"], [NaN, "NaN"]] as const) {
    assert.throws(() => applyPenalties(logits, [0, 1, bad], options, out), { message: `history[2] = ${shown} is not a token id of this 4-token vocabulary` });
  }
  // outside the window a bad id is never read
  applyPenalties(logits, [7, 0, 1, 2], options, out);
  assert.deepEqual(Array.from(out), [0.5, 1, 1.5, 4]);
});
