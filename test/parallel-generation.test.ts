import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { loadModel, Model } from "../src/engine/model.js";
import { GenerationResult } from "../src/engine/generation.js";
import { testModel } from "./helpers/models.js";

/**
 * Continuous batching in the engine: several generations share each forward pass, and each one
 * produces exactly the tokens it produces alone with the same seed.
 */

const demo = () => testModel({ preset: "demo" });
/** Small batches, so that prompts are evaluated in chunks interleaved with the others' decoding. */
const BATCH = 8;

let alone: Model;
let together: Model;

before(async () => {
  alone = await loadModel(demo(), { contextSize: 512, batchSize: BATCH });
  together = await loadModel(demo(), { contextSize: 512, batchSize: BATCH, parallel: 3 });
});

after(async () => {
  await alone.close();
  await together.close();
});

const REQUESTS = [
  { prompt: "Once upon a time, in a land of rivers and bridges, there lived a keeper of the old lighthouse who", options: { seed: 1, temperature: 1, topK: 0, topP: 1, minP: 0 } },
  { prompt: "The recipe needs", options: { temperature: 0 } },
  { prompt: "def mean(xs):\n    return sum(xs) / len(xs)\n\n# and the median is", options: { seed: 7, temperature: 0.8 } },
  { prompt: "你好，世界", options: { seed: 3, temperature: 1.2, repeatPenalty: 1.1 } },
];

test("generations running together give the tokens each gives alone, and share steps", async () => {
  const expected: GenerationResult[] = [];
  for (const { prompt, options } of REQUESTS) expected.push(await alone.generate(prompt, { ...options, maxTokens: 24, ignoreEos: true }).complete());

  const arrivals: number[] = [];
  const results = await Promise.all(
    REQUESTS.map(async ({ prompt, options }, i) => {
      const generation = together.generate(prompt, { ...options, maxTokens: 24, ignoreEos: true });
      for await (const _ of generation) arrivals.push(i);
      return generation.result;
    }),
  );
  results.forEach((result, i) => {
    assert.deepEqual(result.tokens, expected[i]!.tokens, `request ${i}`);
    assert.equal(result.text, expected[i]!.text, `request ${i}`);
  });
  // the pieces of the first three arrived interleaved, not one request after another
  const firstThree = arrivals.filter((i) => i < 3);
  const switches = firstThree.filter((request, k) => k > 0 && request !== firstThree[k - 1]).length;
  assert.ok(switches > 10, `pieces interleaved ${switches} times: ${firstThree.join("")}`);
  // the fourth waited for a free sequence
  assert.ok(results[3]!.timings.queuedMs > results[0]!.timings.queuedMs);
});

test("each conversation's next turn reuses its own sequence's KV cache", async () => {
  const conversations = ["A first conversation about the weather in the northern hills, which", "Another one, about markets that open early and trains that run late, where"];
  const firsts = await Promise.all(conversations.map((prompt) => together.generate(prompt, { temperature: 0, maxTokens: 6, ignoreEos: true }).complete()));
  const followUps = conversations.map((prompt, i) => [...together.tokenize(prompt, false), ...firsts[i]!.tokens, ...together.tokenize(" and then", false)]);
  const seconds = await Promise.all(followUps.map((ids) => together.generate(ids, { temperature: 0, maxTokens: 6, ignoreEos: true }).complete()));
  seconds.forEach((second, i) => {
    const prefix = followUps[i]!.length - together.tokenize(" and then", false).length;
    assert.ok(second.cachedPromptTokens >= prefix - 1, `conversation ${i} reused ${second.cachedPromptTokens} of ${prefix} tokens`);
  });
  for (const [i, ids] of followUps.entries()) {
    const cold = await alone.generate(ids, { temperature: 0, maxTokens: 6, ignoreEos: true }).complete();
    assert.deepEqual(seconds[i]!.tokens, cold.tokens);
  }
});

test("cancelling one generation mid-prompt leaves the others' tokens unchanged", async () => {
  const long = Array.from({ length: 200 }, (_, i) => 1000 + ((i * 37) % 500));
  const expected = await alone.generate(REQUESTS[0]!.prompt, { ...REQUESTS[0]!.options, maxTokens: 16, ignoreEos: true }).complete();
  const controller = new AbortController();
  const survivor = together.generate(REQUESTS[0]!.prompt, { ...REQUESTS[0]!.options, maxTokens: 16, ignoreEos: true });
  let victimDone: Promise<GenerationResult> | undefined;
  let pieces = 0;
  for await (const _ of survivor) {
    pieces++;
    // joins while the survivor decodes: its prompt takes the rest of each batch, for many steps
    if (pieces === 1) victimDone = together.generate(long, { maxTokens: 4, signal: controller.signal }).complete();
    if (pieces === 4) controller.abort();
  }
  const cancelled = await victimDone!;
  assert.equal(cancelled.finishReason, "abort");
  assert.equal(cancelled.completionTokens, 0);
  assert.deepEqual((await survivor.result).tokens, expected.tokens);
});

test("logits() waits for the generations before it, then has the model to itself", async () => {
  const generation = together.generate("Count to ten:", { temperature: 0, maxTokens: 8, ignoreEos: true });
  const finished = generation.complete();
  const ids = together.tokenize("Count to ten:", false);
  let rows = 0;
  await together.logits(ids, () => rows++);
  assert.equal(rows, ids.length);
  assert.equal((await finished).completionTokens, 8);
});
