import { statSync, writeFileSync } from "node:fs";
import { ActivityReport, formatActivity, measureActivity } from "../../engine/activity.js";
import { loadModel } from "../../engine/model.js";
import { BenchJob, EngineMeasurement, summarize } from "../../bench/measure.js";
import { runBenchChild } from "../../bench/spawn.js";
import { CommandError, UsageError, formatBytes, helpHint, parseCommand, parseInteger, parseSizeOption } from "../args.js";
import { resolveModelPath } from "../open-model.js";

export const BENCH_HELP = `smallthinker bench [-m FILE] [options]

Measures smallthinker and llama.cpp (node-llama-cpp's prebuilt CPU build) on the same GGUF in one
run: prompt processing (prefill) and generation (decode) speed, at each thread count, each engine
in its own process (so peak memory is its own); then the model's routing skew and ReGLU sparsity.

  -m, --model M         SmallThinker GGUF, or hf:OWNER/NAME[:QUANT] (default: the demo model)
  --prompt-tokens N     prompt length (default 512)
  --gen-tokens N        tokens generated after it (default 128)
  --threads LIST        thread counts, comma-separated (default 1,2)
  --reps N              repetitions per measurement (default 5); medians are reported
  --engines LIST        smallthinker,llama.cpp (default both; llama.cpp needs node-llama-cpp
                        installed beside smallthinker)
  --memory SIZE         memory budget for smallthinker (default: everything resident)
  --json FILE           also write the results as JSON
  --stats-tokens N      tokens for the routing/sparsity measurement (default 512, 0 = skip)
  -h, --help            this help`;

async function runChild(job: BenchJob): Promise<EngineMeasurement> {
  const outcome = await runBenchChild(job);
  if ("failure" in outcome) throw new CommandError(`smallthinker bench: ${job.engine} (${job.threads} threads) failed: ${outcome.failure}`);
  return outcome.measurement;
}

/**
 * llama.cpp is measured through node-llama-cpp, a development dependency: an installed package
 * has it only if the user added it. Said before any measuring, rather than as a child's stack trace.
 */
function requireNodeLlamaCpp(): void {
  try {
    import.meta.resolve("node-llama-cpp");
  } catch {
    throw new CommandError(
      "smallthinker bench: llama.cpp is measured through node-llama-cpp, which is not installed here; install it (npm install node-llama-cpp) or measure smallthinker alone with --engines smallthinker",
    );
  }
}

function cell(values: number[]): string {
  const s = summarize(values);
  return `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
}

export function formatBench(results: EngineMeasurement[], header: string, fileBytes: number): string {
  const rows = [
    header,
    "",
    "| engine | threads | prefill tok/s, median (min–max) | decode tok/s, median (min–max) | peak RSS |",
    "|---|---|---|---|---|",
    ...results.map((r) => `| ${r.engine} | ${r.threads} | ${cell(r.prefill)} | ${cell(r.decode)} | ${formatBytes(r.peakRss)} |`),
  ];
  const threads = [...new Set(results.map((r) => r.threads))];
  const ratios = threads.flatMap((t) => {
    const ours = results.find((r) => r.engine === "smallthinker" && r.threads === t);
    const theirs = results.find((r) => r.engine === "llama.cpp" && r.threads === t);
    if (!ours || !theirs) return [];
    const p = summarize(ours.prefill).median / summarize(theirs.prefill).median;
    const d = summarize(ours.decode).median / summarize(theirs.decode).median;
    return [`${t} thread${t > 1 ? "s" : ""}: prefill ×${p.toFixed(2)}, decode ×${d.toFixed(2)}`];
  });
  if (ratios.length) rows.push("", `smallthinker / llama.cpp (medians): ${ratios.join("; ")}`);
  for (const r of results) {
    if (r.kvBytes === undefined) continue;
    const over = r.peakRss - fileBytes - r.kvBytes;
    rows.push(`smallthinker ${r.threads}t peak RSS = model file + KV cache (${formatBytes(r.kvBytes)}) + ${formatBytes(over)}`);
  }
  const notes = results.filter((r) => r.note).map((r) => `${r.engine} ${r.threads}t: ${r.note}`);
  if (notes.length) rows.push(...new Set(notes.map((n) => n.replace(/ \d+t:/, ":"))));
  return rows.join("\n");
}

export const BENCH_OPTIONS = {
  model: { type: "string", short: "m" }, "prompt-tokens": { type: "string" }, "gen-tokens": { type: "string" },
  threads: { type: "string" }, reps: { type: "string" }, engines: { type: "string" }, memory: { type: "string" },
  json: { type: "string" }, "stats-tokens": { type: "string" }, help: { type: "boolean", short: "h" },
} as const;

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("bench", { args: argv, allowPositionals: true, options: BENCH_OPTIONS });
  if (values.help) {
    console.log(BENCH_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker bench: unexpected argument "${positionals[0]}"\n${helpHint("bench")}`);
  const promptTokens = parseInteger(values["prompt-tokens"], "--prompt-tokens", 1, 1 << 16) ?? 512;
  const genTokens = parseInteger(values["gen-tokens"], "--gen-tokens", 1, 1 << 16) ?? 128;
  const reps = parseInteger(values.reps, "--reps", 1, 1000) ?? 5;
  const statsTokens = parseInteger(values["stats-tokens"], "--stats-tokens", 0, 1 << 20) ?? 512;
  const threads = (values.threads ?? "1,2").split(",").map((t) => parseInteger(t.trim(), "--threads", 1, 256)!);
  const engines = (values.engines ?? "smallthinker,llama.cpp").split(",").map((e) => e.trim());
  for (const engine of engines) if (engine !== "smallthinker" && engine !== "llama.cpp") throw new UsageError(`--engines: unknown engine "${engine}"`);
  const memory = values.memory === undefined ? undefined : parseSizeOption(values.memory, "--memory");
  if (engines.includes("llama.cpp")) requireNodeLlamaCpp();
  const model = await resolveModelPath(values.model, (line) => console.error(line));

  const probe = await loadModel(model, { kernels: "reference", contextSize: 64 });
  const vocab = probe.config.vocabSize;
  const synthetic = probe.info.synthetic;
  await probe.close();
  const contextSize = promptTokens + genTokens + 16;
  const results: EngineMeasurement[] = [];
  for (const t of threads) {
    for (const engine of engines as BenchJob["engine"][]) {
      console.error(`measuring ${engine} with ${t} thread${t > 1 ? "s" : ""} …`);
      results.push(await runChild({ engine, model, threads: t, promptTokens, genTokens, reps, memory: engine === "smallthinker" ? memory : undefined, contextSize, vocab }));
    }
  }
  const header =
    `model ${model} (${formatBytes(statSync(model).size)}${synthetic ? ", RANDOM WEIGHTS (synthetic)" : ""}); ` +
    `prefill of ${promptTokens} tokens, then ${genTokens} tokens decoded greedily; ${reps} repetitions`;
  console.log(formatBench(results, header, statSync(model).size));

  let activity: ActivityReport | undefined;
  if (statsTokens > 0) {
    const measured = await loadModel(model, { contextSize: Math.max(statsTokens + 1, 64) });
    try {
      activity = await measureActivity(measured, statsTokens);
    } finally {
      await measured.close();
    }
    console.log(`\n${formatActivity(activity)}`);
  }
  if (values.json) {
    const { frequencies, ...activitySummary } = activity ?? ({} as ActivityReport);
    void frequencies;
    writeFileSync(values.json, JSON.stringify({ model, promptTokens, genTokens, reps, results, activity: activity ? activitySummary : undefined, date: new Date().toISOString() }, null, 2) + "\n");
    console.error(`wrote ${values.json}`);
  }
}
