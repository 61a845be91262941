import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { loadModel, Model } from "../src/engine/model.js";
import { GenerateOptions } from "../src/engine/generation.js";
import { startServer, RunningServer } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";

const MODEL_ID = "tiny-test";

let model: Model;
let server: RunningServer;
let client: OpenAI;

before(async () => {
  // untied output weights: this tiny model's text varies instead of repeating one token
  model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }));
  server = await startServer({ model, modelId: MODEL_ID, port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "not-checked", maxRetries: 0 });
});

after(async () => {
  await server.close();
  await model.close();
});

/** The same sampling request in the API's spelling and the library's. */
const SAMPLINGS: { api: Record<string, unknown>; library: GenerateOptions }[] = [
  {
    api: { seed: 7, temperature: 1, presence_penalty: 2, frequency_penalty: 1.5, max_tokens: 40 },
    library: { seed: 7, temperature: 1, presencePenalty: 2, frequencyPenalty: 1.5, maxTokens: 40 },
  },
  {
    api: { seed: 123, temperature: 0.7, top_p: 0.9, top_k: 20, min_p: 0.02, repeat_penalty: 1.3, max_completion_tokens: 25 },
    library: { seed: 123, temperature: 0.7, topP: 0.9, topK: 20, minP: 0.02, repeatPenalty: 1.3, maxTokens: 25 },
  },
];

/** Plain text messages: both the library's and the client's types accept them. */
const MESSAGES: { role: "system" | "user"; content: string }[] = [
  { role: "system", content: "You are a storyteller." },
  { role: "user", content: "Tell me a story about a cat." },
];

/** Reads a stream through the client, checking the framing of every chunk on the way. */
async function readChatStream(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>, includeUsage: boolean) {
  let text = "";
  let finish: string | null = null;
  let usage: OpenAI.Completions.CompletionUsage | null | undefined;
  const ids = new Set<string>();
  let first = true;
  for await (const chunk of stream) {
    ids.add(chunk.id);
    assert.equal(chunk.object, "chat.completion.chunk");
    assert.equal(chunk.model, MODEL_ID);
    if (chunk.usage) {
      assert.deepEqual(chunk.choices, [], "usage comes in an extra chunk with no choices");
      usage = chunk.usage;
      continue;
    }
    if (includeUsage) assert.equal(chunk.usage, null, "with include_usage, every other chunk has usage: null");
    else assert.ok(!("usage" in chunk));
    const [choice] = chunk.choices;
    assert.equal(choice!.index, 0);
    if (first) assert.equal(choice!.delta.role, "assistant", "the first delta names the role");
    first = false;
    assert.equal(finish, null, "nothing follows the chunk with the finish reason but usage");
    text += choice!.delta.content ?? "";
    finish = choice!.finish_reason;
  }
  assert.equal(ids.size, 1, "every chunk carries the completion's id");
  return { text, finish, usage };
}

test("chat completions, whole and streamed, give the text model.chat generates for the same request and seed", async () => {
  for (const { api, library } of SAMPLINGS) {
    const expected = await model.chat(MESSAGES, library).complete();
    assert.ok(expected.text.length > 20, "the model says something worth comparing");

    const whole = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, ...api });
    assert.match(whole.id, /^chatcmpl-/);
    assert.equal(whole.object, "chat.completion");
    assert.equal(whole.model, MODEL_ID);
    assert.ok(Math.abs(whole.created - Date.now() / 1000) < 60);
    assert.equal(whole.choices.length, 1);
    assert.deepEqual(whole.choices[0], { index: 0, message: { role: "assistant", content: expected.text, refusal: null }, logprobs: null, finish_reason: expected.finishReason });
    assert.equal(whole.usage?.prompt_tokens, expected.promptTokens);
    assert.equal(whole.usage?.completion_tokens, expected.completionTokens);
    assert.equal(whole.usage?.total_tokens, expected.promptTokens + expected.completionTokens);

    const streamed = await readChatStream(await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, ...api, stream: true, stream_options: { include_usage: true } }), true);
    assert.equal(streamed.text, expected.text);
    assert.equal(streamed.finish, expected.finishReason);
    assert.equal(streamed.usage?.completion_tokens, expected.completionTokens);
    assert.equal(streamed.usage?.prompt_tokens, expected.promptTokens);
  }
});

test("a stop string ends the reply before it, streamed or not, as in the library", async () => {
  const { api, library } = SAMPLINGS[0]!;
  const unstopped = await model.chat(MESSAGES, library).complete();
  const stop = unstopped.text.slice(12, 15);
  const expected = await model.chat(MESSAGES, { ...library, stop: [stop, "never appears"] }).complete();
  assert.equal(expected.finishReason, "stop");
  assert.ok(expected.text.length < unstopped.text.length);

  const whole = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, ...api, stop: [stop, "never appears"] });
  assert.equal(whole.choices[0]!.message.content, expected.text);
  assert.equal(whole.choices[0]!.finish_reason, "stop");
  const streamed = await readChatStream(await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, ...api, stop, stream: true }), false);
  assert.equal(streamed.text, expected.text);
  assert.equal(streamed.finish, "stop");
  assert.equal(streamed.usage, undefined, "no usage chunk unless asked for");
});

test("text completions, whole and streamed, give the text model.generate generates; token-id prompts too", async () => {
  const prompt = "Once upon a time";
  for (const { api, library } of SAMPLINGS) {
    const expected = await model.generate(prompt, library).complete();

    const whole = await client.completions.create({ model: MODEL_ID, prompt, ...api });
    assert.match(whole.id, /^cmpl-/);
    assert.equal(whole.object, "text_completion");
    assert.equal(whole.model, MODEL_ID);
    assert.deepEqual(whole.choices, [{ text: expected.text, index: 0, logprobs: null, finish_reason: expected.finishReason }]);
    assert.equal(whole.usage?.prompt_tokens, expected.promptTokens);
    assert.equal(whole.usage?.completion_tokens, expected.completionTokens);

    const byIds = await client.completions.create({ model: MODEL_ID, prompt: model.tokenize(prompt), ...api });
    assert.equal(byIds.choices[0]!.text, expected.text);

    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.Completions.CompletionUsage | undefined;
    for await (const chunk of await client.completions.create({ model: MODEL_ID, prompt, ...api, stream: true, stream_options: { include_usage: true } })) {
      assert.equal(chunk.object, "text_completion");
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        text += choice.text;
        finish = choice.finish_reason ?? finish;
      }
    }
    assert.equal(text, expected.text);
    assert.equal(finish, expected.finishReason);
    assert.equal(usage?.completion_tokens, expected.completionTokens);
  }
});

test("/v1/models lists the served model, /health answers, an unknown model is a 404 with strictModel", async () => {
  const models = await client.models.list();
  assert.deepEqual(
    models.data.map((entry) => [entry.id, entry.object, entry.owned_by]),
    [[MODEL_ID, "model", "smallthinker"]],
  );
  assert.equal((await client.models.retrieve(MODEL_ID)).id, MODEL_ID);
  await assert.rejects(client.models.retrieve("gpt-4o"), (error: unknown) => error instanceof OpenAI.NotFoundError && error.code === "model_not_found");
  // by default any name means the one model served (see the leniency tests); strictModel restores the 404
  const strict = await startServer({ model, modelId: MODEL_ID, port: 0, strictModel: true });
  try {
    const strictClient = new OpenAI({ baseURL: `${strict.url}/v1`, apiKey: "not-checked", maxRetries: 0 });
    await assert.rejects(
      strictClient.chat.completions.create({ model: "gpt-4o", messages: MESSAGES }),
      (error: unknown) => error instanceof OpenAI.NotFoundError && error.param === "model",
    );
  } finally {
    await strict.close();
  }
  const health = await fetch(`${server.url}/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: "ok", model: MODEL_ID, running: 0, waiting: 0 });
  const head = await fetch(`${server.url}/health`, { method: "HEAD" });
  assert.equal(head.status, 200, "HEAD is answered like GET");
  assert.equal(await head.text(), "");
});

test("the next turn of a chat reuses the KV cache of the turns before it", async () => {
  const sampling = { seed: 3, temperature: 1, frequency_penalty: 1, max_tokens: 12 };
  const turn1: ChatCompletionMessageParam[] = [
    { role: "system", content: "You are a patient assistant who answers every question about the weather at length." },
    { role: "user", content: "What is the weather like in Lisbon in spring?" },
  ];
  const first = await client.chat.completions.create({ model: MODEL_ID, messages: turn1, ...sampling });
  const turn2 = [...turn1, first.choices[0]!.message, { role: "user" as const, content: "And in autumn?" }];
  const followUp = await client.chat.completions.create({ model: MODEL_ID, messages: turn2, ...sampling });
  const firstPrompt = first.usage!.prompt_tokens;
  // the reply, read back from text, may tokenize differently where it meets the template: at
  // least the whole first prompt is reused
  assert.ok(followUp.usage!.prompt_tokens_details!.cached_tokens! >= firstPrompt, `cached ${followUp.usage!.prompt_tokens_details!.cached_tokens} of ${firstPrompt}`);

  const other: ChatCompletionMessageParam[] = [{ role: "user", content: "Name three rivers in Europe, please, and say where each of them flows into the sea." }];
  await client.chat.completions.create({ model: MODEL_ID, messages: other, ...sampling });
  const cold = await client.chat.completions.create({ model: MODEL_ID, messages: turn2, ...sampling });
  assert.ok(cold.usage!.prompt_tokens_details!.cached_tokens! < firstPrompt / 2, "after another conversation, little is shared");
  assert.equal(cold.choices[0]!.message.content, followUp.choices[0]!.message.content, "the reply does not depend on the cache");
});
