import type { SmallThinkerConfig } from "../../model/config.js";
import type { MemoryPlan } from "../../model/plan.js";
import type { DecodingSpec } from "../decoding.js";
import type { GenerationResult } from "../generation.js";
import type { EngineMetrics } from "../language-model.js";
import type { LoadModelOptions } from "../model.js";

/** What the model's worker thread is started with. */
export interface ModelWorkerData {
  path: string;
  /** LoadModelOptions without its callbacks, which cannot cross threads. */
  options: Omit<LoadModelOptions, "onPlan" | "onProgress">;
  /** Whether to post the load's progress. */
  progress: boolean;
  /** One Int32 per request: set to 1 when its client gives up; read by the forward pass between layers. */
  cancelFlags: SharedArrayBuffer;
}

export type ToWorker =
  /** `queuedAt`: when the request was made, in ms since the epoch (threads have their own performance clocks). */
  | { type: "generate"; id: number; flag: number; spec: DecodingSpec; queuedAt: number }
  /** A cancel flag was raised: look at the jobs even if no step is running. */
  | { type: "wake" }
  | { type: "close" };

export interface WorkerReady {
  config: SmallThinkerConfig;
  contextSize: number;
  parallel: number;
  kernels: { name: string; threads: number };
}

export type FromWorker =
  | { type: "plan"; plan: MemoryPlan }
  | { type: "progress"; loaded: number; total: number }
  | ({ type: "ready" } & WorkerReady)
  | { type: "loadFailed"; message: string }
  | { type: "text"; id: number; text: string }
  | { type: "finish"; id: number; result: GenerationResult }
  | { type: "fail"; id: number; message: string }
  | { type: "metrics"; metrics: EngineMetrics };
