import { availableParallelism } from "node:os";
import { LoadModelOptions, PolicyName } from "../engine/model.js";
import { KernelChoice } from "../engine/kernels.js";
import { SamplingOptions } from "../sampling/index.js";
import { UsageError, parseInteger, parseNumber, parseSizeOption } from "./args.js";

/** Options shared by every command that loads a model. */
export const MODEL_OPTIONS = {
  model: { type: "string", short: "m" },
  ctx: { type: "string", short: "c" },
  batch: { type: "string", short: "b" },
  threads: { type: "string", short: "t" },
  kernels: { type: "string" },
  "kv-type": { type: "string" },
  "no-sparse": { type: "boolean" },
  memory: { type: "string" },
  policy: { type: "string" },
  "no-prefetch": { type: "boolean" },
  lookahead: { type: "string" },
} as const;

export const MODEL_HELP = `Model options:
  -m, --model M         a SmallThinker GGUF file, or hf:OWNER/NAME[:QUANT] to fetch one from the
                        Hugging Face hub (cached; see "smallthinker pull --help"); default: the
                        built-in demo model (random weights)
  -c, --ctx N           context size in tokens (default 4096, at most the model's)
  -b, --batch N         prompt tokens per batch (default 256)
  -t, --threads N       compute threads (default ${availableParallelism()}, the core count)
  --kernels K           auto, wasm or reference (default auto)
  --kv-type T           f16 or f32 KV cache (default f16)
  --no-sparse           compute every expert neuron (same results, slower)
  --memory SIZE         memory budget for the whole process (e.g. 1GiB, 800M): dense weights stay
                        resident, the hottest experts are cached, the rest read from the file
  --policy P            expert cache policy: frequency (default) or lru
  --no-prefetch         read experts only when needed instead of during attention
  --lookahead N         layers ahead whose experts are guessed and read early (default 2, 0 = off)`;

type ModelValues = { [K in keyof typeof MODEL_OPTIONS]?: (typeof MODEL_OPTIONS)[K]["type"] extends "boolean" ? boolean : string };

export function loadOptions(values: ModelValues): LoadModelOptions {
  const kernels = values.kernels ?? "auto";
  if (!["auto", "wasm", "reference"].includes(kernels)) throw new UsageError(`--kernels: expected auto, wasm or reference, got "${kernels}"`);
  const kvType = values["kv-type"] ?? "f16";
  const policy = values.policy ?? "frequency";
  if (policy !== "frequency" && policy !== "lru") throw new UsageError(`--policy: expected frequency or lru, got "${policy}"`);
  if (kvType !== "f16" && kvType !== "f32") throw new UsageError(`--kv-type: expected f16 or f32, got "${kvType}"`);
  return {
    contextSize: parseInteger(values.ctx, "--ctx", 16, 1 << 24),
    batchSize: parseInteger(values.batch, "--batch", 1, 4096),
    threads: parseInteger(values.threads, "--threads", 1, 256),
    kernels: kernels as KernelChoice,
    kvType,
    sparse: !values["no-sparse"],
    memory: values.memory === undefined ? undefined : parseSizeOption(values.memory, "--memory"),
    policy: policy as PolicyName,
    prefetch: !values["no-prefetch"],
    lookahead: parseInteger(values.lookahead, "--lookahead", 0, 8),
  };
}

export const SAMPLING_OPTIONS = {
  temp: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "typical-p": { type: "string" },
  "min-keep": { type: "string" },
  "repeat-penalty": { type: "string" },
  "repeat-last-n": { type: "string" },
  "presence-penalty": { type: "string" },
  "frequency-penalty": { type: "string" },
  seed: { type: "string", short: "s" },
  "max-tokens": { type: "string", short: "n" },
  stop: { type: "string", multiple: true },
} as const;

export const SAMPLING_HELP = `Sampling options:
  -n, --max-tokens N    most tokens to generate (default 256; -1 = until the context is full)
  --temp X              temperature (default 0.8; 0 = greedy)
  --top-k N             (default 40; 0 = off)      --top-p X   (default 0.95; 1 = off)
  --min-p X             (default 0.05; 0 = off)    -s, --seed N (default random)
  --typical-p X         locally typical sampling (default 1 = off)
  --min-keep N          tokens the filters keep at least (default 0)
  --repeat-penalty X    (default 1 = off)          --repeat-last-n N (default 64)
  --presence-penalty X  (default 0)                --frequency-penalty X (default 0)
  --stop TEXT           stop before TEXT (repeatable)`;

type SamplingValues = { [K in keyof typeof SAMPLING_OPTIONS]?: K extends "stop" ? string[] : string };

export function samplingOptions(values: SamplingValues): SamplingOptions & { maxTokens: number | undefined; stop: string[] } {
  const sampling: SamplingOptions = {
    temperature: parseNumber(values.temp, "--temp", 0, 100),
    topK: parseInteger(values["top-k"], "--top-k", 0),
    topP: parseNumber(values["top-p"], "--top-p", Number.MIN_VALUE, 1),
    minP: parseNumber(values["min-p"], "--min-p", 0, 1),
    typicalP: parseNumber(values["typical-p"], "--typical-p", Number.MIN_VALUE, 1),
    minKeep: parseInteger(values["min-keep"], "--min-keep", 0),
    repeatPenalty: parseNumber(values["repeat-penalty"], "--repeat-penalty", 0.01, 100),
    repeatLastN: parseInteger(values["repeat-last-n"], "--repeat-last-n", -1),
    presencePenalty: parseNumber(values["presence-penalty"], "--presence-penalty", -2, 2),
    frequencyPenalty: parseNumber(values["frequency-penalty"], "--frequency-penalty", -2, 2),
    seed: parseInteger(values.seed, "--seed", 0, 2 ** 32 - 1),
  };
  const maxTokens = parseInteger(values["max-tokens"], "--max-tokens", -1) ?? 256;
  // undefined: no limit of its own, the generation ends at an end token or a full context
  return { ...sampling, maxTokens: maxTokens === -1 ? undefined : maxTokens, stop: values.stop ?? [] };
}
