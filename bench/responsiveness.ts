import { Agent, request as httpRequest } from "node:http";
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { percentile, startServe, stopServe } from "./serve-process.js";

// How responsive `smallthinker serve` stays while its model works (the model runs on a worker thread):
// 1. /health latency while a long prompt is evaluated;
// 2. how soon a client's disconnect during prompt evaluation ends the work;
// 3. how long the worst request bodies the default limits let in hold the server's thread, seen as
//    /health latency while they are answered.
//   node dist/bench/responsiveness.js [--model FILE] [--prompt-tokens 3000] [--rounds 3]

const HELP = `node dist/bench/responsiveness.js [--model FILE] [--prompt-tokens N] [--rounds R]
  --model FILE         SmallThinker GGUF (default: the built-in demo model)
  --prompt-tokens N    length of the prompt evaluated meanwhile (default 3000)
  --rounds R           repetitions of each measurement (default 3)`;

const MODEL_ID = "bench";

function get(url: string, agent: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { agent }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, body }));
    });
    request.on("error", reject);
    request.end();
  });
}

/** Times GET /health every `everyMs` until `done()`; one kept-alive connection. */
async function probeHealth(url: string, done: () => boolean, everyMs = 10): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  try {
    while (!done()) {
      const start = performance.now();
      await get(`${url}/health`, agent);
      latencies.push(performance.now() - start);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  } finally {
    agent.destroy();
  }
  return latencies;
}

function post(url: string, path: string, body: string): { done: Promise<{ status: number; body: string }>; cut: () => void } {
  let cut = () => {};
  const done = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = httpRequest(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" } }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, body: text }));
      response.on("error", () => resolve({ status: 0, body: "" }));
    });
    request.on("error", (error) => (request.destroyed ? resolve({ status: 0, body: "" }) : reject(error)));
    request.end(body);
    cut = () => request.destroy();
  });
  return { done, cut };
}

const longPrompt = (tokens: number, seed: number) => Array.from({ length: tokens }, (_, i) => 1000 + ((i * 37 + seed * 101) % 20000));

function summary(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted[sorted.length - 1]!.toFixed(1)} ms (${sorted.length} checks)`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: "string" }, "prompt-tokens": { type: "string" }, rounds: { type: "string" }, help: { type: "boolean", short: "h" } } });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const promptTokens = Number(values["prompt-tokens"] ?? 3000);
  const rounds = Number(values.rounds ?? 3);
  let cpu = "unknown";
  try {
    cpu = execFileSync("lscpu", { encoding: "utf8" }).split("\n").find((l) => l.startsWith("Model name:"))?.replace(/^Model name:\s*/, "") ?? cpu;
  } catch {
    // no lscpu
  }
  console.log(`CPU: ${cpu}; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} before the run`);
  const serve = await startServe(["--port", "0", "--alias", MODEL_ID, ...(values.model ? ["-m", values.model] : [])]);
  try {
    const { url } = serve;
    // 1. /health during prompt evaluation
    const during: number[] = [];
    let promptMs = 0;
    for (let round = 0; round < rounds; round++) {
      const started = performance.now();
      const request = post(url, "/v1/completions", JSON.stringify({ model: MODEL_ID, prompt: longPrompt(promptTokens, round), max_tokens: 1 }));
      let done = false;
      void request.done.finally(() => (done = true));
      during.push(...(await probeHealth(url, () => done)));
      promptMs += performance.now() - started;
    }
    console.log(`\n/health while a ${promptTokens}-token prompt is evaluated (${(promptMs / rounds / 1000).toFixed(1)} s each, ${rounds} rounds): ${summary(during)}`);

    // 2. cancellation: disconnect a second into the prompt, then watch /health until nothing runs
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const cancels: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const request = post(url, "/v1/completions", JSON.stringify({ model: MODEL_ID, prompt: longPrompt(promptTokens, 10 + round), max_tokens: 1 }));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const cut = performance.now();
      request.cut();
      for (;;) {
        const health = JSON.parse((await get(`${url}/health`, agent)).body) as { running: number };
        if (health.running === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      cancels.push(performance.now() - cut);
    }
    agent.destroy();
    console.log(`disconnect during prompt evaluation → its generation has ended: ${cancels.map((ms) => `${ms.toFixed(0)} ms`).join(", ")} (seen by polling /health every 2 ms)`);

    // 3. the worst bodies the default limits let in (1 MiB)
    const bodies: { name: string; body: string }[] = [
      { name: "34,000 messages (1 MiB)", body: JSON.stringify({ model: MODEL_ID, max_tokens: 1, messages: Array.from({ length: 34_000 }, () => ({ role: "user", content: "x" })) }) },
      { name: "one message of 1 MiB", body: JSON.stringify({ model: MODEL_ID, max_tokens: 1, messages: [{ role: "user", content: "word ".repeat(200_000) }] }) },
      { name: "512 messages of 1000 bytes (rendered, then too long)", body: JSON.stringify({ model: MODEL_ID, max_tokens: 1, messages: Array.from({ length: 512 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: `${i} ${"lorem ipsum dolor sit amet ".repeat(37)}` })) }) },
      { name: "a completions prompt of 1 MiB", body: JSON.stringify({ model: MODEL_ID, max_tokens: 1, prompt: "word ".repeat(200_000) }) },
    ];
    console.log("\nbad bodies: time to the answer, and /health meanwhile (requests sent back to back for ~2 s)");
    for (const { name, body } of bodies) {
      const path = body.includes('"prompt"') ? "/v1/completions" : "/v1/chat/completions";
      const answers: number[] = [];
      let status = 0;
      let code = "";
      let done = false;
      const probe = probeHealth(url, () => done, 5);
      const until = performance.now() + 2000;
      while (performance.now() < until) {
        const start = performance.now();
        const answer = await post(url, path, body).done;
        answers.push(performance.now() - start);
        status = answer.status;
        code = (JSON.parse(answer.body) as { error?: { code: string } }).error?.code ?? "";
      }
      done = true;
      const health = await probe;
      const sorted = [...answers].sort((a, b) => a - b);
      console.log(`  ${name}: ${status} ${code}, answered in p50 ${percentile(sorted, 50).toFixed(0)} ms (max ${sorted[sorted.length - 1]!.toFixed(0)}); /health ${summary(health)}`);
    }
    console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(" ")} after the run`);
  } finally {
    await stopServe(serve);
  }
}

main().catch((error: unknown) => {
  console.error(`responsiveness test failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
