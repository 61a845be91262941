import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, Model } from "../src/engine/model.js";
import { gv } from "../src/gguf/writer.js";
import { startServer, RunningServer, RequestRecord } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";
import { rewriteGguf } from "./helpers/rewrite.js";

const MODEL_ID = "tiny-test";
const CONTEXT = 256;
const MAX_TOKENS = 32;
const MAX_BODY = 64 * 1024;

let model: Model;
let server: RunningServer;
const records: RequestRecord[] = [];

before(async () => {
  model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }), { contextSize: CONTEXT });
  server = await startServer({ model, modelId: MODEL_ID, port: 0, limits: { maxTokens: MAX_TOKENS, maxBodyBytes: MAX_BODY }, log: (record) => records.push(record) });
});

after(async () => {
  await server.close();
  await model.close();
});

interface RawRequest {
  method?: string;
  path?: string;
  contentType?: string | null;
  body?: string;
}

/** Sends one request over a fresh connection; the status and body text that came back. */
function send({ method = "POST", path = "/v1/chat/completions", contentType = "application/json", body }: RawRequest): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = contentType === null ? {} : { "content-type": contentType };
    const request = httpRequest(`${server.url}${path}`, { method, headers, agent: false }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, text, headers: response.headers }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

function assertErrorBody(text: string, context: string): { message: string; type: string; param: string | null; code: string | null } {
  const parsed = JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string | null } };
  assert.deepEqual(Object.keys(parsed), ["error"], context);
  const { error } = parsed;
  assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"], context);
  assert.equal(typeof error.message, "string", context);
  assert.ok(error.message.length > 0 && error.message.length < 400, context);
  assert.equal(typeof error.type, "string", context);
  assert.ok(error.param === null || typeof error.param === "string", context);
  assert.ok(error.code === null || typeof error.code === "string", context);
  return error;
}

const chat = (fields: Record<string, unknown> = {}) => ({ model: MODEL_ID, messages: [{ role: "user", content: "Hello" }], max_tokens: 2, ...fields });
const completion = (fields: Record<string, unknown> = {}) => ({ model: MODEL_ID, prompt: "Hello", max_tokens: 2, ...fields });
const json = (value: unknown) => JSON.stringify(value);

/** Requests every server must refuse, with the status and (where there is one) the parameter at fault. */
const BAD_REQUESTS: { name: string; exchange: RawRequest; status: number; param?: string; code?: string }[] = [
  { name: "truncated JSON", exchange: { body: '{"model": "tiny-test", "messages": [' }, status: 400, code: "invalid_json" },
  { name: "empty body", exchange: { body: "" }, status: 400, code: "invalid_json" },
  { name: "NaN is not JSON", exchange: { body: json(chat()).replace("}", ', "temperature": NaN}') }, status: 400, code: "invalid_json" },
  { name: "an array body", exchange: { body: "[]" }, status: 400 },
  { name: "a null body", exchange: { body: "null" }, status: 400 },
  { name: "a string body", exchange: { body: '"hi"' }, status: 400 },
  { name: "no model", exchange: { body: json({ messages: [{ role: "user", content: "x" }] }) }, status: 400, param: "model", code: "missing_required_parameter" },
  { name: "no messages", exchange: { body: json({ model: MODEL_ID }) }, status: 400, param: "messages", code: "missing_required_parameter" },
  { name: "messages a string", exchange: { body: json(chat({ messages: "hi" })) }, status: 400, param: "messages", code: "invalid_type" },
  { name: "no messages at all", exchange: { body: json(chat({ messages: [] })) }, status: 400, param: "messages" },
  { name: "unknown role", exchange: { body: json(chat({ messages: [{ role: "wizard", content: "x" }] })) }, status: 400, param: "messages[0].role" },
  { name: "user message without content", exchange: { body: json(chat({ messages: [{ role: "user" }] })) }, status: 400, param: "messages[0].content" },
  { name: "numeric content", exchange: { body: json(chat({ messages: [{ role: "user", content: 5 }] })) }, status: 400, param: "messages[0].content" },
  { name: "image content", exchange: { body: json(chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] })) }, status: 400, param: "messages[0].content[0].type" },
  { name: "numeric model", exchange: { body: json(chat({ model: 5 })) }, status: 400, param: "model" },
  { name: "negative max_tokens", exchange: { body: json(chat({ max_tokens: -1 })) }, status: 400, param: "max_tokens" },
  { name: "zero max_tokens", exchange: { body: json(chat({ max_tokens: 0 })) }, status: 400, param: "max_tokens" },
  { name: "fractional max_tokens", exchange: { body: json(chat({ max_tokens: 1.5 })) }, status: 400, param: "max_tokens" },
  { name: "max_tokens as text", exchange: { body: json(chat({ max_tokens: "10" })) }, status: 400, param: "max_tokens" },
  { name: "max_tokens past the server's limit", exchange: { body: json(chat({ max_tokens: MAX_TOKENS + 1 })) }, status: 400, param: "max_tokens" },
  { name: "max_completion_tokens of 1e9", exchange: { body: json(chat({ max_completion_tokens: 1e9 })) }, status: 400, param: "max_completion_tokens" },
  { name: "temperature 1e9", exchange: { body: json(chat({ temperature: 1e9 })) }, status: 400, param: "temperature" },
  { name: "negative temperature", exchange: { body: json(chat({ temperature: -1 })) }, status: 400, param: "temperature" },
  { name: "temperature as text", exchange: { body: json(chat({ temperature: "NaN" })) }, status: 400, param: "temperature", code: "invalid_type" },
  { name: "top_p 0", exchange: { body: json(chat({ top_p: 0 })) }, status: 400, param: "top_p" },
  { name: "top_p 1.5", exchange: { body: json(chat({ top_p: 1.5 })) }, status: 400, param: "top_p" },
  { name: "negative top_k", exchange: { body: json(chat({ top_k: -1 })) }, status: 400, param: "top_k" },
  { name: "min_p 2", exchange: { body: json(chat({ min_p: 2 })) }, status: 400, param: "min_p" },
  { name: "repeat_penalty 0", exchange: { body: json(chat({ repeat_penalty: 0 })) }, status: 400, param: "repeat_penalty" },
  { name: "repeat_penalty 1e-300", exchange: { body: json(chat({ repeat_penalty: 1e-300 })) }, status: 400, param: "repeat_penalty" },
  { name: "presence_penalty 3", exchange: { body: json(chat({ presence_penalty: 3 })) }, status: 400, param: "presence_penalty" },
  { name: "frequency_penalty -1e300", exchange: { body: json(chat({ frequency_penalty: -1e300 })) }, status: 400, param: "frequency_penalty" },
  { name: "negative seed", exchange: { body: json(chat({ seed: -1 })) }, status: 400, param: "seed" },
  { name: "seed past 2^53", exchange: { body: json(chat({ seed: 2 ** 60 })) }, status: 400, param: "seed" },
  { name: "n = 2", exchange: { body: json(chat({ n: 2 })) }, status: 400, param: "n" },
  { name: "17 stop strings", exchange: { body: json(chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) })) }, status: 400, param: "stop" },
  { name: "5000 stop strings", exchange: { body: json(chat({ stop: Array(5000).fill("x") })) }, status: 400, param: "stop" },
  { name: "an empty stop string", exchange: { body: json(chat({ stop: [""] })) }, status: 400, param: "stop[0]" },
  { name: "a numeric stop", exchange: { body: json(chat({ stop: 5 })) }, status: 400, param: "stop" },
  { name: "a very long stop string", exchange: { body: json(chat({ stop: "x".repeat(1000) })) }, status: 400, param: "stop" },
  { name: "stream as text", exchange: { body: json(chat({ stream: "yes" })) }, status: 400, param: "stream" },
  { name: "stream_options without stream", exchange: { body: json(chat({ stream_options: { include_usage: true } })) }, status: 400, param: "stream_options" },
  { name: "unknown stream option", exchange: { body: json(chat({ stream: true, stream_options: { include_cost: true } })) }, status: 400, param: "stream_options.include_cost" },
  { name: "logprobs", exchange: { body: json(chat({ logprobs: true })) }, status: 400, param: "logprobs" },
  { name: "tools", exchange: { body: json(chat({ tools: [{ type: "function", function: { name: "f" } }] })) }, status: 400, param: "tools" },
  { name: "logit_bias", exchange: { body: json(chat({ logit_bias: { "42": 100 } })) }, status: 400, param: "logit_bias" },
  { name: "a misspelt parameter", exchange: { body: json(chat({ temprature: 0.5 })) }, status: 400, param: "temprature", code: "unknown_parameter" },
  { name: "a prompt over the context", exchange: { body: json(chat({ messages: [{ role: "user", content: "word ".repeat(CONTEXT) }] })) }, status: 400, param: "messages", code: "context_length_exceeded" },
  {
    name: "prompt + max_tokens over the context",
    exchange: { path: "/v1/completions", body: json(completion({ prompt: Array(CONTEXT - 10).fill(42), max_tokens: 20 })) },
    status: 400,
    param: "prompt",
    code: "context_length_exceeded",
  },
  { name: "no prompt", exchange: { path: "/v1/completions", body: json({ model: MODEL_ID }) }, status: 400, param: "prompt" },
  { name: "an empty prompt", exchange: { path: "/v1/completions", body: json(completion({ prompt: "" })) }, status: 400, param: "prompt" },
  { name: "a negative token id", exchange: { path: "/v1/completions", body: json(completion({ prompt: [1, -1] })) }, status: 400, param: "prompt[1]" },
  { name: "a token id past the vocabulary", exchange: { path: "/v1/completions", body: json(completion({ prompt: [1, 99_999_999] })) }, status: 400, param: "prompt" },
  { name: "two prompts", exchange: { path: "/v1/completions", body: json(completion({ prompt: ["a", "b"] })) }, status: 400, param: "prompt" },
  { name: "echo", exchange: { path: "/v1/completions", body: json(completion({ echo: true })) }, status: 400, param: "echo" },
  { name: "messages sent to completions", exchange: { path: "/v1/completions", body: json(chat()) }, status: 400, param: "prompt" },
  { name: "text/plain", exchange: { contentType: "text/plain", body: json(chat()) }, status: 415 },
  { name: "no content type", exchange: { contentType: null, body: json(chat()) }, status: 415 },
  { name: "a body over the limit", exchange: { body: json(chat({ messages: [{ role: "user", content: "x".repeat(MAX_BODY) }] })) }, status: 413 },
  { name: "an unknown route", exchange: { path: "/v1/embeddings", body: json(chat()) }, status: 404 },
  { name: "a GET of a POST route", exchange: { method: "GET", path: "/v1/chat/completions" }, status: 405 },
  { name: "a DELETE", exchange: { method: "DELETE", path: "/v1/completions" }, status: 405 },
  { name: "a POST of a GET route", exchange: { method: "POST", path: "/v1/models", body: "{}" }, status: 405 },
  { name: "an unknown model's page", exchange: { method: "GET", path: "/v1/models/gpt-4o" }, status: 404, code: "model_not_found" },
  { name: "a malformed percent-encoding", exchange: { method: "GET", path: "/v1/models/%E0%A4%A" }, status: 404 },
];

test("bad requests get the right 4xx with an OpenAI-shaped error naming the parameter", async () => {
  for (const { name, exchange, status, param, code } of BAD_REQUESTS) {
    const response = await send(exchange);
    assert.equal(response.status, status, `${name}: ${response.text}`);
    const error = assertErrorBody(response.text, name);
    if (param !== undefined) assert.equal(error.param, param, name);
    if (code !== undefined) assert.equal(error.code, code, name);
    if (status === 405) assert.ok(response.headers.allow, `${name}: a 405 says what is allowed`);
  }
});

test("with strictModel, a request naming another model is a 404 naming the model", async () => {
  // the default server takes any name to mean its model (see the leniency tests)
  const strict = await startServer({ model, modelId: MODEL_ID, port: 0, strictModel: true });
  try {
    const response = await fetch(`${strict.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: json(chat({ model: "gpt-4o" })) });
    assert.equal(response.status, 404);
    const error = assertErrorBody(await response.text(), "unknown model");
    assert.equal(error.param, "model");
    assert.equal(error.code, "model_not_found");
    assert.equal((await fetch(`${strict.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: json(chat()) })).status, 200);
  } finally {
    await strict.close();
  }
});

test("a body sent without a length is cut off at the limit too", async () => {
  const response = await new Promise<number>((resolve, reject) => {
    const request = httpRequest(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "transfer-encoding": "chunked" }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    // the server may hang up while the rest of the body is still being written
    request.on("error", () => {});
    request.on("close", () => reject(new Error("closed without a response")));
    const piece = "x".repeat(8192);
    for (let sent = 0; sent < MAX_BODY * 2; sent += piece.length) request.write(piece);
    request.end();
  });
  assert.equal(response, 413);
});

test("bytes that are not HTTP get a 400 in the same error shape", async () => {
  const text = await new Promise<string>((resolve, reject) => {
    const socket = connect(server.port, "127.0.0.1", () => socket.end("HELLO THERE\r\n\r\n"));
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
  });
  assert.match(text, /^HTTP\/1\.1 400 /);
  assertErrorBody(text.slice(text.indexOf("\r\n\r\n") + 4), "not HTTP");
});

test("a conversation the model's chat template refuses gets a 400", async () => {
  const dir = mkdtempSync(join(tmpdir(), "st-serve-"));
  const path = join(dir, "strict-template.gguf");
  // as strict templates do (Llama 2's, Gemma's): only alternating user and assistant turns
  const template = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System messages are not supported.') }}{% endif %}{{ m.content }}{% endfor %}";
  rewriteGguf(testModel({ preset: "tiny", shape: { tiedOutput: false } }), path, { setKeys: [["tokenizer.chat_template", gv.str(template)]] });
  const strictModel = await loadModel(path);
  const strict = await startServer({ model: strictModel, modelId: MODEL_ID, port: 0 });
  try {
    const post = (messages: unknown) => fetch(`${strict.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: json(chat({ messages })) });
    const refused = await post([{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }]);
    assert.equal(refused.status, 400);
    const error = assertErrorBody(await refused.text(), "refused by the template");
    assert.equal(error.param, "messages");
    assert.match(error.message, /System messages are not supported/);
    assert.equal((await post([{ role: "user", content: "Hi" }])).status, 200);
  } finally {
    await strict.close();
    await strictModel.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A seeded generator, so that a failing run can be repeated. */
function random(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    state = (state ^ (state >>> 12)) >>> 0;
    return state % n;
  };
}

const NASTY_VALUES: unknown[] = [
  null, true, false, 0, -1, 1, 2, 1.5, -0.5, 1e9, -1e9, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 5e-324,
  "", "x", "NaN", "Infinity", "1e9", "tiny-test", "user", "\u0000", "\ud800", "<|im_end|>", "x".repeat(5000),
  [], [1], ["x"], [null], [[]], [{}], Array(40).fill("stop"), {}, { a: 1 }, { type: "text" }, { role: "user", content: "x" },
];

const FIELDS = [
  "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
  "presence_penalty", "frequency_penalty", "seed", "stop", "n", "stream", "stream_options", "logprobs", "tools", "echo", "ignore_eos", "user",
];

type Mutation = (body: Record<string, unknown>, pick: (n: number) => number) => void;

const choose = <T>(items: readonly T[], pick: (n: number) => number): T => items[pick(items.length)]!;
/** A fresh copy: mutations must not change the list, or tie a request into a cycle. */
const nasty = (pick: (n: number) => number): unknown => structuredClone(choose(NASTY_VALUES, pick));

const MUTATIONS: Mutation[] = [
  (body, pick) => (body[choose(FIELDS, pick)] = nasty(pick)),
  (body, pick) => delete body[choose(Object.keys(body), pick)],
  (body, pick) => (body[`unknown_${pick(5)}`] = nasty(pick)),
  (body, pick) => {
    const messages = body.messages;
    if (Array.isArray(messages) && typeof messages[0] === "object" && messages[0] !== null) {
      (messages[0] as Record<string, unknown>)[choose(["role", "content", "name", "tool_calls"], pick)] = nasty(pick);
    } else {
      body.messages = nasty(pick);
    }
  },
  (body, pick) => (body.stream = pick(2) === 0),
];

/** A random mutation of a valid request: its fields, its JSON text, its route, method or content type. */
function mutant(pick: (n: number) => number): RawRequest {
  const isChat = pick(2) === 0;
  const body: Record<string, unknown> = isChat ? chat() : completion();
  for (let count = 1 + pick(3); count > 0; count--) choose(MUTATIONS, pick)(body, pick);
  let text = JSON.stringify(body);
  const exchange: RawRequest = { path: isChat ? "/v1/chat/completions" : "/v1/completions" };
  switch (pick(8)) {
    case 0:
      text = text.slice(0, pick(text.length));
      break;
    case 1: {
      const at = pick(text.length);
      text = text.slice(0, at) + choose(['"', "{", "]", ",", ":", "\\", "\u0000", "é"], pick) + text.slice(at + pick(2));
      break;
    }
    case 2:
      exchange.contentType = choose([null, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data"], pick);
      break;
    case 3:
      exchange.path = choose(["/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/v1", "/", "/v1/chat/completions/", "/V1/completions"], pick);
      exchange.method = choose(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"], pick);
      break;
  }
  return { ...exchange, body: text };
}

test("a thousand random mutations of valid requests never get a 5xx, and the server still serves", async () => {
  const seed = Date.now() % 1_000_000;
  const pick = random(seed);
  const exchanges = [...Array.from({ length: 1000 }, () => mutant(pick)), ...BAD_REQUESTS.map((bad) => bad.exchange)];
  const statuses = new Map<number, number>();
  const before = records.length;
  for (const exchange of exchanges) {
    const context = `seed ${seed}: ${exchange.method ?? "POST"} ${exchange.path} ${exchange.contentType ?? ""} ${exchange.body?.slice(0, 300)}`;
    const response = await send(exchange);
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    if (response.status === 200) continue; // the mutation happened to leave a valid request
    assert.ok(response.status >= 400 && response.status < 500, `${context} → ${response.status} ${response.text}`);
    assertErrorBody(response.text, context);
  }
  const refused = [...statuses].filter(([status]) => status !== 200).reduce((sum, [, count]) => sum + count, 0);
  assert.ok(refused > exchanges.length / 2, `mostly invalid requests: ${JSON.stringify([...statuses])}`);
  assert.deepEqual(
    records.slice(before).filter((record) => record.status >= 500),
    [],
    "the log shows no server error",
  );

  const valid = await send({ body: json(chat({ max_tokens: 5, seed: 1 })) });
  assert.equal(valid.status, 200);
  assert.equal((JSON.parse(valid.text) as { usage: { completion_tokens: number } }).usage.completion_tokens, 5);
});
