import { request as httpRequest } from "node:http";
import { GgufFile } from "../src/gguf/index.js";
import { Tokenizer } from "../src/tokenizer/index.js";
import { Sampler, type SamplingOptions } from "../src/sampling/index.js";
import { loadModel } from "../src/engine/model.js";
import { startServer } from "../src/server/index.js";
import { testModel } from "../test/helpers/models.js";
import { randomTexts } from "../test/helpers/tokenizer-corpus.js";

// The speed checks that used to be test assertions (issue 13: tests count work, benchmarks time
// it). Each line gives the median of several runs and the bound the test once asserted.
//   node dist/bench/latency.js

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
function report(what: string, ms: number[], formerBound: number): void {
  console.log(`${what.padEnd(64)} median ${median(ms).toFixed(1)} ms (min ${Math.min(...ms).toFixed(1)}, max ${Math.max(...ms).toFixed(1)}); tests asserted < ${formerBound} ms`);
}
function timed(run: () => void): number {
  const start = performance.now();
  run();
  return performance.now() - start;
}

// The sampler on a 151,936-token vocabulary, per token.
{
  const vocabSize = 151936;
  let state = 11;
  const logits = Float32Array.from({ length: vocabSize }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state / 2 ** 32) * 20 - 10;
  });
  const history = Array.from({ length: 64 }, (_, i) => i * 997);
  for (const options of [{}, { topK: 0 }, { topK: 0, minP: 0 }, { repeatPenalty: 1.1, frequencyPenalty: 0.1 }] as SamplingOptions[]) {
    const sampler = new Sampler({ seed: 1, ...options }, vocabSize);
    const perToken = Array.from({ length: 5 }, () => timed(() => {
      for (let i = 0; i < 50; i++) sampler.sample(logits, history);
    }) / 50);
    report(`sample one token, ${JSON.stringify(options)}`, perToken, 20);
  }
}

// The tokenizer of the real Qwen2 vocabulary: construction, then 10 KB right after it.
{
  const file = GgufFile.open(testModel({ preset: "demo" }));
  const metadata = file.metadata;
  file.close();
  const text = randomTexts(400, 5).join("\n").slice(0, 10_000);
  const builds: number[] = [];
  const encodes: number[] = [];
  for (let i = 0; i < 5; i++) {
    let fresh: Tokenizer | undefined;
    builds.push(timed(() => (fresh = Tokenizer.fromGguf(metadata))));
    encodes.push(timed(() => fresh!.encode(text)));
  }
  report("tokenizer from 151,936-token metadata", builds, 1000);
  report("encode 10 KB right after construction", encodes, 100);
}

// The server: the next request after a client disconnects mid-stream, and close() with a
// generation running.
{
  const model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }));
  const long = { model: "m", messages: [{ role: "user", content: "Go on forever." }], max_tokens: 4000, ignore_eos: true, stream: true };
  const start = (url: string) =>
    new Promise<ReturnType<typeof httpRequest>>((resolve) => {
      const body = JSON.stringify(long);
      const request = httpRequest(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" } }, (response) => {
        let chunks = 0;
        response.on("data", () => {
          if (++chunks === 5) resolve(request);
        });
      });
      request.on("error", () => {});
      request.end(body);
    });
  const afterDisconnect: number[] = [];
  const closes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const server = await startServer({ model, modelId: "m", port: 0, limits: { maxTokens: 4000 } });
    const running = await start(server.url);
    const cut = performance.now();
    running.destroy();
    const next = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "Next!" }], max_tokens: 3 }),
    });
    await next.json();
    afterDisconnect.push(performance.now() - cut);
    await start(server.url);
    const closing = performance.now();
    await server.close();
    closes.push(performance.now() - closing);
  }
  report("next request answered after a mid-stream disconnect", afterDisconnect, 1500);
  report("server close() with a generation running", closes, 1500);
  await model.close();
}
