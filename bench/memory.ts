/**
 * Decode speed within a hard memory cap: each engine runs in its own cgroup (v1) whose limit counts
 * the page cache too, after the page cache is dropped, so nothing is served from memory the cap
 * does not see. Needs root.
 *
 *   node dist/bench/memory.js [--cap 1GiB] [--models a.gguf,b.gguf] [--tokens 64] [--threads 2]
 *                             [--llama-defaults] [--llama-lazy]
 *
 * For each model: smallthinker within the cap (frequency policy with and without lookahead, LRU), smallthinker with
 * every expert resident and no cap (the reference speed), and llama.cpp within the cap. llama.cpp
 * runs mmapped without weight repacking (`--no-repack`, through the direct libllama driver):
 * repacking copies the Q4_0 weights into anonymous memory, more than the cap holds.
 * --llama-defaults adds node-llama-cpp with its defaults (repacking on), --llama-lazy
 * node-llama-cpp with lazy tensor loading.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { BenchJob, EngineMeasurement, summarize } from "../src/bench/measure.js";
import { runBenchChild } from "../src/bench/spawn.js";
import { parseSize } from "../src/engine/size.js";
import { GgufFile } from "../src/gguf/reader.js";

const CGROUP_ROOT = "/sys/fs/cgroup/memory";

interface CappedRun {
  label: string;
  measurement?: EngineMeasurement;
  failure?: string;
  cap?: number;
  peakUsage?: number;
  failcnt?: number;
  oomKills?: number;
}

function dropPageCache(): void {
  writeFileSync("/proc/sys/vm/drop_caches", "3\n");
}

function cgroupFile(name: string, file: string): string {
  return `${CGROUP_ROOT}/${name}/${file}`;
}

async function runInCgroup(label: string, job: BenchJob, cap: number | undefined): Promise<CappedRun> {
  const name = `smallthinker-bench-${process.pid}`;
  const dir = `${CGROUP_ROOT}/${name}`;
  if (!existsSync(dir)) mkdirSync(dir);
  writeFileSync(cgroupFile(name, "memory.limit_in_bytes"), `${cap ?? -1}\n`);
  writeFileSync(cgroupFile(name, "memory.max_usage_in_bytes"), "0\n");
  writeFileSync(cgroupFile(name, "memory.failcnt"), "0\n");
  await new Promise<void>((resolve) => spawn("sync").on("close", () => resolve()));
  dropPageCache();
  const result: CappedRun = { label, cap };
  // The shell joins the cgroup, then becomes the benchmark process: everything it maps is charged.
  const outcome = await runBenchChild(job, `echo $$ > ${cgroupFile(name, "cgroup.procs")}`);
  if ("measurement" in outcome) result.measurement = outcome.measurement;
  else result.failure = outcome.killed ? "killed (out of memory)" : outcome.failure;
  result.peakUsage = Number(readFileSync(cgroupFile(name, "memory.max_usage_in_bytes"), "utf8"));
  result.failcnt = Number(readFileSync(cgroupFile(name, "memory.failcnt"), "utf8"));
  const oom = /oom_kill (\d+)/.exec(readFileSync(cgroupFile(name, "memory.oom_control"), "utf8"));
  result.oomKills = oom ? Number(oom[1]) : 0;
  rmdirSync(dir);
  return result;
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? "–" : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

function row(run: CappedRun): string {
  const m = run.measurement;
  const decode = m ? summarize(m.decode).median.toFixed(2) : run.failure!;
  const e = m?.experts;
  const cache = e ? `${e.cachedExperts}/${e.totalExperts}` : "–";
  const hit = e ? `${(e.hitRate * 100).toFixed(1)}%` : "–";
  const read = e ? mib(e.bytesReadPerToken) : "–";
  const stall = e ? `${e.stallMsPerToken.toFixed(1)} ms` : "–";
  const guesses = e && e.predictedReadsPerToken > 0 ? `${e.predictedReadsPerToken.toFixed(1)} (${(e.predictedUsedRate * 100).toFixed(0)}% used)` : "–";
  const capHit = run.cap === undefined ? "no cap" : run.failcnt === 0 && run.oomKills === 0 ? "never" : `${run.failcnt} times${run.oomKills ? `, ${run.oomKills} OOM kill` : ""}`;
  return `| ${run.label} | ${decode} | ${cache} | ${hit} | ${read} | ${stall} | ${guesses} | ${mib(run.peakUsage)} | ${capHit} |`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cap: { type: "string" }, models: { type: "string" }, tokens: { type: "string" }, threads: { type: "string" },
      prompt: { type: "string" }, reps: { type: "string" }, "llama-defaults": { type: "boolean" }, "llama-lazy": { type: "boolean" },
    },
  });
  if (process.getuid?.() !== 0) throw new Error("the memory benchmark needs root (cgroups and drop_caches)");
  const cap = parseSize(values.cap ?? "1GiB");
  const models = (values.models ?? ".cache/models/4b-q4_0-uniform.gguf,.cache/models/4b-q4_0-paper.gguf").split(",");
  const genTokens = Number(values.tokens ?? 64);
  const promptTokens = Number(values.prompt ?? 16);
  const threads = Number(values.threads ?? 2);
  const reps = Number(values.reps ?? 2);
  const lines: string[] = [];
  for (const model of models) {
    const file = GgufFile.open(model);
    const vocab = file.metadata.getStringArray("tokenizer.ggml.tokens").length;
    const skew = file.metadata.has("synth.routing.hot_fraction") ? "paper-like skew and sparsity" : "uniform routing";
    file.close();
    const base: BenchJob = { engine: "smallthinker", model, threads, promptTokens, genTokens, reps, contextSize: 512, vocab };
    const runs: CappedRun[] = [];
    runs.push(await runInCgroup("smallthinker, frequency policy", { ...base, memory: cap }, cap));
    runs.push(await runInCgroup("smallthinker, frequency policy, no lookahead", { ...base, memory: cap, lookahead: 0 }, cap));
    runs.push(await runInCgroup("smallthinker, LRU policy", { ...base, memory: cap, policy: "lru" }, cap));
    const resident = await runInCgroup("smallthinker, all resident (no cap)", base, undefined);
    runs.push(resident);
    const llamaJob: BenchJob = { ...base, engine: "llama.cpp", reps: 1, genTokens: Math.min(genTokens, 16) };
    runs.push(await runInCgroup("llama.cpp (mmap, no repack, context 512)", { ...llamaJob, llamaDriver: "direct", noRepack: true }, cap));
    if (values["llama-defaults"]) runs.push(await runInCgroup("llama.cpp, node-llama-cpp defaults (mmap, repacked, context 512)", llamaJob, cap));
    if (values["llama-lazy"]) runs.push(await runInCgroup("llama.cpp, node-llama-cpp (mmap, lazy tensors)", { ...llamaJob, lazy: true }, cap));
    const ours = runs[0]!.measurement;
    const llama = runs.slice(runs.indexOf(resident) + 1).map((r) => r.measurement).filter((m) => m !== undefined);
    lines.push(
      `### ${model} (${skew}), cap ${mib(cap)}, ${threads} threads, ${genTokens} tokens decoded after a ${promptTokens}-token prompt, page cache dropped before each run`,
      "",
      "| run | decode tok/s | experts cached | hit rate | read per token | stall per token | guessed reads per token | cgroup peak | cap hit |",
      "|---|---|---|---|---|---|---|---|---|",
      ...runs.map(row),
      "",
    );
    if (ours && resident.measurement) lines.push(`within the cap: ${((summarize(ours.decode).median / summarize(resident.measurement.decode).median) * 100).toFixed(0)}% of all-resident decode speed`);
    for (const m of llama) if (ours) lines.push(`within the cap: ×${(summarize(ours.decode).median / summarize(m.decode).median).toFixed(1)} llama.cpp's decode speed (${m.note})`);
    lines.push("");
    console.log(lines.splice(0).join("\n"));
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
