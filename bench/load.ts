import { ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";

// Load test of `smallthinker serve`: starts the server as a child process on loopback, runs N
// concurrent clients × M streamed chat requests, and reports throughput, latency percentiles
// (total and time to first token) and errors; then compares the time to first token of a chat's
// next turn, whose prefix is in the KV cache, with the same turn after another conversation.
//   node dist/bench/load.js [--clients N] [--requests M] [--max-tokens T] [--model FILE]

const HELP = `node dist/bench/load.js [--clients N] [--requests M] [--max-tokens T] [--model FILE]
  --clients N      concurrent clients (default 4)
  --requests M     requests per client, one after another (default 3)
  --max-tokens T   tokens generated per request (default 16)
  --model FILE     SmallThinker GGUF (default: the built-in demo model)`;

const MODEL_ID = "bench";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

interface Sample {
  totalMs: number;
  firstTokenMs: number;
  tokens: number;
}

interface Server {
  url: string;
  child: ChildProcess;
  /** The lines the server printed before it was ready (model description, warnings). */
  banner: string[];
}

function startServer(model: string | undefined): Promise<Server> {
  const args = [CLI, "serve", "--port", "0", "--alias", MODEL_ID, ...(model ? ["-m", model] : [])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  const banner: string[] = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr! });
    lines.on("line", (line) => {
      const ready = /^Serving ".*" at (http:\S+)\/v1/.exec(line);
      if (ready) resolve({ url: ready[1]!, child, banner });
      else if (banner.length < 20) banner.push(line);
    });
    child.once("exit", (code) => reject(new Error(`the server exited with ${code} before it was ready:\n${banner.join("\n")}`)));
  });
}

async function stopServer({ child }: Server): Promise<void> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** One streamed chat completion, timed from the request to the first text and to the end. */
async function timedChat(client: OpenAI, messages: ChatCompletionMessageParam[], maxTokens: number, seed: number): Promise<Sample & { text: string; cached: number; promptTokens: number }> {
  const start = performance.now();
  let firstTokenMs = 0;
  let text = "";
  let usage: OpenAI.Completions.CompletionUsage | undefined;
  const stream = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: maxTokens, seed, ignore_eos: true, stream: true, stream_options: { include_usage: true } } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
  for await (const chunk of stream) {
    const piece = chunk.choices[0]?.delta.content;
    if (piece && firstTokenMs === 0) firstTokenMs = performance.now() - start;
    text += piece ?? "";
    usage = chunk.usage ?? usage;
  }
  if (!usage) throw new Error("the stream ended without usage");
  return {
    totalMs: performance.now() - start,
    firstTokenMs,
    tokens: usage.completion_tokens,
    text,
    cached: usage.prompt_tokens_details?.cached_tokens ?? 0,
    promptTokens: usage.prompt_tokens,
  };
}

/** Nearest-rank percentile. */
function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

const TOPICS = ["rivers", "bread", "comets", "violins", "glaciers", "owls", "bridges", "tea", "volcanoes", "chess", "coral", "lighthouses"];

async function loadPhase(client: OpenAI, clients: number, requests: number, maxTokens: number) {
  const samples: Sample[] = [];
  const errors: string[] = [];
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let r = 0; r < requests; r++) {
        const topic = TOPICS[(c * requests + r) % TOPICS.length];
        try {
          samples.push(await timedChat(client, [{ role: "user", content: `Client ${c}, question ${r}: tell me about ${topic}.` }], maxTokens, c * 1000 + r));
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    }),
  );
  return { samples, errors, wallMs: performance.now() - start };
}

/** Filler text of `words` words drawn with a seed: two seeds give two conversations with nothing in common. */
function filler(words: number, seed: number): string {
  const vocabulary = ["the", "weather", "report", "mentions", "clouds", "over", "northern", "hills", "while", "markets", "open", "early", "and", "trains", "run", "late", "because", "of", "snow", "near", "harbour", "towns", "where", "fishermen", "wait"];
  let state = seed;
  return Array.from({ length: words }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return vocabulary[(state >>> 8) % vocabulary.length];
  }).join(" ");
}

/**
 * Time to first token of a chat's second turn: warm right after the first turn (its prompt and
 * reply are in the KV cache), cold after a different conversation of the same length.
 */
async function cachePhase(client: OpenAI, rounds: number) {
  const notes = filler(300, 1);
  const turn1: ChatCompletionMessageParam[] = [
    { role: "system", content: `You answer questions using these notes: ${notes}` },
    { role: "user", content: "What does the report say about the trains?" },
  ];
  const first = await timedChat(client, turn1, 8, 1);
  const turn2: ChatCompletionMessageParam[] = [...turn1, { role: "assistant", content: first.text }, { role: "user", content: "And the markets?" }];
  // differs from its first word on, so nothing after the template's opening can be reused
  const other: ChatCompletionMessageParam[] = [{ role: "system", content: `We answer questions using these notes: ${notes}` }, ...turn2.slice(1)];
  const warm: Awaited<ReturnType<typeof timedChat>>[] = [];
  const cold: Awaited<ReturnType<typeof timedChat>>[] = [];
  let otherPromptTokens = 0;
  for (let round = 0; round < rounds; round++) {
    await timedChat(client, turn1, 8, 1);
    warm.push(await timedChat(client, turn2, 1, 2));
    await timedChat(client, turn1, 8, 1);
    otherPromptTokens = (await timedChat(client, other, 1, 2)).promptTokens;
    cold.push(await timedChat(client, turn2, 1, 2));
  }
  return { warm, cold, otherPromptTokens };
}

function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]!) : String(cell).padStart(widths[i]!))).join("  ");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { clients: { type: "string" }, requests: { type: "string" }, "max-tokens": { type: "string" }, model: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const positive = (text: string | undefined, fallback: number, name: string) => {
    const value = text === undefined ? fallback : Number(text);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected a whole number ≥ 1, got "${text}"`);
    return value;
  };
  const clients = positive(values.clients, 4, "clients");
  const requests = positive(values.requests, 3, "requests");
  const maxTokens = positive(values["max-tokens"], 16, "max-tokens");

  const server = await startServer(values.model);
  try {
    for (const line of server.banner) console.log(`server: ${line}`);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    // one request first, so that the measurements do not include the server's warm-up
    await timedChat(client, [{ role: "user", content: "Warm up." }], 2, 0);

    const load = await loadPhase(client, clients, requests, maxTokens);
    const totals = load.samples.map((s) => s.totalMs).sort((a, b) => a - b);
    const firsts = load.samples.map((s) => s.firstTokenMs).sort((a, b) => a - b);
    const tokens = load.samples.reduce((sum, s) => sum + s.tokens, 0);
    const seconds = load.wallMs / 1000;
    console.log(`\nLoad: ${clients} clients × ${requests} streamed chat requests of ${maxTokens} tokens, at ${server.url}`);
    console.log("(the model serves one request at a time: latencies include the wait in the queue)\n");
    const widths = [22, 8, 8, 8];
    console.log(row(["latency (ms)", "p50", "p90", "p99"], widths));
    console.log(row(["total", ...[50, 90, 99].map((p) => percentile(totals, p).toFixed(0))], widths));
    console.log(row(["time to first token", ...[50, 90, 99].map((p) => percentile(firsts, p).toFixed(0))], widths));
    console.log(`\n${load.samples.length} requests in ${seconds.toFixed(1)} s: ${(load.samples.length / seconds).toFixed(2)} requests/s, ${(tokens / seconds).toFixed(1)} generated tokens/s`);
    console.log(`errors: ${load.errors.length}${load.errors.length ? ` (first: ${load.errors[0]})` : ""}`);

    const rounds = 2;
    const cache = await cachePhase(client, rounds);
    const prompt = cache.warm[0]!.promptTokens;
    console.log(`\nKV-cache reuse: time to first token of a chat's second turn (${prompt} prompt tokens; median of ${rounds})\n`);
    const cacheWidths = [40, 16, 14];
    console.log(row(["", "first token (ms)", "cached tokens"], cacheWidths));
    console.log(row(["follow-up, right after turn 1 (warm)", median(cache.warm.map((s) => s.firstTokenMs)).toFixed(0), cache.warm[0]!.cached], cacheWidths));
    console.log(row([`after another conversation (${cache.otherPromptTokens} tokens)`, median(cache.cold.map((s) => s.firstTokenMs)).toFixed(0), cache.cold[0]!.cached], cacheWidths));
  } finally {
    await stopServer(server);
  }
}

main().catch((error: unknown) => {
  console.error(`load test failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
