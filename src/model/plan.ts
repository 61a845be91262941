import { GgufFile } from "../gguf/reader.js";
import { Kernels } from "../kernels/api.js";
import { MAX_ARENA_BYTES } from "../kernels/arena.js";
import { kvCacheBytes } from "../kv/cache.js";
import { expertStoreSizes } from "../experts/store.js";
import { SmallThinkerConfig } from "./config.js";
import { ModelRuntimeOptions, bufferLayout } from "./model.js";
import { STAGING_BYTES } from "./weights.js";

export interface MemoryPlanInput {
  file: GgufFile;
  config: SmallThinkerConfig;
  kernels: Kernels;
  runtime: ModelRuntimeOptions;
  /** The memory budget in bytes; undefined keeps every expert resident. */
  budget: number | undefined;
  /** What the process holds before any weight is loaded (resident memory plus file cache). */
  baseline: number;
  /** Concurrent expert reads per arena. */
  ioDepth: number;
  /** Threads reading (and packing) experts. */
  ioWorkers: number;
}

export interface MemoryPlan {
  budget: number | undefined;
  baseline: number;
  /** Weights other than experts: attention, routers, norms, output head (packed). */
  dense: number;
  /** KV caches of every parallel sequence. */
  kv: number;
  /** Sequences with a KV cache of their own. */
  parallel: number;
  /** Activations, staging and I/O buffers, expert scratch. */
  buffers: number;
  /** Bytes of one cached expert (gate, up and down, packed). */
  expertBytes: number;
  totalExperts: number;
  cachedExperts: number;
  allResident: boolean;
  /** Arenas (wasm32 memories of at most 4 GiB) the plan uses. */
  arenas: number;
  total: number;
  /** The smallest budget that works with these settings. */
  minimum: number;
}

/** Room kept free in every arena beyond what the plan counts, for alignment and small allocations. */
const ARENA_SLACK = 4 << 20;
/** Padding that aligned allocations add in an arena (counted in the plan). */
const ALIGNMENT_PADDING = 1 << 16;

function denseBytes(file: GgufFile, config: SmallThinkerConfig, kernels: Kernels): number {
  const matrix = (name: string) => {
    const t = file.tensor(name);
    return kernels.packedBytes("matrix", t.type, t.dims[1]!, t.dims[0]!);
  };
  let bytes = 0;
  for (let l = 0; l < config.layers; l++) {
    for (const name of ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp"]) bytes += matrix(`blk.${l}.${name}.weight`);
    bytes += 2 * 4 * config.hidden;
  }
  bytes += 4 * config.hidden;
  bytes += matrix(config.tiedOutput ? "token_embd.weight" : "output.weight");
  return bytes;
}

/**
 * Adds up what a model needs — the process itself, resident weights, KV cache, buffers — and gives
 * the expert cache what is left of the budget. Without a budget every expert is resident.
 */
export function planMemory(input: MemoryPlanInput): MemoryPlan {
  const { file, config, kernels, runtime, budget, baseline, ioDepth, ioWorkers } = input;
  const layout = bufferLayout(file, config, kernels, runtime);
  const modelBuffers = Object.values(layout.buffers).reduce((a, b) => a + b, 0);
  const dense = denseBytes(file, config, kernels);
  const parallel = runtime.parallel ?? 1;
  const kv = parallel * kvCacheBytes(config, { contextSize: runtime.contextSize, batchSize: runtime.batchSize, type: runtime.kvType });
  const geometry = { layers: config.layers, experts: config.experts, hidden: config.hidden, ffn: config.expertFfn, downLayout: config.downLayout };
  const sizes = expertStoreSizes(file, geometry, kernels);
  const totalExperts = config.layers * config.experts;
  const reserved = kernels.reservedArenaBytes + ALIGNMENT_PADDING + ARENA_SLACK;
  const arenaOverhead = kernels.reservedArenaBytes + ALIGNMENT_PADDING;
  const mainArena = reserved + STAGING_BYTES + dense + kv + modelBuffers + layout.expertScratchBytes;
  if (mainArena > MAX_ARENA_BYTES) {
    throw new RangeError(`the model's resident weights, KV cache and buffers need ${mainArena} bytes, more than one 4 GiB arena: lower the context size`);
  }

  /**
   * Arenas needed to hold `experts` experts, and the bytes they add beyond the experts: `first` in
   * the main arena, `perArena` (plus reserve and expert scratch) in each further one.
   */
  const placement = (experts: number, first: number, perArena: number) => {
    let arenas = 1;
    let extra = first;
    let room = MAX_ARENA_BYTES - mainArena - first;
    let left = experts;
    for (;;) {
      const fit = Math.max(0, Math.min(left, Math.floor(room / sizes.slotBytes)));
      left -= fit;
      if (left === 0) break;
      arenas++;
      extra += arenaOverhead + perArena + layout.expertScratchBytes;
      room = MAX_ARENA_BYTES - reserved - perArena - layout.expertScratchBytes;
    }
    return { arenas, extra };
  };
  const ioPerArena = ioDepth * sizes.stagingBytes + ioWorkers * kernels.packer.scratchBytes;
  const fixed = baseline + dense + kv + modelBuffers + STAGING_BYTES + layout.expertScratchBytes + arenaOverhead;
  const residentPlacement = placement(totalExperts, 0, STAGING_BYTES);
  const residentTotal = fixed + residentPlacement.extra + totalExperts * sizes.slotBytes;
  const minimumExperts = 2 * config.expertsUsed;
  const minimum = fixed + placement(minimumExperts, ioPerArena, ioPerArena).extra + minimumExperts * sizes.slotBytes;

  const base = { budget, baseline, dense, kv, parallel, expertBytes: sizes.slotBytes, totalExperts, minimum };
  if (budget === undefined || budget >= residentTotal) {
    const buffers = arenaOverhead + modelBuffers + STAGING_BYTES + layout.expertScratchBytes + residentPlacement.extra;
    return { ...base, buffers, cachedExperts: totalExperts, allResident: true, arenas: residentPlacement.arenas, total: residentTotal };
  }
  if (budget < minimum) {
    throw new RangeError(
      `a memory budget of ${formatMiB(budget)} is too small for this model with these settings: it needs at least ${formatMiB(minimum)} ` +
        `(process ${formatMiB(baseline)}, resident weights ${formatMiB(dense)}, KV cache ${formatMiB(kv)} for ${parallel > 1 ? `${parallel} sequences of ` : ""}${runtime.contextSize} tokens, ` +
        `buffers ${formatMiB(modelBuffers)}, ${minimumExperts} cached experts of ${formatMiB(sizes.slotBytes)}). ` +
        `Raise the budget, or lower the context size${parallel > 1 ? ", the parallel sequences" : ""} or batch size.`,
    );
  }
  let cached = Math.min(totalExperts - 1, Math.floor((budget - fixed - ioPerArena) / sizes.slotBytes));
  for (;;) {
    const { extra } = placement(cached, ioPerArena, ioPerArena);
    if (fixed + extra + cached * sizes.slotBytes <= budget || cached <= minimumExperts) break;
    cached--;
  }
  const { arenas, extra } = placement(cached, ioPerArena, ioPerArena);
  const buffers = arenaOverhead + modelBuffers + STAGING_BYTES + layout.expertScratchBytes + extra;
  return { ...base, buffers, cachedExperts: cached, allResident: false, arenas, total: fixed + extra + cached * sizes.slotBytes };
}

/** The most sequences `defaultParallel` chooses (llama-server's default slot count). */
export const MAX_DEFAULT_PARALLEL = 4;
/** Without a budget, the KV caches of the default sequences stay within this. */
const UNBUDGETED_KV_BYTES = 1 << 30;

/**
 * How many sequences to run at once when not told: up to MAX_DEFAULT_PARALLEL, as long as their
 * KV caches together take at most an eighth of the memory budget (the rest is better spent caching
 * experts), or 1 GiB without a budget; at least one.
 */
export function defaultParallel(kvBytesPerSequence: number, budget: number | undefined): number {
  const room = budget === undefined ? UNBUDGETED_KV_BYTES : budget / 8;
  return Math.max(1, Math.min(MAX_DEFAULT_PARALLEL, Math.floor(room / kvBytesPerSequence)));
}

function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function formatPlan(plan: MemoryPlan): string {
  const row = (label: string, bytes: number) => `  ${label.padEnd(52)} ${formatMiB(bytes).padStart(12)}`;
  const share = ((plan.cachedExperts / plan.totalExperts) * 100).toFixed(0);
  return [
    plan.budget === undefined ? "memory plan (no budget: every expert resident):" : `memory plan for a budget of ${formatMiB(plan.budget)}:`,
    row("process (Node, tokenizer, threads) + file cache", plan.baseline),
    row("resident weights (attention, routers, norms, head)", plan.dense),
    row(plan.parallel > 1 ? `KV cache (${plan.parallel} sequences)` : "KV cache", plan.kv),
    row("buffers (activations, staging, I/O)", plan.buffers),
    row(`expert cache: ${plan.cachedExperts} of ${plan.totalExperts} experts (${share}%)`, plan.cachedExperts * plan.expertBytes),
    row("total", plan.total),
    plan.allResident ? "  every expert is resident: no reads during generation" : `  other experts are read from the model file on demand; minimum budget ${formatMiB(plan.minimum)}`,
  ].join("\n");
}
