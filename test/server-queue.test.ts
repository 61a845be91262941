import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ClientRequest, request as httpRequest } from "node:http";
import { loadModel, Model } from "../src/engine/model.js";
import { startServer, RunningServer, RequestRecord } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";

const MODEL_ID = "tiny-test";
/** Thousands of tokens: seconds of work on the tiny model, unless the generation is stopped. */
const LONG = 4000;

let model: Model;
let server: RunningServer;
const records: RequestRecord[] = [];

before(async () => {
  model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }));
  server = await startServer({ model, modelId: MODEL_ID, port: 0, limits: { maxQueue: 2, maxTokens: LONG }, log: (record) => records.push(record) });
});

after(async () => {
  await server.close();
  await model.close();
});

const longChat = (stream: boolean) => ({ model: MODEL_ID, messages: [{ role: "user", content: "Go on forever." }], max_tokens: LONG, ignore_eos: true, stream });

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts a request whose connection the test will cut; resolves once `events` stream events have arrived (0: once sent). */
function startRequest(url: string, body: object, events: number): Promise<ClientRequest> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" } }, (response) => {
      if (response.statusCode !== 200) reject(new Error(`status ${response.statusCode}`));
      let seen = 0;
      response.on("data", (chunk: Buffer) => {
        seen += chunk.toString().split("data: ").length - 1;
        if (seen >= events) resolve(request);
      });
    });
    request.on("error", (error) => (request.destroyed ? undefined : reject(error)));
    request.end(JSON.stringify(body), () => events === 0 && resolve(request));
  });
}

async function post(body: object): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, json: (await response.json()) as Record<string, unknown>, headers: response.headers };
}

async function health(): Promise<{ running: number; waiting: number }> {
  return (await (await fetch(`${server.url}/health`)).json()) as { running: number; waiting: number };
}

/** The logged record of the only aborted generation logged since `from`. */
function abortedSince(from: number): () => RequestRecord | undefined {
  return () => records.slice(from).find((record) => record.generation?.finishReason === "abort");
}

test("a client that disconnects mid-stream ends its generation at once, and the model is free", async () => {
  const from = records.length;
  const request = await startRequest(server.url, longChat(true), 5);
  request.destroy();
  const record = await waitFor("the aborted generation", abortedSince(from));
  const next = await post({ model: MODEL_ID, messages: [{ role: "user", content: "Next!" }], max_tokens: 3 });

  assert.equal(record.status, 499);
  assert.ok(record.generation!.completionTokens < LONG / 4, `stopped after ${record.generation!.completionTokens} of ${LONG} tokens`);
  // "at once" counted in tokens: how long the next answer takes is measured by bench/latency.ts
  assert.equal(next.status, 200);
  assert.deepEqual(await health(), { status: "ok", model: MODEL_ID, running: 0, waiting: 0 });
});

test("a client that disconnects before a whole response ends its generation too", async () => {
  const from = records.length;
  const request = await startRequest(server.url, longChat(false), 0);
  await waitFor("the generation to start", async () => ((await health()).running === 1 ? true : undefined));
  request.destroy();
  const record = await waitFor("the aborted generation", abortedSince(from));
  assert.equal(record.status, 499);
  assert.ok(record.generation!.completionTokens < LONG / 4);
});

test("requests wait their turn in arrival order; past the queue limit they get a 429 at once", async () => {
  const from = records.length;
  const running = await startRequest(server.url, longChat(true), 3);
  // three and four tokens: their records tell them apart
  const queuedRequest = (tokens: number) => post({ model: MODEL_ID, messages: [{ role: "user", content: "Me next" }], max_tokens: tokens, ignore_eos: true });
  const second = queuedRequest(3);
  await waitFor("the second request to queue", async () => ((await health()).waiting === 1 ? true : undefined));
  const third = queuedRequest(4);
  await waitFor("the third request to queue", async () => ((await health()).waiting === 2 ? true : undefined));

  const refused = await queuedRequest(5);
  assert.equal(refused.status, 429);
  assert.deepEqual(refused.json, {
    error: { message: "The server is busy: 2 requests are already waiting for the model. Please retry shortly.", type: "requests", param: null, code: "rate_limit_exceeded" },
  });
  assert.equal(refused.headers.get("retry-after"), "1");

  running.destroy();
  assert.equal((await second).status, 200);
  assert.equal((await third).status, 200);
  const finished = records.slice(from).flatMap((record) => (record.generation ? [record.generation.completionTokens] : []));
  assert.equal(finished.length, 3);
  assert.ok(finished[0]! < LONG / 4, "the first was cut short");
  assert.deepEqual(finished.slice(1), [3, 4], "the others ran in the order they came");
});

test("closing the server ends the generations in progress and resolves promptly", async () => {
  const from = records.length;
  const other = await startServer({ model, modelId: MODEL_ID, port: 0, limits: { maxTokens: LONG }, log: (record) => records.push(record) });
  await startRequest(other.url, longChat(true), 3);
  // promptly counted in tokens generated (below); the time close takes is measured by bench/latency.ts
  await other.close();
  const record = abortedSince(from)();
  assert.ok(record, "the generation in progress was aborted");
  assert.ok(record.generation!.completionTokens < LONG / 4);
});
