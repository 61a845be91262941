import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest, Agent } from "node:http";
import { loadModel } from "../src/engine/model.js";
import { GenerationResult } from "../src/engine/generation.js";
import { loadModelInWorker, WorkerModel } from "../src/engine/worker/model.js";
import { startServer, RunningServer, RequestRecord } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";

/**
 * The model on a worker thread: the server's thread stays free while prompts are evaluated. The
 * latency bounds here are wide (the machine is shared); bench/responsiveness.ts measures the real
 * figures on a 4B-shaped model.
 */

const MODEL_ID = "demo";
/** Long batches: evaluated on the server's own thread, each would hold it for most of a second. */
const BATCH = 1024;
const PROMPT_TOKENS = 3000;
const LATENCY_BOUND_MS = 400;

let model: WorkerModel;
let server: RunningServer;
const records: RequestRecord[] = [];

before(async () => {
  model = await loadModelInWorker(testModel({ preset: "demo" }), { contextSize: 4096, batchSize: BATCH, parallel: 2, threads: 2 });
  server = await startServer({ model, modelId: MODEL_ID, port: 0, limits: { maxTokens: 4000 }, log: (record) => records.push(record) });
});

after(async () => {
  await server.close();
  await model.close();
});

const longPrompt = (seed: number) => Array.from({ length: PROMPT_TOKENS }, (_, i) => 1000 + ((i * 37 + seed * 101) % 20000));

/** Starts a completion request; resolves with the request (to cut) once it has been sent. */
function startCompletion(body: object): Promise<ReturnType<typeof httpRequest>> {
  return new Promise((resolve) => {
    const request = httpRequest(`${server.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" } }, (response) => response.resume());
    request.on("error", () => {});
    request.end(JSON.stringify(body), () => resolve(request));
  });
}

/** Times GET /health repeatedly (one connection, kept alive) until `done` is true. */
async function healthLatencies(done: () => boolean): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  try {
    while (!done()) {
      const start = performance.now();
      const status = await new Promise<number>((resolve, reject) => {
        const request = httpRequest(`${server.url}/health`, { agent }, (response) => {
          response.resume();
          response.on("end", () => resolve(response.statusCode!));
        });
        request.on("error", reject);
        request.end();
      });
      latencies.push(performance.now() - start);
      assert.equal(status, 200);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    agent.destroy();
  }
  return latencies;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test(`/health answers promptly while a ${PROMPT_TOKENS}-token prompt is evaluated`, async (t) => {
  const from = records.length;
  const body = { model: MODEL_ID, prompt: longPrompt(1), max_tokens: 1 };
  const finished = fetch(`${server.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json());
  let done = false;
  void finished.finally(() => (done = true));
  const latencies = await healthLatencies(() => done);
  const result = (await finished) as { usage: { prompt_tokens: number } };
  assert.equal(result.usage.prompt_tokens, PROMPT_TOKENS);
  const evaluation = records.slice(from).find((record) => record.path === "/v1/completions")!;
  assert.ok(latencies.length >= 10, `${latencies.length} health checks during ${evaluation.ms.toFixed(0)} ms of evaluation`);
  const p99 = percentile(latencies, 99);
  t.diagnostic(`/health p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms over ${latencies.length} checks during ${evaluation.ms.toFixed(0)} ms`);
  assert.ok(p99 <= LATENCY_BOUND_MS, `/health p99 ${p99.toFixed(1)} ms over ${latencies.length} checks while the prompt took ${evaluation.ms.toFixed(0)} ms`);
});

test("a client that disconnects during prompt evaluation stops it within a layer or two", async (t) => {
  const from = records.length;
  const request = await startCompletion({ model: MODEL_ID, prompt: longPrompt(2), max_tokens: 4 });
  await waitFor("the generation to start", () => (model.metrics().active > 0 ? true : undefined));
  // well into the prompt's first batch
  await new Promise((resolve) => setTimeout(resolve, 100));
  const cut = performance.now();
  request.destroy();
  const record = await waitFor("the aborted generation", () => records.slice(from).find((r) => r.generation?.finishReason === "abort"));
  const elapsed = performance.now() - cut;
  t.diagnostic(`the generation ended ${elapsed.toFixed(0)} ms after the disconnect`);
  assert.equal(record.status, 499);
  assert.equal(record.generation!.completionTokens, 0, "it was still evaluating the prompt");
  assert.ok(elapsed <= LATENCY_BOUND_MS, `the generation ended ${elapsed.toFixed(0)} ms after the disconnect`);
  // the worker is free again
  const next = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL_ID, prompt: "Next", max_tokens: 2 }) });
  assert.equal(next.status, 200);
});

test("the model on a worker thread generates what the model on this thread does, also two at once", async () => {
  const inThread = await loadModel(testModel({ preset: "demo" }), { contextSize: 4096, batchSize: BATCH });
  try {
    const requests = [
      { prompt: "Once upon a time", options: { seed: 5, temperature: 1, maxTokens: 20, ignoreEos: true } },
      { prompt: "The weather report says", options: { temperature: 0, maxTokens: 20, ignoreEos: true } },
    ];
    const expected: GenerationResult[] = [];
    for (const { prompt, options } of requests) expected.push(await inThread.generate(prompt, options).complete());
    const results = await Promise.all(requests.map(({ prompt, options }) => model.generate(prompt, options).complete()));
    results.forEach((result, i) => {
      assert.deepEqual(result.tokens, expected[i]!.tokens);
      assert.equal(result.text, expected[i]!.text);
    });
  } finally {
    await inThread.close();
  }
});

test("bad requests to the worker model fail clearly, on the caller's thread", () => {
  assert.throws(() => model.generate(""), /prompt is empty/);
  assert.throws(() => model.generate("x", { temperature: Number.NaN }), /temperature/);
  assert.throws(() => model.generate([model.config.vocabSize]), /outside the vocabulary/);
});
