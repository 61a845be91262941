import { GgufValue } from "../gguf/types.js";
import { gv } from "../gguf/writer.js";
import { ModelShape } from "./presets.js";

/**
 * Whose files a synthetic model imitates (reference/smallthinker-spec.md §3):
 * - "synthetic": this generator's own keys (a description saying the weights are random);
 * - "llama.cpp": convert_hf_to_gguf.py's SmallThinkerModel, then llama-quantize: expert_gating_func
 *   always written, ffn_down_exps as {ffn, hidden, E}, no extra tensors (llama.cpp loads nothing else);
 * - "powerinfer": PowerInfer's converter: expert_gating_func only for softmax routing (so the released
 *   sigmoid models lack it), ffn_down_exps usually transposed (--transpose-down all), optionally its
 *   lm_head_profiler.weight.
 * Both converters name the model after its directory: the published 4B files say 4b_v7 in
 * general.name and general.finetune. Files of every layout also carry synth.* keys, which mark
 * the weights as random wherever the file goes.
 */
export type FileLayout = "synthetic" | "llama.cpp" | "powerinfer";

export const FILE_LAYOUTS: readonly FileLayout[] = ["synthetic", "llama.cpp", "powerinfer"];

/** How a layout cannot hold this shape, or undefined if it can. */
export function layoutProblem(layout: FileLayout, shape: ModelShape, predictor: boolean): string | undefined {
  if (layout !== "llama.cpp") return undefined;
  if (shape.downLayout !== "upstream") return "llama.cpp's converter writes ffn_down_exps as {ffn, hidden, experts} only (use --down-layout upstream)";
  if (shape.gating === "absent") return "llama.cpp's converter always writes expert_gating_func (use --gating sigmoid or softmax)";
  if (predictor) return "llama.cpp cannot load a file with PowerInfer's lm_head_profiler.weight (use --layout powerinfer)";
  return undefined;
}

export interface LayoutValues {
  name: string;
  /** general.file_type: llama.cpp's LLAMA_FTYPE of the weights. */
  fileType: number;
  /** general.size_label, as the converters compute it (sizeLabel). */
  sizeLabel: string;
}

/** The general.* and smallthinker.* keys of a file of `layout`, in the order its converter writes them. */
export function layoutMetadata(layout: FileLayout, shape: ModelShape, values: LayoutValues): [string, GgufValue][] {
  const arch = "smallthinker";
  const hyper: [string, GgufValue][] = [
    [`${arch}.block_count`, gv.u32(shape.layers)],
    [`${arch}.context_length`, gv.u32(shape.contextLength)],
    [`${arch}.embedding_length`, gv.u32(shape.hidden)],
  ];
  const attention: [string, GgufValue][] = [
    [`${arch}.attention.head_count`, gv.u32(shape.heads)],
    [`${arch}.attention.head_count_kv`, gv.u32(shape.kvHeads)],
  ];
  const experts: [string, GgufValue][] = [
    [`${arch}.expert_count`, gv.u32(shape.experts)],
    [`${arch}.expert_used_count`, gv.u32(shape.expertsUsed)],
    [`${arch}.expert_feed_forward_length`, gv.u32(shape.expertFfn)],
    [`${arch}.feed_forward_length`, gv.u32(shape.expertFfn)],
  ];
  const gatingCode = shape.gating === "softmax" ? 1 : 2;
  const writesGating = layout === "powerinfer" ? shape.gating === "softmax" : shape.gating !== "absent";
  const gating: [string, GgufValue][] = writesGating ? [[`${arch}.expert_gating_func`, gv.u32(gatingCode)]] : [];
  const window: [string, GgufValue][] = shape.slidingWindow === null ? [] : [[`${arch}.attention.sliding_window`, gv.u32(shape.slidingWindow)]];
  if (layout === "synthetic") {
    return [
      ["general.architecture", gv.str(arch)],
      ["general.type", gv.str("model")],
      ["general.name", gv.str(values.name)],
      ["general.description", gv.str("Synthetic SmallThinker-architecture model with seeded random weights: not a trained model, its text is meaningless.")],
      ["general.file_type", gv.u32(values.fileType)],
      ["general.quantization_version", gv.u32(2)],
      ...hyper,
      [`${arch}.feed_forward_length`, gv.u32(shape.expertFfn)],
      [`${arch}.expert_feed_forward_length`, gv.u32(shape.expertFfn)],
      [`${arch}.expert_count`, gv.u32(shape.experts)],
      [`${arch}.expert_used_count`, gv.u32(shape.expertsUsed)],
      ...attention,
      [`${arch}.attention.key_length`, gv.u32(shape.headDim)],
      [`${arch}.attention.value_length`, gv.u32(shape.headDim)],
      [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(shape.rmsEps)],
      [`${arch}.rope.freq_base`, gv.f32(shape.ropeBase)],
      ...gating,
      ...window,
    ];
  }
  // ModelBase: architecture, type, the name keys; TextModel: hyper-parameters, file type; then the
  // SmallThinker class's expert keys; the quantization version last (the vocabulary follows).
  return [
    ["general.architecture", gv.str(arch)],
    ["general.type", gv.str("model")],
    ["general.name", gv.str(values.name)],
    ["general.finetune", gv.str(values.name)],
    ["general.size_label", gv.str(values.sizeLabel)],
    ...hyper,
    ...attention,
    [`${arch}.rope.freq_base`, gv.f32(shape.ropeBase)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(shape.rmsEps)],
    [`${arch}.attention.key_length`, gv.u32(shape.headDim)],
    [`${arch}.attention.value_length`, gv.u32(shape.headDim)],
    ["general.file_type", gv.u32(values.fileType)],
    ...experts,
    ...gating,
    ...window,
    ["general.quantization_version", gv.u32(2)],
  ];
}

/**
 * general.size_label as gguf-py computes it (utility.size_label over the writer's parameter count):
 * for a MoE, "<experts>x<parameters with one expert per layer>", rounded to at least two digits.
 */
export function sizeLabel(tensors: readonly { name: string; dims: readonly number[] }[]): string {
  let shared = 0;
  let perExpert = 0;
  let experts = 0;
  for (const t of tensors) {
    const size = t.dims.reduce((a, b) => a * b, 1);
    if (t.name.includes("_exps.") && t.dims.length >= 3) {
      experts = t.dims[t.dims.length - 1]!;
      perExpert += size / experts;
    } else {
      shared += size;
    }
  }
  const count = shared + perExpert;
  const [scaled, suffix] = count > 1e12 ? [count * 1e-12, "T"] : count > 1e9 ? [count * 1e-9, "B"] : count > 1e6 ? [count * 1e-6, "M"] : [count * 1e-3, "K"];
  const digits = Math.max(2 - String(Math.round(scaled)).replace(/^0+/, "").length, 0);
  const rounded = `${scaled.toFixed(digits)}${suffix}`;
  return experts > 0 ? `${experts}x${rounded}` : rounded;
}
