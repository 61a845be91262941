import { parentPort, workerData } from "node:worker_threads";
import { loadSmallThinker } from "../../model/load.js";
import { SmallThinkerModel } from "../../model/model.js";
import { Kernels } from "../../kernels/api.js";
import { Decoding } from "../decoding.js";
import { createKernels } from "../kernels.js";
import { EngineMetrics, readModelText } from "../language-model.js";
import { Scheduler } from "../scheduler.js";
import { parseSize } from "../size.js";
import { FromWorker, ModelWorkerData, ToWorker } from "./protocol.js";

/**
 * The model's worker thread: it owns the kernels, the weights and the scheduler, and runs the
 * forward pass, sampling and detokenization, so that the thread that started it (an HTTP server)
 * never waits for them. Requests come in as messages; text, results and metrics go back as they
 * are produced. A request's cancel flag, in memory both threads share, is read between steps and
 * between the layers of a step, so a cancellation takes effect within one layer's time.
 */

const METRICS_INTERVAL_MS = 250;

const port = parentPort!;
const data = workerData as ModelWorkerData;
const flags = new Int32Array(data.cancelFlags);
const post = (message: FromWorker) => port.postMessage(message);

function metricsOf(scheduler: Scheduler, engine: SmallThinkerModel): EngineMetrics {
  const { hits, misses, bytesRead } = engine.experts.counters;
  return { ...scheduler.counts(), expertHits: hits, expertMisses: misses, expertBytesRead: bytesRead };
}

async function main(): Promise<void> {
  const { options } = data;
  const memory = typeof options.memory === "string" ? parseSize(options.memory) : options.memory;
  let kernels: Kernels | undefined;
  let engine: SmallThinkerModel;
  try {
    const { tokenizer } = readModelText(data.path);
    kernels = await createKernels(options.kernels ?? "auto", options.threads);
    const onProgress = data.progress ? (loaded: number, total: number) => post({ type: "progress", loaded, total }) : undefined;
    engine = loadSmallThinker(data.path, kernels, { ...options, memory, onPlan: (plan) => post({ type: "plan", plan }), onProgress });
    serve(engine, kernels, tokenizer);
  } catch (error) {
    await kernels?.dispose();
    post({ type: "loadFailed", message: error instanceof Error ? error.message : String(error) });
    port.close();
  }
}

function serve(engine: SmallThinkerModel, kernels: Kernels, tokenizer: ReturnType<typeof readModelText>["tokenizer"]): void {
  const scheduler = new Scheduler(engine);
  const publish = () => post({ type: "metrics", metrics: metricsOf(scheduler, engine) });
  const timer = setInterval(publish, METRICS_INTERVAL_MS);
  timer.unref();
  port.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "generate": {
        const { id, flag, spec } = message;
        const queuedAt = message.queuedAt - performance.timeOrigin;
        let decoding: Decoding;
        try {
          decoding = new Decoding(tokenizer, engine.config.vocabSize, engine.kv.contextSize, spec, queuedAt);
        } catch (error) {
          // checked on the other thread already; a request is never worth the worker
          post({ type: "fail", id, message: error instanceof Error ? error.message : String(error) });
          return;
        }
        scheduler.submit({
          decoding,
          cancelled: () => Atomics.load(flags, flag) !== 0,
          onText: (text) => post({ type: "text", id, text }),
          onFinish: (result) => {
            post({ type: "finish", id, result });
            publish();
          },
          onError: (error) => post({ type: "fail", id, message: error instanceof Error ? error.message : String(error) }),
        });
        return;
      }
      case "wake":
        scheduler.wake();
        return;
      case "close":
        void scheduler.idle().then(async () => {
          clearInterval(timer);
          engine.close();
          await kernels.dispose();
          port.close();
        });
        return;
    }
  });
  const { config } = engine;
  post({ type: "ready", config, contextSize: engine.kv.contextSize, parallel: engine.kvs.length, kernels: { name: kernels.name, threads: kernels.threads } });
  publish();
}

void main();
