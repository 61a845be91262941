import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { ChatMessage } from "../src/chat/index.js";
import { loadModel, Model, type ChatOptions } from "../src/engine/model.js";
import { OTHER_SERVERS_FIELDS } from "../src/server/compat.js";
import { startServer, RunningServer } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";

/**
 * Lenient where it is safe: any model name means the one served, fields other servers accept are
 * taken (llama-server's honoured, the rest ignored), wrongly typed ones are still refused.
 */

const MODEL_ID = "tiny-test";
const MESSAGES: ChatMessage[] = [{ role: "user", content: "Tell me a story about a cat." }];

let model: Model;
let server: RunningServer;

before(async () => {
  model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }), { contextSize: 512 });
  server = await startServer({ model, modelId: MODEL_ID, port: 0, limits: { maxTokens: 64 } });
});

after(async () => {
  await server.close();
  await model.close();
});

interface Reply {
  status: number;
  body: {
    model?: string;
    choices?: { message: { content: string }; finish_reason: string }[];
    usage?: { prompt_tokens: number; completion_tokens: number };
    error?: { param: string | null; code: string | null; message: string };
  };
}

async function chat(fields: Record<string, unknown>): Promise<Reply> {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL_ID, messages: MESSAGES, ...fields }),
  });
  return { status: response.status, body: (await response.json()) as Reply["body"] };
}

async function chatText(fields: Record<string, unknown>): Promise<string> {
  const reply = await chat(fields);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body.choices![0]!.message.content;
}

const library = async (options: ChatOptions) => (await model.chat(MESSAGES, options).complete()).text;

const BASE = { seed: 5, temperature: 1.2, max_tokens: 24, ignore_eos: true };
const LIBRARY_BASE: ChatOptions = { seed: 5, temperature: 1.2, maxTokens: 24, ignoreEos: true };

test("LangChain-style default model names get 200, and the reply names the served model", async () => {
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  const expected = await library(LIBRARY_BASE);
  for (const name of ["gpt-3.5-turbo", "gpt-4o-mini", "gpt-4o", "llama3", ""]) {
    const reply = await client.chat.completions.create({ model: name, messages: MESSAGES, ...BASE } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.equal(reply.model, MODEL_ID, name);
    assert.equal(reply.choices[0]!.message.content, expected, name);
    const completion = await client.completions.create({ model: name, prompt: "Once", max_tokens: 2 });
    assert.equal(completion.model, MODEL_ID, name);
  }
});

test("n_predict is max_tokens (-1: as many as allowed); the newer names win over it", async () => {
  const five = await chat({ ...BASE, max_tokens: undefined, n_predict: 5 });
  assert.equal(five.body.usage!.completion_tokens, 5);
  assert.equal(five.body.choices![0]!.message.content, await library({ ...LIBRARY_BASE, maxTokens: 5 }));
  const unlimited = await chat({ ...BASE, max_tokens: undefined, n_predict: -1 });
  assert.equal(unlimited.body.usage!.completion_tokens, 64, "the server's limit");
  assert.equal((await chat({ ...BASE, max_tokens: 3, n_predict: 9 })).body.usage!.completion_tokens, 3);
  assert.equal((await chat({ ...BASE, max_tokens: undefined, max_completion_tokens: 4, n_predict: 9 })).body.usage!.completion_tokens, 4);
});

test("typical_p, min_keep and repeat_last_n sample as the library does, and change the reply", async () => {
  const plain = await chatText(BASE);
  const cases: [Record<string, unknown>, ChatOptions][] = [
    [{ typical_p: 0.2 }, { typicalP: 0.2 }],
    [{ top_p: 0.05, min_keep: 8 }, { topP: 0.05, minKeep: 8 }],
    [{ repeat_penalty: 3, repeat_last_n: -1 }, { repeatPenalty: 3, repeatLastN: -1 }],
  ];
  for (const [api, options] of cases) {
    const text = await chatText({ ...BASE, ...api });
    assert.equal(text, await library({ ...LIBRARY_BASE, ...options }), JSON.stringify(api));
    assert.notEqual(text, plain, `${JSON.stringify(api)} changes the reply`);
  }
  // min_keep is what keeps more than the one token top_p 0.05 leaves
  assert.notEqual(await chatText({ ...BASE, top_p: 0.05, min_keep: 8 }), await chatText({ ...BASE, top_p: 0.05 }));
  // repeat_last_n 0 turns the penalties off
  assert.equal(await chatText({ ...BASE, repeat_penalty: 3, repeat_last_n: 0 }), plain);
  assert.notEqual(await chatText({ ...BASE, repeat_penalty: 3, repeat_last_n: 8 }), await chatText({ ...BASE, repeat_penalty: 3, repeat_last_n: -1 }));
});

test("chat_template_kwargs reach the template: enable_thinking false adds Qwen3's empty think block", async () => {
  const plain = await chat(BASE);
  const noThinking = await chat({ ...BASE, chat_template_kwargs: { enable_thinking: false } });
  const thinkBlock = model.tokenizer.encode("<think>\n\n</think>\n\n").length;
  assert.equal(noThinking.body.usage!.prompt_tokens, plain.body.usage!.prompt_tokens + thinkBlock);
  assert.equal(noThinking.body.choices![0]!.message.content, await library({ ...LIBRARY_BASE, templateVariables: { enable_thinking: false } }));
  assert.equal((await chat({ ...BASE, chat_template_kwargs: { enable_thinking: true } })).body.usage!.prompt_tokens, plain.body.usage!.prompt_tokens);
});

test("cache_prompt, id_slot and tool_choice none with tools are accepted and change nothing", async () => {
  const plain = await chatText(BASE);
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }];
  for (const fields of [{ cache_prompt: false }, { cache_prompt: true }, { id_slot: 0 }, { id_slot: -1 }, { tools, tool_choice: "none" }, { tools: [], tool_choice: "auto" }]) {
    assert.equal(await chatText({ ...BASE, ...fields }), plain, JSON.stringify(fields));
  }
});

/** A plausible value of the kind each ignored field takes, as the servers that define them send. */
const PLAUSIBLE: Record<string, unknown> = {
  user: "user-1234", metadata: { app: "x" }, store: false, service_tier: "auto", prompt_cache_key: "k", safety_identifier: "s",
  id_slot: 0, timings_per_token: false, cache_prompt: true, parallel_tool_calls: true,
  mirostat: 0, mirostat_tau: 5, mirostat_eta: 0.1, dynatemp_range: 0, dynatemp_exponent: 1,
  dry_multiplier: 0, dry_base: 1.75, dry_allowed_length: 2, dry_penalty_last_n: -1, dry_sequence_breakers: ["\n", ":"],
  xtc_probability: 0, xtc_threshold: 0.1, top_n_sigma: -1,
};

test("fields other servers accept are ignored; the README lists them", async () => {
  assert.deepEqual(Object.keys(PLAUSIBLE).sort(), [...OTHER_SERVERS_FIELDS].sort(), "every field is tried");
  const plain = await chatText(BASE);
  assert.equal(await chatText({ ...BASE, ...PLAUSIBLE, n_probs: 0 }), plain);
  const completion = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL_ID, prompt: "Once", max_tokens: 2, ...PLAUSIBLE, parallel_tool_calls: undefined }),
  });
  assert.equal(completion.status, 200);
  const { readFileSync } = await import("node:fs");
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  for (const field of OTHER_SERVERS_FIELDS) assert.ok(readme.includes(`\`${field}\``), `README lists ${field}`);
});

test("wrongly typed or unsupported values of known fields still get a 400 naming the field", async () => {
  const cases: [Record<string, unknown>, string, string?][] = [
    [{ n_predict: "5" }, "n_predict", "invalid_type"],
    [{ n_predict: 0 }, "n_predict", "invalid_value"],
    [{ n_predict: -2 }, "n_predict", "invalid_value"],
    [{ typical_p: 0 }, "typical_p", "invalid_value"],
    [{ typical_p: 1.5 }, "typical_p", "invalid_value"],
    [{ typical_p: "0.5" }, "typical_p", "invalid_type"],
    [{ min_keep: -1 }, "min_keep", "invalid_value"],
    [{ min_keep: 2.5 }, "min_keep", "invalid_type"],
    [{ repeat_last_n: -2 }, "repeat_last_n", "invalid_value"],
    [{ cache_prompt: "yes" }, "cache_prompt", "invalid_type"],
    [{ id_slot: 1.5 }, "id_slot", "invalid_type"],
    [{ user: 42 }, "user", "invalid_type"],
    [{ metadata: "x" }, "metadata", "invalid_type"],
    [{ dry_sequence_breakers: "\n" }, "dry_sequence_breakers", "invalid_type"],
    [{ mirostat: 2 }, "mirostat", "unsupported_value"],
    [{ dry_multiplier: 0.8 }, "dry_multiplier", "unsupported_value"],
    [{ xtc_probability: "0" }, "xtc_probability", "invalid_type"],
    [{ n_probs: 5 }, "n_probs", "unsupported_value"],
    [{ chat_template_kwargs: "enable_thinking" }, "chat_template_kwargs", "invalid_type"],
    [{ chat_template_kwargs: { messages: [] } }, "chat_template_kwargs.messages", "invalid_value"],
    [{ chat_template_kwargs: { add_generation_prompt: false } }, "chat_template_kwargs.add_generation_prompt", "invalid_value"],
    [{ chat_template_kwargs: { deep: JSON.parse("[".repeat(40) + "]".repeat(40)) as unknown } }, "chat_template_kwargs.deep", "invalid_value"],
    [{ tools: [{ type: "function", function: { name: "f" } }], tool_choice: "required" }, "tool_choice", "unsupported_value"],
    [{ tools: [{ type: "function", function: { name: "f" } }], tool_choice: "auto" }, "tools", "unsupported_value"],
    [{ tools: "f", tool_choice: "none" }, "tools", "invalid_type"],
    [{ messages: [{ role: "user", content: "x", name: 5 }] }, "messages[0].name", "invalid_type"],
    [{ messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a", reasoning_content: 5 }] }, "messages[1].reasoning_content", "invalid_type"],
    [{ temprature: 0.5 }, "temprature", "unknown_parameter"],
  ];
  for (const [fields, param, code] of cases) {
    const reply = await chat({ max_tokens: 2, ...fields });
    assert.equal(reply.status, 400, `${JSON.stringify(fields)}: ${JSON.stringify(reply.body)}`);
    assert.equal(reply.body.error!.param, param, JSON.stringify(fields));
    if (code) assert.equal(reply.body.error!.code, code, JSON.stringify(fields));
  }
  // nested past what walking it recursively could survive: still a 400, not a 500
  const depth = 200_000;
  const deep = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: `${JSON.stringify({ model: MODEL_ID, messages: MESSAGES }).slice(0, -1)}, "chat_template_kwargs": {"deep": ${"[".repeat(depth)}${"]".repeat(depth)}}}`,
  });
  assert.equal(deep.status, 400);
  assert.equal(((await deep.json()) as Reply["body"]).error!.param, "chat_template_kwargs.deep");
  const completion = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL_ID, prompt: "x", parse_special: "yes" }),
  });
  assert.equal(completion.status, 400);
  assert.equal(((await completion.json()) as Reply["body"]).error!.param, "parse_special");
});
