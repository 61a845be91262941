import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { loadavg } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";

// Load test of `smallthinker serve`: starts the server as a child process on loopback, then
// 1. streams: 1 stream alone, then S streams at once (continuous batching), each of T tokens:
//    aggregate decode tokens/s and, per stream, time to first token and inter-token latency;
// 2. load: N concurrent clients × M streamed chat requests: throughput, latency percentiles, errors;
// 3. KV-cache reuse: time to first token of a chat's next turn, whose prefix is in a sequence's KV
//    cache, against the same turn once every sequence has held another conversation.
//   node dist/bench/load.js [--model FILE] [--parallel P] [--streams 1,4] [--stream-tokens T] [--clients N] [--requests M] [--max-tokens T]

const HELP = `node dist/bench/load.js [options]
  --model FILE       SmallThinker GGUF (default: the built-in demo model)
  --parallel P       the server's --parallel (default: its own default)
  --streams LIST     concurrent streams to compare, comma-separated (default 1,4)
  --stream-tokens T  tokens per stream in the streams phase (default 64)
  --rounds R         rounds of each streams configuration (default 2)
  --clients N        concurrent clients in the load phase (default 4)
  --requests M       requests per client, one after another (default 2)
  --max-tokens T     tokens generated per request in the load phase (default 16)
  --phases LIST      which of streams,load,cache to run (default all)`;

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
  /** Sequences it generates at once. */
  parallel: number;
}

function startServer(model: string | undefined, parallel: number | undefined): Promise<Server> {
  const args = [CLI, "serve", "--port", "0", "--alias", MODEL_ID, "--max-tokens", "100000", ...(model ? ["-m", model] : []), ...(parallel ? ["--parallel", String(parallel)] : [])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  const banner: string[] = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr! });
    lines.on("line", (line) => {
      const ready = /^Serving ".*" at (http:\S+)\/v1 with (\d+) parallel/.exec(line);
      if (ready) resolve({ url: ready[1]!, child, banner, parallel: Number(ready[2]) });
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
async function timedChat(client: OpenAI, messages: ChatCompletionMessageParam[], maxTokens: number, seed: number): Promise<Sample & { text: string; cached: number; promptTokens: number; start: number; arrivals: number[] }> {
  const start = performance.now();
  let firstTokenMs = 0;
  let text = "";
  let usage: OpenAI.Completions.CompletionUsage | undefined;
  /** When each piece of text arrived (a piece is a token, or several when one was not yet a whole character). */
  const arrivals: number[] = [];
  const stream = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: maxTokens, seed, ignore_eos: true, stream: true, stream_options: { include_usage: true } } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
  for await (const chunk of stream) {
    const piece = chunk.choices[0]?.delta.content;
    if (piece) arrivals.push(performance.now());
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
    start,
    arrivals,
  };
}

/** Nearest-rank percentile. */
function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

interface StreamsResult {
  streams: number;
  /** Tokens decoded after the first, over the time from the first stream's first token to the last stream's last. */
  decodePerSecond: number;
  perStream: { ttft: number[]; itl: number[]; tokens: number }[];
}

/**
 * `count` streams started together, `rounds` times: each stream's time to first token and the gaps
 * between its pieces; all streams' decoded tokens over the window in which they decoded.
 */
async function streamsPhase(client: OpenAI, count: number, tokens: number, rounds: number): Promise<StreamsResult> {
  const perStream = Array.from({ length: count }, () => ({ ttft: [] as number[], itl: [] as number[], tokens: 0 }));
  let decoded = 0;
  let decodeMs = 0;
  for (let round = 0; round < rounds; round++) {
    const results = await Promise.all(
      perStream.map((_, s) => timedChat(client, [{ role: "user", content: `Stream ${s} of round ${round}: tell me about ${TOPICS[(s + round) % TOPICS.length]}.` }], tokens, 100 * round + s)),
    );
    results.forEach((result, s) => {
      const stream = perStream[s]!;
      stream.ttft.push(result.firstTokenMs);
      for (let i = 1; i < result.arrivals.length; i++) stream.itl.push(result.arrivals[i]! - result.arrivals[i - 1]!);
      stream.tokens += result.tokens;
      decoded += result.tokens - 1;
    });
    const firstToken = Math.min(...results.map((r) => r.arrivals[0]!));
    const lastToken = Math.max(...results.map((r) => r.arrivals[r.arrivals.length - 1]!));
    decodeMs += lastToken - firstToken;
  }
  return { streams: count, decodePerSecond: (decoded / decodeMs) * 1000, perStream };
}

function cpuModel(): string {
  try {
    const line = execFileSync("lscpu", { encoding: "utf8" }).split("\n").find((l) => l.startsWith("Model name:"));
    return line ? line.replace(/^Model name:\s*/, "") : "unknown";
  } catch {
    return "unknown (no lscpu)";
  }
}

function printStreams(results: StreamsResult[], tokens: number, rounds: number): void {
  const alone = results.find((r) => r.streams === 1)?.decodePerSecond;
  console.log(`\nStreams: ${rounds} rounds of N concurrent streamed chats of ${tokens} tokens each (short prompts); decode tokens/s counts every stream's tokens after its first`);
  console.log("\n| streams | decode tok/s, all streams | × one stream | stream | TTFT p50 (ms) | TTFT p99 (ms) | inter-token p50 (ms) | inter-token p99 (ms) |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const result of results) {
    result.perStream.forEach((stream, s) => {
      const ttft = [...stream.ttft].sort((a, b) => a - b);
      const itl = [...stream.itl].sort((a, b) => a - b);
      const head = s === 0 ? [String(result.streams), result.decodePerSecond.toFixed(1), alone ? `×${(result.decodePerSecond / alone).toFixed(2)}` : "–"] : ["", "", ""];
      console.log(`| ${[...head, String(s + 1), percentile(ttft, 50).toFixed(0), percentile(ttft, 99).toFixed(0), percentile(itl, 50).toFixed(1), percentile(itl, 99).toFixed(1)].join(" | ")} |`);
    });
  }
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
async function cachePhase(client: OpenAI, rounds: number, parallel: number) {
  const notes = filler(300, 1);
  const turn1: ChatCompletionMessageParam[] = [
    { role: "system", content: `You answer questions using these notes: ${notes}` },
    { role: "user", content: "What does the report say about the trains?" },
  ];
  const first = await timedChat(client, turn1, 8, 1);
  const turn2: ChatCompletionMessageParam[] = [...turn1, { role: "assistant", content: first.text }, { role: "user", content: "And the markets?" }];
  // differ from their first word on, so nothing after the template's opening can be reused; as
  // many as there are sequences, so that none still holds the first conversation
  const others = Array.from({ length: parallel }, (_, i): ChatCompletionMessageParam[] => [{ role: "system", content: `We (${i}) answer questions using these notes: ${notes}` }, ...turn2.slice(1)]);
  const warm: Awaited<ReturnType<typeof timedChat>>[] = [];
  const cold: Awaited<ReturnType<typeof timedChat>>[] = [];
  let otherPromptTokens = 0;
  for (let round = 0; round < rounds; round++) {
    await timedChat(client, turn1, 8, 1);
    warm.push(await timedChat(client, turn2, 1, 2));
    await timedChat(client, turn1, 8, 1);
    for (const other of others) otherPromptTokens = (await timedChat(client, other, 1, 2)).promptTokens;
    cold.push(await timedChat(client, turn2, 1, 2));
  }
  return { warm, cold, otherPromptTokens };
}

function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]!) : String(cell).padStart(widths[i]!))).join("  ");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      clients: { type: "string" }, requests: { type: "string" }, "max-tokens": { type: "string" }, model: { type: "string" }, parallel: { type: "string" },
      streams: { type: "string" }, "stream-tokens": { type: "string" }, rounds: { type: "string" }, phases: { type: "string" }, help: { type: "boolean", short: "h" },
    },
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
  const requests = positive(values.requests, 2, "requests");
  const maxTokens = positive(values["max-tokens"], 16, "max-tokens");
  const streamTokens = positive(values["stream-tokens"], 64, "stream-tokens");
  const rounds = positive(values.rounds, 2, "rounds");
  const streamCounts = (values.streams ?? "1,4").split(",").map((count) => positive(count.trim(), 1, "streams"));
  const phases = new Set((values.phases ?? "streams,load,cache").split(",").map((phase) => phase.trim()));
  const parallel = values.parallel === undefined ? undefined : positive(values.parallel, 1, "parallel");

  console.log(`CPU: ${cpuModel()}; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} before the run`);
  const server = await startServer(values.model, parallel);
  try {
    for (const line of server.banner) console.log(`server: ${line}`);
    console.log(`server: ${server.parallel} parallel sequences`);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    // one request first, so that the measurements do not include the server's warm-up
    await timedChat(client, [{ role: "user", content: "Warm up." }], 2, 0);

    if (phases.has("streams")) {
      const results: StreamsResult[] = [];
      for (const count of streamCounts) results.push(await streamsPhase(client, count, streamTokens, rounds));
      printStreams(results, streamTokens, rounds);
    }

    if (phases.has("load")) {
      const load = await loadPhase(client, clients, requests, maxTokens);
      const totals = load.samples.map((s) => s.totalMs).sort((a, b) => a - b);
      const firsts = load.samples.map((s) => s.firstTokenMs).sort((a, b) => a - b);
      const tokens = load.samples.reduce((sum, s) => sum + s.tokens, 0);
      const seconds = load.wallMs / 1000;
      console.log(`\nLoad: ${clients} clients × ${requests} streamed chat requests of ${maxTokens} tokens, at ${server.url}`);
      console.log(`(${server.parallel} at once; latencies include any wait in the queue)\n`);
      const widths = [22, 8, 8, 8];
      console.log(row(["latency (ms)", "p50", "p90", "p99"], widths));
      console.log(row(["total", ...[50, 90, 99].map((p) => percentile(totals, p).toFixed(0))], widths));
      console.log(row(["time to first token", ...[50, 90, 99].map((p) => percentile(firsts, p).toFixed(0))], widths));
      console.log(`\n${load.samples.length} requests in ${seconds.toFixed(1)} s: ${(load.samples.length / seconds).toFixed(2)} requests/s, ${(tokens / seconds).toFixed(1)} generated tokens/s`);
      console.log(`errors: ${load.errors.length}${load.errors.length ? ` (first: ${load.errors[0]})` : ""}`);
    }

    if (phases.has("cache")) {
      const cacheRounds = 2;
      const cache = await cachePhase(client, cacheRounds, server.parallel);
      const prompt = cache.warm[0]!.promptTokens;
      console.log(`\nKV-cache reuse: time to first token of a chat's second turn (${prompt} prompt tokens; median of ${cacheRounds})\n`);
      const cacheWidths = [48, 16, 14];
      console.log(row(["", "first token (ms)", "cached tokens"], cacheWidths));
      console.log(row(["follow-up, right after turn 1 (warm)", median(cache.warm.map((s) => s.firstTokenMs)).toFixed(0), cache.warm[0]!.cached], cacheWidths));
      console.log(row([`after ${server.parallel} other conversations (${cache.otherPromptTokens} tokens)`, median(cache.cold.map((s) => s.firstTokenMs)).toFixed(0), cache.cold[0]!.cached], cacheWidths));
    }
    console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(" ")} after the run`);
  } finally {
    await stopServer(server);
  }
}

main().catch((error: unknown) => {
  console.error(`load test failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
