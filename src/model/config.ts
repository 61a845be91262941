import { GgufError } from "../gguf/errors.js";
import { GgufFile } from "../gguf/reader.js";
import { GgufTensorInfo } from "../gguf/types.js";
import { DownLayout } from "../kernels/api.js";

export const ARCHITECTURE = "smallthinker";

export type Gating = "softmax" | "sigmoid";

export interface LayerPlan {
  rope: boolean;
  /** Visible keys: positions > query position - window; Infinity for global attention. */
  window: number;
}

/** Hyper-parameters of a SmallThinker GGUF, validated against its tensors. */
export interface SmallThinkerConfig {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  experts: number;
  expertsUsed: number;
  expertFfn: number;
  contextLength: number;
  ropeBase: number;
  rmsEps: number;
  slidingWindow: number | null;
  gating: Gating;
  vocabSize: number;
  tiedOutput: boolean;
  downLayout: DownLayout;
  layerPlan: LayerPlan[];
}

/**
 * Which layers use RoPE and which attend within the sliding window, as llama.cpp decides for this
 * architecture: with a window, layers il % 4 == 0 are global and NoPE, the rest windowed with RoPE
 * (the 1:3 pattern of the SmallThinker paper); llama.cpp's NoPE step equals 4, and a step equal to
 * the layer count means "RoPE everywhere", so a 4-layer model keeps RoPE on every layer.
 */
export function layerPlan(layers: number, slidingWindow: number | null): LayerPlan[] {
  const period = 4;
  return Array.from({ length: layers }, (_, il) => {
    if (slidingWindow === null) return { rope: true, window: Infinity };
    const global = il % period === 0;
    return { rope: period === layers || !global, window: global ? Infinity : slidingWindow };
  });
}

function positive(file: GgufFile, key: string): number {
  const value = file.metadata.getInteger(key);
  if (value <= 0) throw new GgufError(file.path, key, `expected a positive integer, got ${value}`);
  return value;
}

function expectShape(file: GgufFile, tensor: GgufTensorInfo, expected: number[][], what: string): number[] {
  const match = expected.find((dims) => dims.length === tensor.dims.length && dims.every((d, i) => d === tensor.dims[i]));
  if (!match) {
    const shown = expected.map((d) => `{${d.join(", ")}}`).join(" or ");
    throw new GgufError(file.path, `tensor ${tensor.name}`, `shape {${tensor.dims.join(", ")}} does not match ${what}: expected ${shown}`);
  }
  return match;
}

/**
 * Reads and checks the SmallThinker configuration of an opened GGUF file: its keys and the shapes
 * of the tensors the engine reads. Whether their types can run is for support.ts to say, so a file
 * of types this engine cannot run still shows what it is.
 */
export function readConfig(file: GgufFile): SmallThinkerConfig {
  const meta = file.metadata;
  const arch = meta.getString("general.architecture");
  if (arch !== ARCHITECTURE) {
    throw new GgufError(file.path, "general.architecture", `expected "${ARCHITECTURE}", got "${arch}": this engine runs SmallThinker models only`);
  }
  const key = (name: string) => `${ARCHITECTURE}.${name}`;
  const layers = positive(file, key("block_count"));
  const hidden = positive(file, key("embedding_length"));
  const heads = positive(file, key("attention.head_count"));
  const kvHeads = positive(file, key("attention.head_count_kv"));
  const headDim = meta.has(key("attention.key_length")) ? positive(file, key("attention.key_length")) : hidden / heads;
  if (!Number.isInteger(headDim)) {
    throw new GgufError(file.path, key("attention.key_length"), `missing, and hidden ${hidden} is not a multiple of ${heads} heads`);
  }
  const valueDim = meta.has(key("attention.value_length")) ? positive(file, key("attention.value_length")) : headDim;
  if (valueDim !== headDim) {
    throw new GgufError(file.path, key("attention.value_length"), `expected ${headDim} (= key_length), got ${valueDim}`);
  }
  if (heads % kvHeads !== 0) {
    throw new GgufError(file.path, key("attention.head_count_kv"), `${kvHeads} does not divide head_count ${heads}`);
  }
  if (headDim % 2 !== 0) throw new GgufError(file.path, key("attention.key_length"), `must be even for RoPE, got ${headDim}`);
  const experts = positive(file, key("expert_count"));
  const expertsUsed = positive(file, key("expert_used_count"));
  if (expertsUsed > experts) {
    throw new GgufError(file.path, key("expert_used_count"), `${expertsUsed} exceeds expert_count ${experts}`);
  }
  const expertFfn = meta.has(key("expert_feed_forward_length"))
    ? positive(file, key("expert_feed_forward_length"))
    : positive(file, key("feed_forward_length"));
  const contextLength = positive(file, key("context_length"));
  const ropeBase = meta.optionalNumber(key("rope.freq_base")) ?? 10000;
  const rmsEps = meta.getNumber(key("attention.layer_norm_rms_epsilon"));
  const slidingWindow = meta.has(key("attention.sliding_window")) ? positive(file, key("attention.sliding_window")) : null;
  const gatingCode = meta.optionalInteger(key("expert_gating_func"));
  // The HF model's default (moe_primary_router_apply_softmax = false) is sigmoid; PowerInfer's
  // converter omits the key in that case.
  let gating: Gating = "sigmoid";
  if (gatingCode === 1) gating = "softmax";
  else if (gatingCode !== undefined && gatingCode !== 2) {
    throw new GgufError(file.path, key("expert_gating_func"), `expected 1 (softmax) or 2 (sigmoid), got ${gatingCode}`);
  }
  const vocabSize = meta.getStringArray("tokenizer.ggml.tokens").length;

  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const tensor = (name: string) => file.tensor(name);
  const matrix = (name: string, dims: number[][], what: string) => expectShape(file, tensor(name), dims, what);
  const vector = (name: string) => expectShape(file, tensor(name), [[hidden]], "a norm of the hidden size");
  matrix("token_embd.weight", [[hidden, vocabSize]], `hidden ${hidden} × vocabulary ${vocabSize}`);
  let downLayout: DownLayout | undefined;
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}`;
    vector(`${p}.attn_norm.weight`);
    matrix(`${p}.attn_q.weight`, [[hidden, qWidth]], `hidden ${hidden} × heads·key_length ${qWidth}`);
    matrix(`${p}.attn_k.weight`, [[hidden, kvWidth]], `hidden ${hidden} × kv_heads·key_length ${kvWidth}`);
    matrix(`${p}.attn_v.weight`, [[hidden, kvWidth]], `hidden ${hidden} × kv_heads·value_length ${kvWidth}`);
    matrix(`${p}.attn_output.weight`, [[qWidth, hidden]], `heads·key_length ${qWidth} × hidden ${hidden}`);
    vector(`${p}.ffn_norm.weight`);
    matrix(`${p}.ffn_gate_inp.weight`, [[hidden, experts]], `hidden ${hidden} × experts ${experts}`);
    matrix(`${p}.ffn_gate_exps.weight`, [[hidden, expertFfn, experts]], `hidden × expert ffn × experts`);
    matrix(`${p}.ffn_up_exps.weight`, [[hidden, expertFfn, experts]], `hidden × expert ffn × experts`);
    const down = matrix(
      `${p}.ffn_down_exps.weight`,
      [[expertFfn, hidden, experts], [hidden, expertFfn, experts]],
      "expert ffn × hidden × experts (llama.cpp) or hidden × expert ffn × experts (PowerInfer)",
    );
    // A square expert (ffn = hidden) cannot tell its orientation; llama.cpp's is assumed.
    const layout: DownLayout = down[0] === expertFfn && down[1] === hidden ? "upstream" : "transposed";
    if (downLayout !== undefined && layout !== downLayout) {
      throw new GgufError(file.path, `tensor ${p}.ffn_down_exps.weight`, `orientation ${layout} differs from earlier layers (${downLayout})`);
    }
    downLayout = layout;
  }
  vector("output_norm.weight");
  const tiedOutput = !file.tensorsByName.has("output.weight");
  if (!tiedOutput) matrix("output.weight", [[hidden, vocabSize]], `hidden ${hidden} × vocabulary ${vocabSize}`);

  return {
    layers, hidden, heads, kvHeads, headDim, experts, expertsUsed, expertFfn, contextLength, ropeBase, rmsEps,
    slidingWindow, gating, vocabSize, tiedOutput, downLayout: downLayout ?? "upstream",
    layerPlan: layerPlan(layers, slidingWindow),
  };
}
