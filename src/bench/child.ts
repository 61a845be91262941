import { loadModel } from "../engine/model.js";
import { DEFAULT_SAMPLING_OPTIONS } from "../sampling/index.js";
import { measureReadBandwidth } from "./bandwidth.js";
import { BandwidthJob, BenchJob, EngineMeasurement, benchPrompt } from "./measure.js";

/**
 * Runs one benchmark job in its own process (so peak memory is the engine's alone) and prints the
 * measurement as one JSON line. Both engines do what a user's request does: evaluate a prompt, then
 * generate tokens one at a time with `run`'s default sampling (seeded), ours through the library's
 * `generate` (scheduler, sampler, detokenizer, streamed text), llama.cpp's through node-llama-cpp's
 * sequence evaluation with its sampler.
 */
const SAMPLING = { ...DEFAULT_SAMPLING_OPTIONS, seed: 1 };

async function runOurs(job: BenchJob): Promise<EngineMeasurement> {
  const started = performance.now();
  const model = await loadModel(job.model, { threads: job.threads, contextSize: job.contextSize, memory: job.memory, policy: job.policy, lookahead: job.lookahead });
  const loadMs = performance.now() - started;
  const prefill: number[] = [];
  const decode: number[] = [];
  const engine = model.engine;
  const counters = engine.experts.counters;
  const decodeTotals = { hits: 0, misses: 0, bytesRead: 0, stallMs: 0, predictedReads: 0, predictedUsed: 0, tokens: 0, active: 0, evaluated: 0 };
  const stream = async (prompt: number[], maxTokens: number) => {
    const generation = model.generate(prompt, { ...SAMPLING, maxTokens, ignoreEos: true });
    for await (const piece of generation) void piece;
    return generation.result;
  };
  for (let rep = 0; rep < job.reps; rep++) {
    const prompt = benchPrompt(job.promptTokens, job.vocab, rep);
    // the prompt, and its first token; then the rest continues from the KV cache, as a chat's next
    // turn does, so decode's counters and time are its own
    const first = await stream(prompt, 1);
    prefill.push((job.promptTokens / first.timings.promptMs) * 1000);
    const before = { ...counters };
    const activeBefore = { active: engine.stats.gateActive, total: engine.stats.gateTotal };
    const rest = await stream([...prompt, ...first.tokens], job.genTokens);
    if (rest.cachedPromptTokens !== job.promptTokens) throw new Error(`decode re-evaluated its prompt (${rest.cachedPromptTokens} of ${job.promptTokens + 1} tokens cached)`);
    decode.push((rest.completionTokens / rest.timings.generateMs) * 1000);
    decodeTotals.hits += counters.hits - before.hits;
    decodeTotals.misses += counters.misses - before.misses;
    decodeTotals.bytesRead += counters.bytesRead - before.bytesRead;
    decodeTotals.stallMs += counters.stallMs - before.stallMs;
    decodeTotals.predictedReads += counters.predictedReads - before.predictedReads;
    decodeTotals.predictedUsed += counters.predictedUsed - before.predictedUsed;
    decodeTotals.tokens += job.genTokens;
    decodeTotals.active += engine.stats.gateActive - activeBefore.active;
    decodeTotals.evaluated += engine.stats.gateTotal - activeBefore.total;
  }
  const plan = engine.plan;
  const experts = {
    hitRate: decodeTotals.hits / Math.max(1, decodeTotals.hits + decodeTotals.misses),
    bytesReadPerToken: decodeTotals.bytesRead / decodeTotals.tokens,
    stallMsPerToken: decodeTotals.stallMs / decodeTotals.tokens,
    predictedReadsPerToken: decodeTotals.predictedReads / decodeTotals.tokens,
    predictedUsedRate: decodeTotals.predictedUsed / Math.max(1, decodeTotals.predictedReads),
    cachedExperts: plan.cachedExperts,
    totalExperts: plan.totalExperts,
  };
  const note = `kernels ${model.kernels.name}` + (job.memory !== undefined ? `, budget ${(job.memory / 2 ** 20).toFixed(0)} MiB, ${job.policy ?? "frequency"} policy` : "");
  await model.close();
  return { engine: "smallthinker", threads: job.threads, prefill, decode, peakRss: process.resourceUsage().maxRSS * 1024, kvBytes: plan.kv, loadMs, note, experts, decodeActiveShare: decodeTotals.active / Math.max(1, decodeTotals.evaluated) };
}

async function runLlama(job: BenchJob): Promise<EngineMeasurement> {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const started = performance.now();
  const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, logLevel: LlamaLogLevel.error, maxThreads: job.threads });
  const model = await llama.loadModel({ modelPath: job.model, useMmap: true, lazyMode: job.lazy ?? false });
  const context = await model.createContext({ contextSize: job.contextSize, batchSize: Math.min(512, job.promptTokens), threads: { ideal: job.threads, min: job.threads } });
  const sequence = context.getSequence();
  const loadMs = performance.now() - started;
  const prefill: number[] = [];
  const decode: number[] = [];
  type Token = Parameters<typeof sequence.evaluate>[0][number];
  for (let rep = 0; rep < job.reps; rep++) {
    await sequence.clearHistory();
    const prompt = benchPrompt(job.promptTokens, job.vocab, rep) as Token[];
    let t = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
    prefill.push(((job.promptTokens - 1) / (performance.now() - t)) * 1000);
    t = performance.now();
    let generated = 0;
    for await (const token of sequence.evaluate(prompt.slice(-1), { temperature: SAMPLING.temperature, topK: SAMPLING.topK, topP: SAMPLING.topP, minP: SAMPLING.minP, seed: SAMPLING.seed })) {
      void token;
      if (++generated >= job.genTokens) break;
    }
    decode.push((generated / (performance.now() - t)) * 1000);
  }
  const note = `node-llama-cpp prebuilt, mmap${job.lazy ? ", lazy tensor loading" : ""}, context ${job.contextSize}`;
  await context.dispose();
  await model.dispose();
  return { engine: "llama.cpp", threads: job.threads, prefill, decode, peakRss: process.resourceUsage().maxRSS * 1024, loadMs, note };
}

/**
 * llama.cpp through src/bench/llama-direct.ts, for what node-llama-cpp cannot set: without weight
 * repacking, the weights stay in the mmap instead of being copied into anonymous memory.
 */
async function runLlamaDirect(job: BenchJob): Promise<EngineMeasurement> {
  if (job.lazy) throw new Error("lazy tensor loading is a node-llama-cpp option; the direct driver does not offer it");
  const { openLlamaDirect } = await import("./llama-direct.js");
  const started = performance.now();
  const llama = openLlamaDirect({
    modelPath: job.model,
    threads: job.threads,
    contextSize: job.contextSize,
    batchSize: Math.min(512, job.promptTokens),
    useExtraBufts: !job.noRepack,
  });
  const loadMs = performance.now() - started;
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let rep = 0; rep < job.reps; rep++) {
    llama.reset();
    let t = performance.now();
    llama.prefill(benchPrompt(job.promptTokens, job.vocab, rep));
    prefill.push((job.promptTokens / (performance.now() - t)) * 1000);
    t = performance.now();
    llama.decodeGreedy(job.genTokens);
    decode.push((job.genTokens / (performance.now() - t)) * 1000);
  }
  llama.close();
  const note = `libllama direct, mmap${job.noRepack ? ", no repack" : ""}, context ${job.contextSize}`;
  return { engine: "llama.cpp", threads: job.threads, prefill, decode, peakRss: process.resourceUsage().maxRSS * 1024, loadMs, note };
}

const job = JSON.parse(process.argv[2]!) as BenchJob | BandwidthJob;
if (job.engine === "bandwidth") {
  process.stdout.write(`${JSON.stringify({ bytesPerSecond: await measureReadBandwidth(job.threads) })}\n`);
  process.exit(0);
}
if (job.noRepack && job.llamaDriver !== "direct") throw new Error("node-llama-cpp cannot turn weight repacking off; use llamaDriver \"direct\"");
const measurement =
  job.engine === "smallthinker" ? await runOurs(job) : job.llamaDriver === "direct" ? await runLlamaDirect(job) : await runLlama(job);
process.stdout.write(`${JSON.stringify(measurement)}\n`);
process.exit(0);
