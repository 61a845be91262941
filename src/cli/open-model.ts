import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { formatPlan, loadModel, LoadModelOptions, Model } from "../engine/model.js";
import { pullModel } from "../hub/index.js";
import { formatBytes } from "./args.js";
import { demoModelPath } from "./demo.js";
import { progressBar, type Progress } from "./progress.js";

export type Log = (line: string) => void;

/** One line on stderr for a setting that cannot take effect as given. */
export function warn(line: string): void {
  console.error(`warning: ${line}`);
}

/**
 * The file a command's -m names: a path as it is, hf:OWNER/NAME[:QUANT] fetched into (or found in)
 * the Hugging Face cache (a split model's first part, beside which its other parts lie), nothing
 * for the demo model.
 */
export async function resolveModelPath(model: string | undefined, log: Log): Promise<string> {
  if (model === undefined) return demoModelPath(log);
  if (!model.startsWith("hf:")) return model;
  const pulled = await pullWithProgress(model.slice(3), log);
  return pulled.paths[0]!;
}

export async function pullWithProgress(reference: string, log: Log): ReturnType<typeof pullModel> {
  let bar: Progress | undefined;
  let current = "";
  try {
    return await pullModel(reference, {
      onNotice: log,
      onProgress: (file, done, total) => {
        if (file !== current) {
          bar?.finish();
          current = file;
          bar = progressBar(file.slice(file.lastIndexOf("/") + 1), { plain: true });
        }
        bar!.update(done, total);
      },
    });
  } finally {
    bar?.finish();
  }
}

/** Settings that cannot take effect on this machine, said before the load. */
export function warnAboutMachine(options: LoadModelOptions): void {
  const cores = availableParallelism();
  if (options.threads !== undefined && options.threads > cores) {
    warn(`--threads ${options.threads} is more than the ${cores} cores here: the extra threads only take turns with the others`);
  }
  const memory = typeof options.memory === "number" ? options.memory : undefined;
  const available = machineMemory();
  if (memory !== undefined && memory > available) {
    warn(`--memory ${formatBytes(memory)} is more than the ${formatBytes(available)} this machine has: the budget cannot hold`);
  }
}

/** The machine's memory, or the container's limit where that is lower (cgroup v2). */
function machineMemory(): number {
  try {
    const limit = Number(readFileSync("/sys/fs/cgroup/memory.max", "utf8").trim());
    if (Number.isFinite(limit) && limit > 0) return Math.min(limit, totalmem());
  } catch {
    // no cgroup v2 limit to read: the machine's memory it is
  }
  return totalmem();
}

/** Opens the model a command asked for (or the demo model), with a load progress bar on a terminal. */
export async function openModel(path: string | undefined, options: LoadModelOptions, log: Log): Promise<Model> {
  warnAboutMachine(options);
  const resolved = await resolveModelPath(path, log);
  const bar = log === quiet ? undefined : progressBar("loading", { plain: false });
  let model: Model;
  try {
    model = await loadModel(resolved, {
      ...options,
      onPlan: options.memory !== undefined ? (plan) => log(formatPlan(plan)) : undefined,
      onProgress: bar && ((loaded, total) => bar.update(loaded, total)),
    });
  } finally {
    bar?.finish();
  }
  if (options.contextSize !== undefined && options.contextSize > model.contextSize) {
    warn(`--ctx ${options.contextSize} is more than the model's context of ${model.contextSize} tokens: using ${model.contextSize}`);
  }
  if (model.info.synthetic) {
    log(`Model ${resolved}: RANDOM WEIGHTS (a synthetic SmallThinker-architecture model, not trained) — its text is meaningless.`);
  }
  const c = model.config;
  log(`${c.layers} layers, hidden ${c.hidden}, ${c.experts} experts (top-${c.expertsUsed}), vocabulary ${c.vocabSize}; kernels ${model.kernels.name} × ${model.kernels.threads} threads; context ${model.contextSize}`);
  return model;
}

/** The log of a command run with --quiet. */
export const quiet: Log = () => {};
