import { GgufFile } from "../gguf/reader.js";
import { tensorByteLength } from "../gguf/types.js";
import { Kernels, KvType } from "../kernels/api.js";
import { DirectFile } from "../experts/direct-file.js";
import { PolicyName } from "../experts/policy.js";
import { ResidentExperts } from "../experts/resident.js";
import { ExpertStore } from "../experts/store.js";
import { SmallThinkerConfig, readConfig } from "./config.js";
import { ModelRuntimeOptions, SmallThinkerModel } from "./model.js";
import { MemoryPlan, defaultParallel, planMemory } from "./plan.js";
import { kvCacheBytes } from "../kv/cache.js";
import { requireSupported } from "./support.js";
import { STAGING_BYTES, WeightLoader } from "./weights.js";

export interface LoadOptions {
  contextSize?: number;
  batchSize?: number;
  kvType?: KvType;
  sparse?: boolean;
  logitsRows?: number;
  /** Sequences with a KV cache of their own, evaluated together (default 1; "auto": `defaultParallel`). */
  parallel?: number | "auto";
  /** Memory budget in bytes for the whole process; undefined keeps every expert resident. */
  memory?: number;
  /** Expert cache replacement policy (default "frequency"). */
  policy?: PolicyName;
  /** Read experts as soon as the router has chosen them (default true). */
  prefetch?: boolean;
  /** Threads reading experts from the file (default 2). */
  ioWorkers?: number;
  /** Expert reads in flight per arena (default 8). */
  ioDepth?: number;
  /** Layers ahead whose experts are predicted and read early under a budget (default 2). */
  lookahead?: number;
  /** Bytes the process holds besides the model (default: measured resident memory plus a margin). */
  processBytes?: number;
  /** Receives the memory plan before weights are loaded. */
  onPlan?: (plan: MemoryPlan) => void;  /** Called as weights are read at load time, with bytes read so far and bytes to read in all. */
  onProgress?: (loaded: number, total: number) => void;
}

/** Growth of the process after planning (JIT code, V8 heap, thread stacks), kept out of the expert cache. */
const RUNTIME_MARGIN = 24 << 20;
const DEFAULT_IO_DEPTH = 8;
const DEFAULT_IO_WORKERS = 2;

/** File bytes the loader reads before the model can run: dense weights, and the experts when all are resident. */
function bytesLoadedAtStart(file: GgufFile, config: SmallThinkerConfig, allResident: boolean): number {
  const names = ["output_norm.weight", config.tiedOutput ? "token_embd.weight" : "output.weight"];
  const perLayer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate_inp", ...(allResident ? ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"] : [])];
  for (let l = 0; l < config.layers; l++) names.push(...perLayer.map((name) => `blk.${l}.${name}.weight`));
  return names.reduce((sum, name) => sum + tensorByteLength(file.tensor(name)), 0);
}

/**
 * The runtime settings and memory plan a load with these options makes, before anything is
 * loaded: what `smallthinker info` shows. Throws a RangeError for a budget below the minimum.
 */
export function planLoad(file: GgufFile, config: SmallThinkerConfig, kernels: Kernels, options: LoadOptions = {}): { runtime: ModelRuntimeOptions; plan: MemoryPlan } {
  const batchSize = options.batchSize ?? 256;
  const contextSize = Math.min(options.contextSize ?? 4096, config.contextLength);
  const kvType = options.kvType ?? "f16";
  const parallel = options.parallel === "auto" ? defaultParallel(kvCacheBytes(config, { contextSize, batchSize, type: kvType }), options.memory) : (options.parallel ?? 1);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > batchSize) {
    throw new RangeError(`parallel must be a whole number from 1 to the batch size (${batchSize}), got ${parallel}`);
  }
  const runtime: ModelRuntimeOptions = {
    contextSize,
    batchSize,
    kvType,
    sparse: options.sparse ?? true,
    logitsRows: Math.min(options.logitsRows ?? 8, batchSize),
    parallel,
  };
  const plan = planMemory({
    file, config, kernels, runtime, budget: options.memory,
    ioDepth: options.ioDepth ?? DEFAULT_IO_DEPTH, ioWorkers: options.ioWorkers ?? DEFAULT_IO_WORKERS,
    baseline: options.processBytes ?? process.memoryUsage().rss + file.dataOffset + RUNTIME_MARGIN,
  });
  return { runtime, plan };
}

/** Opens a SmallThinker GGUF and loads it within the memory budget. */
export function loadSmallThinker(path: string, kernels: Kernels, options: LoadOptions = {}): SmallThinkerModel {
  const file = GgufFile.open(path);
  let direct: DirectFile | undefined;
  try {
    const config = readConfig(file);
    requireSupported(file, config, kernels);
    const ioDepth = options.ioDepth ?? DEFAULT_IO_DEPTH;
    const ioWorkers = options.ioWorkers ?? DEFAULT_IO_WORKERS;
    const { runtime, plan } = planLoad(file, config, kernels, options);
    options.onPlan?.(plan);
    const arena = kernels.createArena();
    const staging = { arena, ptr: arena.alloc(STAGING_BYTES, 4096), bytes: STAGING_BYTES };
    direct = new DirectFile(file.paths);
    const total = bytesLoadedAtStart(file, config, plan.allResident);
    let loaded = 0;
    const onProgress = options.onProgress;
    const loader = new WeightLoader(direct, kernels, staging, onProgress && ((bytes) => onProgress((loaded += bytes), total)));
    const dense = SmallThinkerModel.loadDenseWeights(file, config, loader, arena);
    const geometry = { layers: config.layers, experts: config.experts, hidden: config.hidden, ffn: config.expertFfn, downLayout: config.downLayout };
    const model = new SmallThinkerModel(file, config, kernels, dense, (arenas, headroom) =>
      plan.allResident
        ? new ResidentExperts(file, config, kernels, loader, arenas, headroom)
        : new ExpertStore(file, geometry, kernels, arenas, headroom, {
            slots: plan.cachedExperts,
            policy: options.policy ?? "frequency",
            prefetch: options.prefetch ?? true,
            ioWorkers,
            ioDepth,
            lookahead: options.lookahead ?? 2,
          }),
      arena, runtime, plan,
    );
    onProgress?.(total, total);
    return model;
  } catch (error) {
    file.close();
    throw error;
  } finally {
    direct?.close();
  }
}
