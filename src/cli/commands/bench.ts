import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { ModelHeader, decodeTraffic, readModelHeader } from "../../bench/roofline.js";
import { ActivityReport, formatActivity, measureActivity } from "../../engine/activity.js";
import { loadModel } from "../../engine/model.js";
import { BenchJob, EngineMeasurement, summarize } from "../../bench/measure.js";
import { runBandwidthChild, runBenchChild } from "../../bench/spawn.js";
import { CommandError, UsageError, formatBytes, helpHint, parseCommand, parseInteger, parseSizeOption } from "../args.js";
import { resolveModelPath } from "../open-model.js";

export const BENCH_HELP = `smallthinker bench [-m FILE]... [options]

Measures smallthinker and llama.cpp (node-llama-cpp's prebuilt CPU build) on the same GGUF in one
run: prompt processing (prefill) and generation (decode) speed, at each thread count, each engine
in its own process (so peak memory is its own); the machine's read bandwidth at each thread count
and, per engine, the bytes a decoded token reads and the share of that bandwidth floor reached;
then the model's routing skew and ReGLU sparsity. Several -m models are measured in one run, and
their ratios to llama.cpp compared with the first model's.

  -m, --model M         SmallThinker GGUF, or hf:OWNER/NAME[:QUANT] (default: the demo model);
                        repeat for several models
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
  model: { type: "string", short: "m", multiple: true }, "prompt-tokens": { type: "string" }, "gen-tokens": { type: "string" },
  threads: { type: "string" }, reps: { type: "string" }, engines: { type: "string" }, memory: { type: "string" },
  json: { type: "string" }, "stats-tokens": { type: "string" }, help: { type: "boolean", short: "h" },
} as const;

const GB = 1e9;

/**
 * The roofline: per engine and thread count, the bytes a decoded token reads at the mean decode
 * context (smallthinker reads only the active neurons' up rows and down columns, llama.cpp every
 * chosen expert whole; both keep an f16 KV cache) and the share of the bandwidth floor reached.
 */
export function formatRoofline(results: EngineMeasurement[], bandwidth: Map<number, number>, model: ModelHeader, context: number): string {
  const rows = [
    `Roofline at context ${context}: the bytes a decoded token reads, and the decode speed those bytes allow at the measured read bandwidth`,
    "",
    "| engine | threads | read bandwidth | MB per token: dense + experts + head + KV = total | floor tok/s | decode / floor |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const bytesPerSecond = bandwidth.get(r.threads);
    if (bytesPerSecond === undefined) continue;
    const activeShare = r.engine === "smallthinker" ? (r.decodeActiveShare ?? 1) : 1;
    const t = decodeTraffic(model.tensors, model.config, { context, activeShare, kvElementBytes: 2 });
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    const floor = bytesPerSecond / t.total;
    const decode = summarize(r.decode).median;
    rows.push(
      `| ${r.engine} | ${r.threads} | ${(bytesPerSecond / GB).toFixed(1)} GB/s | ${mb(t.dense)} + ${mb(t.experts)} + ${mb(t.head)} + ${mb(t.kv)} = ${mb(t.total)} | ${floor.toFixed(1)} | ${((decode / floor) * 100).toFixed(0)} % |`,
    );
  }
  const shares = results.filter((r) => r.decodeActiveShare !== undefined).map((r) => r.decodeActiveShare!);
  if (shares.length) rows.push(`(smallthinker's experts: ${(shares[0]! * 100).toFixed(1)} % of the chosen experts' neurons active while decoding)`);
  return rows.join("\n");
}

interface ModelRatios {
  model: string;
  threads: number;
  prefill: number;
  decode: number;
}

function ratiosOf(model: string, results: EngineMeasurement[]): ModelRatios[] {
  return [...new Set(results.map((r) => r.threads))].flatMap((threads) => {
    const ours = results.find((r) => r.engine === "smallthinker" && r.threads === threads);
    const theirs = results.find((r) => r.engine === "llama.cpp" && r.threads === threads);
    if (!ours || !theirs) return [];
    const median = (values: number[]) => summarize(values).median;
    return [{ model, threads, prefill: median(ours.prefill) / median(theirs.prefill), decode: median(ours.decode) / median(theirs.decode) }];
  });
}

/** Several models' ratios to llama.cpp beside the first model's ratios at the same thread count. */
export function formatRatioComparison(ratios: ModelRatios[]): string {
  const rows = [
    "smallthinker / llama.cpp per model, and each ratio over the first model's at the same thread count",
    "",
    "| model | threads | prefill ratio | decode ratio | prefill ratio / first's | decode ratio / first's |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of ratios) {
    const first = ratios.find((f) => f.threads === r.threads)!;
    rows.push(`| ${basename(r.model)} | ${r.threads} | ×${r.prefill.toFixed(2)} | ×${r.decode.toFixed(2)} | ${(r.prefill / first.prefill).toFixed(2)} | ${(r.decode / first.decode).toFixed(2)} |`);
  }
  return rows.join("\n");
}

async function measureBandwidth(threads: number[]): Promise<Map<number, number>> {
  const bandwidth = new Map<number, number>();
  for (const t of threads) {
    console.error(`measuring read bandwidth with ${t} thread${t > 1 ? "s" : ""} …`);
    const outcome = await runBandwidthChild({ engine: "bandwidth", threads: t });
    if ("failure" in outcome) throw new CommandError(`smallthinker bench: the bandwidth probe (${t} threads) failed: ${outcome.failure}`);
    bandwidth.set(t, outcome.measurement.bytesPerSecond);
  }
  return bandwidth;
}

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
  const models: string[] = [];
  for (const model of values.model ?? [undefined]) models.push(await resolveModelPath(model, (line) => console.error(line)));

  const bandwidth = await measureBandwidth(threads);
  const contextSize = promptTokens + genTokens + 16;
  const measured: { model: string; results: EngineMeasurement[]; activity?: ActivityReport }[] = [];
  const ratios: ModelRatios[] = [];
  for (const model of models) {
    const header = readModelHeader(model);
    const results: EngineMeasurement[] = [];
    for (const t of threads) {
      for (const engine of engines as BenchJob["engine"][]) {
        console.error(`${basename(model)}: measuring ${engine} with ${t} thread${t > 1 ? "s" : ""} …`);
        results.push(await runChild({ engine, model, threads: t, promptTokens, genTokens, reps, memory: engine === "smallthinker" ? memory : undefined, contextSize, vocab: header.config.vocabSize }));
      }
    }
    const title =
      `model ${model} (${formatBytes(header.fileSize)}${header.synthetic ? ", RANDOM WEIGHTS (synthetic)" : ""}); ` +
      `prefill of ${promptTokens} tokens, then ${genTokens} tokens sampled with run's defaults (seed 1) and streamed; ${reps} repetitions`;
    console.log(formatBench(results, title, header.fileSize));
    console.log(`\n${formatRoofline(results, bandwidth, header, promptTokens + Math.ceil(genTokens / 2))}`);
    ratios.push(...ratiosOf(model, results));

    let activity: ActivityReport | undefined;
    if (statsTokens > 0) {
      const loaded = await loadModel(model, { contextSize: Math.max(statsTokens + 1, 64) });
      try {
        activity = await measureActivity(loaded, statsTokens);
      } finally {
        await loaded.close();
      }
      console.log(`\n${formatActivity(activity)}`);
    }
    measured.push({ model, results, activity });
    if (models.length > 1) console.log("");
  }
  if (models.length > 1 && ratios.length) console.log(formatRatioComparison(ratios));
  if (values.json) {
    const summary = measured.map(({ model, results, activity }) => {
      const { frequencies, ...activitySummary } = activity ?? ({} as ActivityReport);
      void frequencies;
      return { model, results, activity: activity ? activitySummary : undefined };
    });
    const bandwidthByThreads = Object.fromEntries(bandwidth);
    writeFileSync(values.json, JSON.stringify({ promptTokens, genTokens, reps, bandwidth: bandwidthByThreads, models: summary, ratios, date: new Date().toISOString() }, null, 2) + "\n");
    console.error(`wrote ${values.json}`);
  }
}
