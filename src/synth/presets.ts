import { GgmlType } from "../gguf/types.js";
import type { FileLayout } from "./layouts.js";

/** The architecture hyper-parameters a SmallThinker GGUF carries. */
export interface ModelShape {
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
  /** Present: every 4th layer is NoPE + global attention, the rest RoPE + this window. */
  slidingWindow: number | null;
  /** "absent" writes no expert_gating_func key (readers then default to sigmoid). */
  gating: "sigmoid" | "softmax" | "absent";
  tiedOutput: boolean;
  /** "upstream": ffn_down_exps {ffn, hidden, E} as llama.cpp writes it; "transposed": {hidden, ffn, E} as PowerInfer's converter. */
  downLayout: "upstream" | "transposed";
  /** "qwen2": the real vocabulary; a number: a small vocabulary with that many merges. */
  vocab: "qwen2" | number;
}

/** Real shapes from the released models (reference/smallthinker-spec.md §1). */
const SHAPE_4B: ModelShape = {
  layers: 32, hidden: 1536, heads: 12, kvHeads: 2, headDim: 128,
  experts: 32, expertsUsed: 4, expertFfn: 768,
  contextLength: 32768, ropeBase: 1.5e6, rmsEps: 1e-6, slidingWindow: null,
  gating: "sigmoid", tiedOutput: false, downLayout: "upstream", vocab: "qwen2",
};

const SHAPE_21B: ModelShape = {
  layers: 52, hidden: 2560, heads: 28, kvHeads: 4, headDim: 128,
  experts: 64, expertsUsed: 6, expertFfn: 768,
  contextLength: 16384, ropeBase: 1.5e6, rmsEps: 1e-6, slidingWindow: 4096,
  gating: "sigmoid", tiedOutput: false, downLayout: "upstream", vocab: "qwen2",
};

const SHAPE_TINY: ModelShape = {
  layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 16,
  experts: 8, expertsUsed: 2, expertFfn: 64,
  contextLength: 8192, ropeBase: 10000, rmsEps: 1e-6, slidingWindow: null,
  gating: "sigmoid", tiedOutput: true, downLayout: "upstream", vocab: 1000,
};

export const PRESETS: Record<string, ModelShape> = {
  "4b": SHAPE_4B,
  "21b": SHAPE_21B,
  tiny: SHAPE_TINY,
  /** 8 layers with a sliding window: layers 0 and 4 are NoPE + global, the rest RoPE + window. */
  "tiny-swa": { ...SHAPE_TINY, layers: 8, slidingWindow: 4096 },
  /** The 21B's proportions in miniature: query width (7×16 = 112) differs from hidden (96), GQA group 7. */
  "tiny-21b": { ...SHAPE_TINY, layers: 2, hidden: 96, heads: 7, kvHeads: 1, headDim: 16, experts: 16, expertsUsed: 3, tiedOutput: false },
  /** Every row a multiple of 256 values, as K- and i-quants need (hidden, query width, expert width). */
  "tiny-k": { ...SHAPE_TINY, layers: 2, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, expertFfn: 256 },
  /** The default demo model: small, with the real vocabulary so text looks like text. */
  demo: { ...SHAPE_TINY, layers: 4, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, experts: 8, expertsUsed: 2, expertFfn: 128, vocab: "qwen2", tiedOutput: false },
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** Routing skew: a share of each layer's experts is "hot", chosen with the given frequency. */
export interface RoutingSkew {
  hotFraction: number;
  hotFrequency: number;
}

export interface SynthOptions {
  shape: ModelShape;
  /** Type of every weight matrix (routers and norms stay F32, as in llama.cpp files). */
  type: GgmlType;
  seed: number;
  routing: RoutingSkew | null;
  /** Target share of gate outputs ≤ 0 (ReGLU activation sparsity); null leaves it natural (≈ 0.5). */
  sparsity: number | null;
  /** general.name (and, in the converters' layouts, general.finetune). */
  name?: string;
  /** Whose keys and tensors the file imitates (default "synthetic"). */
  layout?: FileLayout;
  /** PowerInfer's LM-head predictor of this rank, stored flat as {N} (dims 1) or {N, 1} (dims 2). */
  predictor?: PredictorSpec;
  /** Write the model in this many parts, as llama-gguf-split does (PATH-00001-of-0000N.gguf, …). */
  split?: number;
  /** Write only the header (metadata and tensor list): enough to describe the model and plan its memory. */
  headerOnly?: boolean;
}

export interface PredictorSpec {
  rank: number;
  dims: 1 | 2;
}

/** Routing and sparsity as the SmallThinker paper reports them (§5.2–5.3). */
export const PAPER_SKEW: RoutingSkew = { hotFraction: 0.2, hotFrequency: 0.4 };
export const PAPER_SPARSITY = 0.65;
