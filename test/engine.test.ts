import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel, Model } from "../src/engine/model.js";
import { testModel } from "./helpers/models.js";

let shared: Promise<Model> | undefined;
function demo(): Promise<Model> {
  shared ??= loadModel(testModel({ preset: "demo" }), { contextSize: 512 });
  return shared;
}
test.after(async () => (await shared)?.close());

async function collect(generation: AsyncIterable<string>): Promise<string[]> {
  const pieces: string[] = [];
  for await (const piece of generation) pieces.push(piece);
  return pieces;
}

test("the same seed gives the same text; another seed another text", async () => {
  const model = await demo();
  const options = { seed: 42, maxTokens: 24, temperature: 1, topK: 0, topP: 1, minP: 0 };
  const a = await model.generate("Once upon a time", options).complete();
  const b = await model.generate("Once upon a time", options).complete();
  const c = await model.generate("Once upon a time", { ...options, seed: 43 }).complete();
  assert.equal(a.completionTokens, 24);
  assert.deepEqual(a.tokens, b.tokens);
  assert.notDeepEqual(a.tokens, c.tokens);
});

test("greedy decoding follows the argmax of the model's logits", async () => {
  const model = await demo();
  const prompt = model.tokenize("The sky is");
  const result = await model.generate(prompt, { temperature: 0, maxTokens: 6, ignoreEos: true }).complete();
  const sequence = [...prompt];
  for (const token of result.tokens) {
    let last: Float32Array | undefined;
    await model.logits(sequence, (_, row) => (last = Float32Array.from(row)));
    let best = 0;
    for (let i = 1; i < last!.length; i++) if (last![i]! > last![best]!) best = i;
    assert.equal(token, best);
    sequence.push(token);
  }
});

test("streamed pieces join to the result text and never split a character", async () => {
  const model = await demo();
  const generation = model.generate("你好，世界", { seed: 7, maxTokens: 64, temperature: 1.5, topK: 0, topP: 1, minP: 0 });
  const pieces = await collect(generation);
  const result = await generation.result;
  assert.equal(pieces.join(""), result.text);
  assert.equal(result.text, model.detokenize(result.tokens));
  for (const piece of pieces) {
    assert.ok(!/[\uD800-\uDBFF]$/.test(piece), `piece ends inside a surrogate pair: ${JSON.stringify(piece)}`);
    assert.ok(!/^[\uDC00-\uDFFF]/.test(piece), `piece starts inside a surrogate pair: ${JSON.stringify(piece)}`);
  }
});

test("maxTokens ends with finishReason length; a stop string ends before it with stop", async () => {
  const model = await demo();
  const full = await model.generate("Hello", { seed: 5, maxTokens: 30, ignoreEos: true }).complete();
  assert.equal(full.finishReason, "length");
  const target = full.text.slice(10, 14);
  assert.ok(target.length > 0);
  const stopped = await model.generate("Hello", { seed: 5, maxTokens: 30, ignoreEos: true, stop: [target] }).complete();
  assert.equal(stopped.finishReason, "stop");
  assert.equal(stopped.text, full.text.slice(0, full.text.indexOf(target)));
});

test("a follow-up request reuses the KV cache of its shared prefix and generates the same as a cold start", async () => {
  const model = await demo();
  const first = model.tokenize("A long shared prefix that both requests start with, then");
  const warmed = await model.generate(first, { temperature: 0, maxTokens: 4, ignoreEos: true }).complete();
  const followUp = [...first, ...warmed.tokens, ...model.tokenize(" more")];
  const warm = await model.generate(followUp, { temperature: 0, maxTokens: 8, ignoreEos: true }).complete();
  assert.ok(warm.cachedPromptTokens >= first.length, `reused ${warm.cachedPromptTokens} tokens`);
  const cold = await loadModel(testModel({ preset: "demo" }), { contextSize: 512 });
  try {
    const fresh = await cold.generate(followUp, { temperature: 0, maxTokens: 8, ignoreEos: true }).complete();
    assert.equal(fresh.cachedPromptTokens, 0);
    assert.deepEqual(warm.tokens, fresh.tokens);
  } finally {
    await cold.close();
  }
});

test("breaking out of the stream cancels the generation and frees the model", async () => {
  const model = await demo();
  const generation = model.generate("Count:", { seed: 1, maxTokens: 200, ignoreEos: true });
  let pieces = 0;
  for await (const _ of generation) if (++pieces === 3) break;
  const result = await generation.result;
  assert.equal(result.finishReason, "abort");
  assert.ok(result.completionTokens < 200);
  const next = await model.generate("Next", { maxTokens: 2, ignoreEos: true }).complete();
  assert.equal(next.completionTokens, 2);
});

test("an abort signal ends the generation", async () => {
  const model = await demo();
  const controller = new AbortController();
  const generation = model.generate("Go", { seed: 1, maxTokens: 500, ignoreEos: true, signal: controller.signal });
  let pieces = 0;
  for await (const _ of generation) if (++pieces === 2) controller.abort();
  assert.equal((await generation.result).finishReason, "abort");
});

test("a long prompt is evaluated a batch at a time, letting the event loop run and an abort stop it", async () => {
  const model = await loadModel(testModel({ preset: "demo" }), { contextSize: 512, batchSize: 8 });
  try {
    const prompt = Array.from({ length: 64 }, (_, i) => 1000 + i);
    const controller = new AbortController();
    const generation = model.generate(prompt, { maxTokens: 4, signal: controller.signal });
    let turns = 0;
    const spin = () => {
      turns++;
      if (turns === 2) controller.abort();
      else if (turns < 2) setImmediate(spin);
    };
    setImmediate(spin);
    const result = await generation.complete();
    assert.equal(result.finishReason, "abort");
    assert.equal(result.completionTokens, 0);
    const evaluated = model.engine.kv.length;
    assert.ok(evaluated > 0 && evaluated < prompt.length && evaluated % 8 === 0, `${evaluated} of ${prompt.length} prompt tokens evaluated`);
  } finally {
    await model.close();
  }
});

test("requests are served one at a time in arrival order", async () => {
  const model = await demo();
  const order: number[] = [];
  const runs = [0, 1, 2].map(async (i) => {
    const generation = model.generate(`Request ${i}`, { maxTokens: 3, ignoreEos: true, seed: i });
    for await (const _ of generation) order.push(i);
  });
  await Promise.all(runs);
  assert.deepEqual(new Set(order), new Set([0, 1, 2]));
  assert.deepEqual(order, [...order].sort((a, b) => a - b), `pieces interleaved: ${order}`);
});

test("chat renders the model's template and generates a reply", async () => {
  const model = await demo();
  const prompt = model.renderChat([{ role: "user", content: "Hi!" }]);
  assert.ok(prompt.includes("<|im_start|>user\nHi!<|im_end|>"), prompt);
  const viaChat = await model.chat([{ role: "user", content: "Hi!" }], { seed: 3, maxTokens: 5 }).complete();
  // a prompt rendered by hand is markup: its special-token text is parsed only when asked for
  const viaPrompt = await model.generate(prompt, { seed: 3, maxTokens: 5, parseSpecial: true }).complete();
  assert.deepEqual(viaChat.tokens, viaPrompt.tokens);
});

test("bad requests fail clearly", async () => {
  const model = await demo();
  assert.throws(() => model.generate(""), /prompt is empty/);
  assert.throws(() => model.generate("x", { maxTokens: -1 }), /maxTokens/);
  assert.throws(() => model.generate("x", { temperature: Number.NaN }), /temperature/);
  assert.throws(() => model.generate(new Array(600).fill(100)), /context holds 512/);
});
