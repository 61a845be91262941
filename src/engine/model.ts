import { Kernels, KvType } from "../kernels/api.js";
import { loadSmallThinker } from "../model/load.js";
import { SmallThinkerModel } from "../model/model.js";
import { createKernels, KernelChoice } from "./kernels.js";
import { GenerationResult } from "./generation.js";
import { EngineMetrics, GenerationStarter, LanguageModel, ModelText, readModelText } from "./language-model.js";
import { Scheduler } from "./scheduler.js";
import { parseSize } from "./size.js";
import type { PolicyName } from "../experts/policy.js";
import type { MemoryPlan } from "../model/plan.js";

export interface LoadModelOptions {
  /** Context size in tokens (default 4096, at most the model's). */
  contextSize?: number;
  /** Prompt tokens evaluated per batch (default 256). */
  batchSize?: number;
  /** KV cache element type (default f16). */
  kvType?: KvType;
  /** Skip expert neurons whose gate is ≤ 0 (default true; results are identical either way). */
  sparse?: boolean;
  /** Worker threads for the kernels (default: the core count). */
  threads?: number;
  /** Kernel implementation (default "auto": WebAssembly SIMD when available). */
  kernels?: KernelChoice;
  /** Memory budget for the whole process, in bytes or as text ("1GiB", "800M"); default: every expert resident. */
  memory?: number | string;
  /** Expert cache replacement policy (default "frequency"). */
  policy?: PolicyName;
  /** Read experts as soon as the router has chosen them, during attention (default true). */
  prefetch?: boolean;
  /** Layers ahead whose experts are guessed (their routers on the current residual) and read while idle (default 2). */
  lookahead?: number;
  /** Receives the memory plan before the weights are loaded. */
  onPlan?: (plan: MemoryPlan) => void;
  /** Called as the weights are read, with bytes read so far and bytes to read in all. */
  onProgress?: (loaded: number, total: number) => void;
  /**
   * Sequences generated at once, each with a KV cache of its own (default 1; "auto": up to 4, as
   * the memory budget and context size allow). Concurrent requests beyond it wait.
   */
  parallel?: number | "auto";
}

/**
 * A SmallThinker model loaded on this thread: the forward pass runs here, between turns of the
 * event loop (see `WorkerModel` for one that runs on a worker thread). It generates `parallel`
 * sequences at once (default 1: requests run one at a time in arrival order); a request that
 * shares a prefix with what a sequence's KV cache holds reuses it.
 */
export class Model extends LanguageModel {
  private readonly scheduler: Scheduler;
  private closed = false;

  private constructor(
    path: string,
    readonly engine: SmallThinkerModel,
    readonly kernels: Kernels,
    text: ModelText,
  ) {
    super(path, engine.config, text);
    this.scheduler = new Scheduler(engine);
  }

  static async load(path: string, options: LoadModelOptions = {}): Promise<Model> {
    const text = readModelText(path);
    const memory = typeof options.memory === "string" ? parseSize(options.memory) : options.memory;
    const kernels = await createKernels(options.kernels ?? "auto", options.threads);
    try {
      const engine = loadSmallThinker(path, kernels, { ...options, memory });
      return new Model(path, engine, kernels, text);
    } catch (error) {
      await kernels.dispose();
      throw error;
    }
  }

  get queued(): number {
    return this.scheduler.counts().waiting;
  }

  get contextSize(): number {
    return this.engine.kv.contextSize;
  }

  get parallel(): number {
    return this.engine.kvs.length;
  }

  metrics(): EngineMetrics {
    const { hits, misses, bytesRead } = this.engine.experts.counters;
    return { ...this.scheduler.counts(), expertHits: hits, expertMisses: misses, expertBytesRead: bytesRead };
  }

  protected get isClosed(): boolean {
    return this.closed;
  }

  protected get starter(): GenerationStarter {
    return (decoding, channel, signal) => {
      let gone = false;
      const scheduler = this.scheduler;
      const onAbort = () => scheduler.wake();
      signal?.addEventListener("abort", onAbort);
      void channel.finished.then(() => signal?.removeEventListener("abort", onAbort));
      scheduler.submit({
        decoding,
        cancelled: () => gone || signal?.aborted === true,
        onText: (text) => channel.push(text),
        onFinish: (result) => channel.end(result),
        onError: (error) => channel.fail(error),
      });
      return {
        cancel: () => {
          gone = true;
          scheduler.wake();
        },
      };
    };
  }

  /**
   * Every position's logits for `ids`, evaluated from an empty context (for comparing engines),
   * once the generations queued before have ended.
   * `onRow` receives each row in order; the array is reused after the call returns.
   */
  async logits(ids: readonly number[], onRow: (position: number, logits: Float32Array) => void): Promise<void> {
    await this.scheduler.exclusive((kv) => {
      kv.truncate(0);
      this.engine.forward(ids, { logits: "all", onLogits: onRow });
      return [...ids];
    });
  }

  /** Waits for the generations queued so far, then frees the model. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.scheduler.idle();
    this.engine.close();
    await this.kernels.dispose();
  }
}

/** Loads a SmallThinker GGUF for generation. */
export function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  return Model.load(path, options);
}

export type { GenerationResult, MemoryPlan, PolicyName };
export { LanguageModel, readModelText, type ChatOptions, type ChatPromptOptions, type ChatPromptTokens, type EngineMetrics, type ModelInfo, type PromptOptions } from "./language-model.js";
export { formatPlan } from "../model/plan.js";
