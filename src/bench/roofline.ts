import { GgufFile } from "../gguf/reader.js";
import { GgufTensorInfo, tensorByteLength } from "../gguf/types.js";
import { SmallThinkerConfig, readConfig } from "../model/config.js";

/** What the benchmark needs to know of a model file before measuring it: its header alone. */
export interface ModelHeader {
  config: SmallThinkerConfig;
  tensors: readonly GgufTensorInfo[];
  fileSize: number;
  /** The file says its weights are synthetic (random). */
  synthetic: boolean;
}

export function readModelHeader(path: string): ModelHeader {
  const file = GgufFile.open(path);
  try {
    return { config: readConfig(file), tensors: file.tensors, fileSize: file.fileSize, synthetic: file.metadata.has("synth.seed") };
  } finally {
    file.close();
  }
}

/** Bytes one decoded token reads from memory, by what it reads. */
export interface DecodeTraffic {
  /** Attention, router and norm weights, the token's embedding row. */
  dense: number;
  /** Expert weights: each chosen expert's gate whole, its up rows and down columns where the gate is active. */
  experts: number;
  /** The output head. */
  head: number;
  /** Keys and values the layers attend to at this context. */
  kv: number;
  total: number;
}

export interface TrafficAssumptions {
  /** Tokens in the context the decoded token attends to (itself included). */
  context: number;
  /** Share of expert neurons whose up row and down column are read: 1 for a dense engine, the measured ReGLU activity for a sparse one. */
  activeShare: number;
  /** Bytes per cached key or value element (2 for f16). */
  kvElementBytes: number;
}

const EXPERT_TENSOR = /^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$/;

/**
 * What a decoded token must read, from the file's tensors: the floor a memory-bound engine works
 * against. A tensor the engine never reads (PowerInfer's `lm_head_profiler`) counts nowhere.
 */
export function decodeTraffic(tensors: readonly GgufTensorInfo[], config: SmallThinkerConfig, assumptions: TrafficAssumptions): DecodeTraffic {
  const { context, activeShare, kvElementBytes } = assumptions;
  let dense = 0;
  let experts = 0;
  let head = 0;
  for (const tensor of tensors) {
    const bytes = tensorByteLength(tensor);
    const expert = EXPERT_TENSOR.exec(tensor.name);
    if (expert) {
      const perToken = (bytes / config.experts) * config.expertsUsed;
      experts += expert[1] === "gate" ? perToken : perToken * activeShare;
    } else if (tensor.name === "token_embd.weight") {
      dense += bytes / config.vocabSize;
      if (config.tiedOutput) head += bytes;
    } else if (tensor.name === "output.weight") {
      head += bytes;
    } else if (tensor.name.startsWith("blk.") || tensor.name === "output_norm.weight") {
      dense += bytes;
    }
  }
  const kvRow = 2 * config.kvHeads * config.headDim * kvElementBytes;
  const kv = config.layerPlan.reduce((sum, layer) => sum + Math.min(context, layer.window) * kvRow, 0);
  return { dense, experts, head, kv, total: dense + experts + head + kv };
}
