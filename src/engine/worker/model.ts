import { Worker } from "node:worker_threads";
import { TextChannel } from "../channel.js";
import { EngineMetrics, GenerationStarter, LanguageModel, ModelText, readModelText } from "../language-model.js";
import type { LoadModelOptions } from "../model.js";
import { FromWorker, ModelWorkerData, ToWorker, WorkerReady } from "./protocol.js";
import { PromptThread } from "./prompts.js";
import type { ChatMessage } from "../../chat/index.js";
import type { ChatPromptOptions } from "../language-model.js";

/** Requests that can be in flight at once (each holds a cancel flag until it ends). */
const MAX_REQUESTS = 4096;

interface InFlight {
  channel: TextChannel;
  flag: number;
}

const NO_METRICS: EngineMetrics = {
  slots: 0, active: 0, waiting: 0, kvTokens: 0, kvCapacity: 0, promptTokens: 0, generatedTokens: 0, expertHits: 0, expertMisses: 0, expertBytesRead: 0,
};

/**
 * A SmallThinker model whose forward pass runs on a worker thread of its own (src/engine/worker/
 * thread.ts), so that this thread — an HTTP server's — stays free: it only tokenizes, renders chat
 * templates and passes text along. Same API as `Model` for generating; `logits()`, `engine` and
 * `kernels` exist only on a model loaded in-thread.
 */
export class WorkerModel extends LanguageModel {
  /** What the worker reported last (at most a quarter of a second old while it works). */
  private latest: EngineMetrics = NO_METRICS;
  private readonly inFlight = new Map<number, InFlight>();
  private readonly flags: Int32Array;
  private readonly freeFlags: number[];
  private nextId = 0;
  private closed = false;
  /** Set when the worker thread has stopped: no more generations. */
  private stopped: Error | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    path: string,
    text: ModelText,
    private readonly worker: Worker,
    cancelFlags: SharedArrayBuffer,
    private readonly ready: WorkerReady,
    private readonly prompts: PromptThread,
  ) {
    super(path, ready.config, text);
    this.flags = new Int32Array(cancelFlags);
    this.freeFlags = Array.from({ length: MAX_REQUESTS }, (_, i) => MAX_REQUESTS - 1 - i);
    this.exited = new Promise((resolve) => worker.once("exit", () => resolve()));
    worker.on("message", (message: FromWorker) => this.receive(message));
    worker.on("error", (error) => this.stop(error));
    worker.once("exit", (code) => this.stop(new Error(`the model's worker thread exited (code ${code})`)));
    // like the kernels' threads, an idle model does not keep the process alive
    worker.unref();
  }

  /** Loads the model on a new worker thread; resolves once it can generate. */
  static async load(path: string, options: LoadModelOptions = {}): Promise<WorkerModel> {
    const text = readModelText(path);
    const { onPlan, onProgress, ...rest } = options;
    const cancelFlags = new SharedArrayBuffer(4 * MAX_REQUESTS);
    const data: ModelWorkerData = { path, options: rest, cancelFlags, progress: onProgress !== undefined };
    const worker = new Worker(new URL("./thread.js", import.meta.url), { workerData: data });
    const prompts = new PromptThread(path);
    const loaded = new Promise<WorkerReady>((resolve, reject) => {
      const onMessage = (message: FromWorker) => {
        if (message.type === "plan") onPlan?.(message.plan);
        else if (message.type === "progress") onProgress?.(message.loaded, message.total);
        else if (message.type === "loadFailed") reject(new Error(message.message));
        else if (message.type === "ready") {
          worker.off("message", onMessage);
          resolve(message);
        }
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`the model's worker thread exited (code ${code}) while loading`)));
    });
    let ready: WorkerReady;
    try {
      ready = await loaded;
    } catch (error) {
      await prompts.close();
      throw error;
    }
    worker.removeAllListeners("error");
    worker.removeAllListeners("exit");
    return new WorkerModel(path, text, worker, cancelFlags, ready, prompts);
  }

  get contextSize(): number {
    return this.ready.contextSize;
  }

  get parallel(): number {
    return this.ready.parallel;
  }

  get queued(): number {
    return this.latest.waiting;
  }

  /** The kernels the worker runs on. */
  get kernels(): { name: string; threads: number } {
    return this.ready.kernels;
  }

  metrics(): EngineMetrics {
    return this.latest;
  }

  /** Rendered and tokenized on the prompt thread: this thread stays free. */
  override chatPromptIds(messages: ChatMessage[], options: ChatPromptOptions = {}): Promise<number[]> {
    return this.prompts.chat(messages, options);
  }

  override textPromptIds(text: string, parseSpecial: boolean): Promise<number[]> {
    return this.prompts.text(text, parseSpecial);
  }

  protected get isClosed(): boolean {
    return this.closed;
  }

  protected get starter(): GenerationStarter {
    return (decoding, channel, signal) => {
      if (this.stopped) throw this.stopped;
      const flag = this.freeFlags.pop();
      if (flag === undefined) throw new Error(`more than ${MAX_REQUESTS} generations at once`);
      const id = ++this.nextId;
      if (this.inFlight.size === 0) this.worker.ref();
      this.inFlight.set(id, { channel, flag });
      const cancel = () => {
        if (!this.inFlight.has(id)) return;
        Atomics.store(this.flags, flag, 1);
        this.send({ type: "wake" });
      };
      if (signal?.aborted) cancel();
      signal?.addEventListener("abort", cancel);
      void channel.finished.then(() => signal?.removeEventListener("abort", cancel));
      this.send({ type: "generate", id, flag, spec: decoding.spec, queuedAt: performance.timeOrigin + decoding.queuedAt });
      return { cancel };
    };
  }

  /** Waits for the generations queued so far, then ends the worker thread. */
  async close(): Promise<void> {
    if (this.closed) return this.exited;
    this.closed = true;
    if (!this.stopped) this.send({ type: "close" });
    await this.exited;
    await this.prompts.close();
  }

  private send(message: ToWorker): void {
    if (!this.stopped) this.worker.postMessage(message);
  }

  private receive(message: FromWorker): void {
    switch (message.type) {
      case "text":
        this.inFlight.get(message.id)?.channel.push(message.text);
        return;
      case "finish":
        this.settle(message.id)?.end(message.result);
        return;
      case "fail":
        this.settle(message.id)?.fail(new Error(message.message));
        return;
      case "metrics":
        this.latest = message.metrics;
        return;
    }
  }

  /** The request is over: its flag is free again. */
  private settle(id: number): TextChannel | undefined {
    const request = this.inFlight.get(id);
    if (!request) return undefined;
    this.inFlight.delete(id);
    if (this.inFlight.size === 0) this.worker.unref();
    Atomics.store(this.flags, request.flag, 0);
    this.freeFlags.push(request.flag);
    return request.channel;
  }

  private stop(error: Error): void {
    if (this.stopped) return;
    this.stopped = error;
    for (const id of [...this.inFlight.keys()]) this.settle(id)?.fail(error);
  }
}

/** Loads a SmallThinker GGUF on a worker thread of its own (see `WorkerModel`). */
export function loadModelInWorker(path: string, options: LoadModelOptions = {}): Promise<WorkerModel> {
  return WorkerModel.load(path, options);
}
