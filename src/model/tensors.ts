import { GgufTensorInfo } from "../gguf/types.js";
import { SmallThinkerConfig } from "./config.js";

/** What a tensor of a SmallThinker GGUF is for, told by its name (llama.cpp's tensor names). */
export type TensorRole =
  | "token embeddings"
  | "attention q"
  | "attention k"
  | "attention v"
  | "attention output"
  | "router"
  | "expert gate"
  | "expert up"
  | "expert down"
  | "output head"
  | "norms"
  | "LM-head predictor"
  | "other";

/** The roles in the order a report lists them. */
export const TENSOR_ROLES: readonly TensorRole[] = [
  "token embeddings", "attention q", "attention k", "attention v", "attention output", "router",
  "expert gate", "expert up", "expert down", "output head", "norms", "LM-head predictor", "other",
];

/** The tensors of each layer, by the middle of their names (blk.N.<name>.weight). */
const LAYER_TENSORS: Readonly<Record<string, TensorRole>> = {
  attn_norm: "norms",
  attn_q: "attention q",
  attn_k: "attention k",
  attn_v: "attention v",
  attn_output: "attention output",
  ffn_norm: "norms",
  ffn_gate_inp: "router",
  ffn_gate_exps: "expert gate",
  ffn_up_exps: "expert up",
  ffn_down_exps: "expert down",
};

/**
 * PowerInfer's LM-head predictor (its sparse output head guesses which rows of the head to compute
 * from it). This engine computes the whole head, so it accepts the tensor and never reads it.
 */
export const PREDICTOR_TENSOR = "lm_head_profiler.weight";

export function tensorRole(name: string): TensorRole {
  if (name === "token_embd.weight") return "token embeddings";
  if (name === "output.weight") return "output head";
  if (name === "output_norm.weight") return "norms";
  if (name === PREDICTOR_TENSOR) return "LM-head predictor";
  const layer = /^blk\.\d+\.([a-z_]+)\.weight$/.exec(name);
  return (layer && LAYER_TENSORS[layer[1]!]) || "other";
}

/** The tensors the engine reads from a file of this configuration, with their roles. */
export function engineTensors(config: SmallThinkerConfig): { name: string; role: TensorRole }[] {
  const tensors: { name: string; role: TensorRole }[] = [
    { name: "token_embd.weight", role: "token embeddings" },
    { name: "output_norm.weight", role: "norms" },
  ];
  if (!config.tiedOutput) tensors.push({ name: "output.weight", role: "output head" });
  for (let l = 0; l < config.layers; l++) {
    for (const [name, role] of Object.entries(LAYER_TENSORS)) tensors.push({ name: `blk.${l}.${name}.weight`, role });
  }
  return tensors;
}

/**
 * The predictor's rank r: PowerInfer stores it flat ({N} or {N, 1}) as r rows of `hidden` values
 * (the first projection) followed by `vocabulary` rows of r values, so N = r·(hidden + vocabulary).
 * Undefined when the tensor is of no such shape.
 */
export function predictorRank(info: GgufTensorInfo, config: Pick<SmallThinkerConfig, "hidden" | "vocabSize">): number | undefined {
  const flat = info.dims.length === 1 || (info.dims.length === 2 && info.dims[1] === 1);
  const rank = info.elementCount / (config.hidden + config.vocabSize);
  return flat && Number.isInteger(rank) && rank > 0 ? rank : undefined;
}
