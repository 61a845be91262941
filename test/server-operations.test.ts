import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { Agent, request as httpRequest } from "node:http";
import { loadModel, Model } from "../src/engine/model.js";
import { LanguageModel } from "../src/engine/language-model.js";
import { startServer, RunningServer, RequestRecord } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";

/** Operations: readiness while loading, metrics, graceful drain, slow and malformed requests. */

const MODEL_ID = "tiny-test";
const LONG = 4000;

let model: Model;

before(async () => {
  model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }));
});

after(async () => {
  await model.close();
});

async function withServer<T>(options: Partial<Parameters<typeof startServer>[0]>, run: (server: RunningServer, records: RequestRecord[]) => Promise<T>): Promise<T> {
  const records: RequestRecord[] = [];
  const server = await startServer({ model, modelId: MODEL_ID, port: 0, limits: { maxTokens: LONG }, log: (record) => records.push(record), ...options });
  try {
    return await run(server, records);
  } finally {
    await server.close();
  }
}

const chat = (fields: Record<string, unknown> = {}) => ({ model: MODEL_ID, messages: [{ role: "user", content: "Hello" }], max_tokens: 4, ...fields });

async function post(url: string, body: unknown, path = "/v1/chat/completions"): Promise<{ status: number; json: Record<string, any>; headers: Headers }> {
  const response = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: response.status, json: (await response.json()) as Record<string, any>, headers: response.headers };
}

/** A streamed chat read event by event; `onEvent` sees each one as it arrives. */
function streamChat(url: string, body: object, onEvent: (event: string, index: number) => void = () => {}, agent?: Agent): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, agent }, (response) => {
      const events: string[] = [];
      let buffer = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end).replace(/^data: /, "");
          buffer = buffer.slice(end + 2);
          events.push(event);
          onEvent(event, events.length - 1);
        }
      });
      response.on("end", () => resolve(events));
      response.on("error", reject);
    });
    request.on("error", reject);
    request.end(JSON.stringify({ ...body, stream: true }));
  });
}

/** Writes `parts` to a raw connection (waiting `pauseMs` between them) and collects everything until the server closes it. */
function rawExchange(url: string, parts: string[], pauseMs = 0): Promise<{ text: string; ms: number }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(Number(port), "127.0.0.1");
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (text += chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve({ text, ms: performance.now() - started }));
    void (async () => {
      for (const part of parts) {
        if (socket.destroyed) return;
        socket.write(part);
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
    })();
  });
}

/** The status codes and bodies of the HTTP responses in a raw byte stream, in order. */
function responsesIn(text: string): { status: number; body: string }[] {
  return text.split(/(?=HTTP\/1\.1 \d{3} )/).filter(Boolean).map((response) => ({ status: Number(response.slice(9, 12)), body: response.slice(response.indexOf("\r\n\r\n") + 4) }));
}

test("while the model loads, /health and generations answer 503; once it is ready, 200", async () => {
  let provide!: (model: LanguageModel) => void;
  const loading = new Promise<LanguageModel>((resolve) => (provide = resolve));
  await withServer({ model: loading }, async (server) => {
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 503);
    assert.equal(((await health.json()) as { status: string }).status, "loading");
    const refused = await post(server.url, chat());
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, "model_loading");
    assert.equal(refused.headers.get("retry-after"), "1");
    provide(model);
    await server.ready;
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    assert.equal((await post(server.url, chat())).status, 200);
  });
});

test("a model that fails to load leaves /health at 503 and rejects `ready`", async () => {
  await withServer({ model: Promise.reject(new Error("no such file")) }, async (server) => {
    await assert.rejects(server.ready, /no such file/);
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 503);
    assert.equal(((await health.json()) as { status: string }).status, "failed");
  });
});

/** Prometheus text: each sample's value by its name and labels, checking the format on the way. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const described = new Set<string>();
  for (const line of text.trimEnd().split("\n")) {
    const meta = /^# (HELP|TYPE) (\w+) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") assert.match(meta[3]!, /^(counter|gauge)$/);
      described.add(`${meta[1]} ${meta[2]}`);
      continue;
    }
    const sample = /^(\w+)(\{[^}]*\})? (-?[\d.e+-]+)$/.exec(line);
    assert.ok(sample, `a sample line: ${line}`);
    assert.ok(described.has(`HELP ${sample[1]}`) && described.has(`TYPE ${sample[1]}`), `${sample[1]} has HELP and TYPE`);
    samples.set(sample[1]! + (sample[2] ?? ""), Number(sample[3]));
  }
  return samples;
}

test("GET /metrics counts requests by route and status, tokens, and shows the engine's state", async () => {
  await withServer({}, async (server) => {
    const first = await post(server.url, chat({ max_tokens: 5, ignore_eos: true }));
    const second = await post(server.url, { model: MODEL_ID, prompt: "Once", max_tokens: 3, ignore_eos: true }, "/v1/completions");
    const streamed = await streamChat(server.url, chat({ max_tokens: 6, ignore_eos: true, stream_options: { include_usage: true } }));
    const usage = JSON.parse(streamed[streamed.length - 2]!).usage as { prompt_tokens: number; completion_tokens: number };
    assert.equal((await fetch(`${server.url}/nowhere`)).status, 404);
    assert.equal((await post(server.url, chat({ temperature: -1 }))).status, 400);
    await fetch(`${server.url}/health`);

    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const metrics = parseMetrics(await response.text());
    assert.equal(metrics.get('smallthinker_requests_total{route="/v1/chat/completions",status="200"}'), 2);
    assert.equal(metrics.get('smallthinker_requests_total{route="/v1/chat/completions",status="400"}'), 1);
    assert.equal(metrics.get('smallthinker_requests_total{route="/v1/completions",status="200"}'), 1);
    assert.equal(metrics.get('smallthinker_requests_total{route="other",status="404"}'), 1);
    assert.equal(metrics.get('smallthinker_requests_total{route="/health",status="200"}'), 1);
    assert.equal(metrics.get("smallthinker_generated_tokens_total"), 5 + 3 + 6);
    assert.equal(metrics.get("smallthinker_prompt_tokens_total"), first.json.usage.prompt_tokens + second.json.usage.prompt_tokens + usage.prompt_tokens);
    assert.equal(usage.completion_tokens, 6);
    assert.equal(metrics.get("smallthinker_ready"), 1);
    assert.equal(metrics.get("smallthinker_slots"), 1);
    assert.equal(metrics.get("smallthinker_slots_active"), 0);
    assert.equal(metrics.get("smallthinker_queue_depth"), 0);
    assert.equal(metrics.get("smallthinker_kv_cache_capacity_tokens"), model.contextSize);
    const kv = metrics.get("smallthinker_kv_cache_tokens")!;
    assert.ok(kv > 0 && kv <= model.contextSize);
    const engine = model.metrics();
    assert.equal(metrics.get("smallthinker_expert_cache_hits_total"), engine.expertHits);
    assert.ok(engine.expertHits > 0);
    assert.equal(metrics.get("smallthinker_expert_cache_hit_ratio"), 1, "every expert is resident");
    assert.equal(metrics.get("smallthinker_expert_bytes_read_total"), 0);
    assert.ok(metrics.has("smallthinker_generated_tokens_per_second"));
  });
});

test("a drain lets the stream in progress finish, refuses new connections and answers 503 on open ones", async () => {
  await withServer({}, async (server, records) => {
    // a connection opened before the drain, kept alive
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const healthOn = (agentToUse: Agent) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const request = httpRequest(`${server.url}/health`, { agent: agentToUse }, (response) => {
          response.resume();
          response.on("end", () => resolve({ status: response.statusCode!, connection: response.headers.connection }));
        });
        request.on("error", reject);
        request.end();
      });
    assert.equal((await healthOn(agent)).status, 200);
    let draining: ReturnType<RunningServer["drain"]> | undefined;
    const events = await streamChat(server.url, chat({ max_tokens: 200, ignore_eos: true, stream_options: { include_usage: true } }), (_, index) => {
      if (index === 3) draining = server.drain(30_000);
    });
    assert.equal(events[events.length - 1], "[DONE]");
    assert.equal(JSON.parse(events[events.length - 2]!).usage.completion_tokens, 200, "every token was generated");
    assert.equal(JSON.parse(events[events.length - 3]!).choices[0].finish_reason, "length");
    const during = await healthOn(agent).catch((error: Error) => ({ status: 0, connection: error.message }));
    // the kept-alive connection was either closed as idle or answered 503 with Connection: close
    assert.ok(during.status === 503 || during.status === 0, `health on an open connection during the drain: ${JSON.stringify(during)}`);
    if (during.status === 503) assert.equal(during.connection, "close");
    const result = await draining!;
    assert.deepEqual(result.cut, 0);
    assert.ok(result.finished >= 1);
    await assert.rejects(fetch(`${server.url}/health`), "no new connections after the drain");
    assert.ok(records.some((record) => record.path === "/v1/chat/completions" && record.status === 200));
    agent.destroy();
  });
});

test("at the end of the grace period a stream gets an error event and [DONE], a whole response a 503", async () => {
  await withServer({}, async (server) => {
    let started!: () => void;
    const streaming = new Promise<void>((resolve) => (started = resolve));
    const stream = streamChat(server.url, chat({ max_tokens: LONG, ignore_eos: true }), (_, index) => index === 2 && started());
    await streaming;
    const whole = post(server.url, chat({ max_tokens: LONG, ignore_eos: true }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const result = await server.drain(300);
    assert.equal(result.cut, 2);
    const events = await stream;
    assert.equal(events[events.length - 1], "[DONE]");
    const error = JSON.parse(events[events.length - 2]!) as { error: { code: string; type: string } };
    assert.equal(error.error.code, "shutting_down");
    assert.ok(events.length < LONG / 2, "the stream was cut");
    const answer = await whole;
    assert.equal(answer.status, 503);
    assert.equal(answer.json.error.code, "shutting_down");
  });
});

test("a request whose headers or body stall past the request timeout gets a 408", async () => {
  await withServer({ limits: { maxTokens: LONG, requestTimeoutMs: 300 } }, async (server, records) => {
    const headers = await rawExchange(server.url, ["POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"]);
    assert.deepEqual(responsesIn(headers.text).map((r) => r.status), [408]);
    const body = JSON.stringify(chat());
    const stalled = await rawExchange(server.url, [`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`]);
    const answers = responsesIn(stalled.text);
    assert.deepEqual(answers.map((r) => r.status), [408]);
    assert.equal(JSON.parse(answers[0]!.body).error.type, "invalid_request_error");
    // Node looks for stalled requests every quarter of the timeout
    for (const { ms } of [headers, stalled]) assert.ok(ms >= 250 && ms < 3000, `answered after ${ms.toFixed(0)} ms`);
    assert.ok(records.some((record) => record.status === 408 && record.path === "/v1/chat/completions"), "the stalled body's request is logged");
    // a request that arrives in pieces within the timeout is served
    const slow = await rawExchange(server.url, [`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body.slice(0, 10), body.slice(10)], 50);
    assert.deepEqual(responsesIn(slow.text).map((r) => r.status), [200]);
  });
});

test("a Content-Length shorter than the body, or garbage after a request, gets the request's answer before the connection closes", async () => {
  await withServer({}, async (server) => {
    const body = JSON.stringify(chat());
    const short = await rawExchange(server.url, [`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n${body}`]);
    const shortAnswers = responsesIn(short.text);
    assert.equal(shortAnswers[0]?.status, 400, short.text);
    assert.equal(JSON.parse(shortAnswers[0]!.body).error.code, "invalid_json");
    assert.deepEqual(shortAnswers.slice(1).map((r) => r.status), [400], "then the bytes after it are refused");

    const garbage = await rawExchange(server.url, [`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}\u0001\u0002 NOT HTTP\r\n\r\n`]);
    const answers = responsesIn(garbage.text);
    assert.deepEqual(answers.map((r) => r.status), [200, 400], garbage.text.slice(0, 300));
    assert.equal(JSON.parse(answers[0]!.body).object, "chat.completion");
    // and the server still serves
    assert.equal((await post(server.url, chat())).status, 200);
  });
});

test("a megabyte of messages or of prompt text is refused before the chat template renders it", async () => {
  const demo = await loadModel(testModel({ preset: "demo" }), { contextSize: 4096 });
  try {
    await withServer({ model: demo }, async (server) => {
      const many = JSON.stringify(chat({ messages: Array.from({ length: 34_000 }, () => ({ role: "user", content: "x" })) }));
      assert.ok(many.length > 900_000 && many.length < 1 << 20);
      const huge = "word ".repeat(200_000);
      let checking = true;
      const gaps: number[] = [];
      const probe = (async () => {
        while (checking) {
          const start = performance.now();
          await fetch(`${server.url}/health`);
          gaps.push(performance.now() - start);
        }
      })();
      const timed = async (body: string, path?: string) => {
        const start = performance.now();
        const answer = await post(server.url, body, path);
        return { ...answer, ms: performance.now() - start };
      };
      const messages = await timed(many);
      const text = await timed(JSON.stringify(chat({ messages: [{ role: "user", content: huge }] })));
      const prompt = await timed(JSON.stringify({ model: MODEL_ID, prompt: huge, max_tokens: 1 }), "/v1/completions");
      checking = false;
      await probe;
      assert.equal(messages.status, 400);
      assert.equal(messages.json.error.code, "too_many_messages");
      for (const refused of [text, prompt]) {
        assert.equal(refused.status, 400);
        assert.equal(refused.json.error.code, "context_length_exceeded");
      }
      // rendering 34,000 messages took seconds, tokenizing a megabyte a quarter of one
      for (const { ms } of [messages, text, prompt]) assert.ok(ms < 500, `refused after ${ms.toFixed(0)} ms`);
      assert.ok(Math.max(...gaps) < 500, `/health waited at most ${Math.max(...gaps).toFixed(0)} ms meanwhile`);
    });
  } finally {
    await demo.close();
  }
});
