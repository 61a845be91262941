import { GgmlType } from "../../gguf/types.js";
import { ModelShape, PAPER_SKEW, PAPER_SPARSITY, PRESETS, PredictorSpec, RoutingSkew, presetNames } from "../../synth/presets.js";
import { synthesize } from "../../synth/generate.js";
import { FILE_LAYOUTS, FileLayout } from "../../synth/layouts.js";
import { UsageError, formatBytes, parseCommand, parseInteger, parseNumber } from "../args.js";
import { statSync } from "node:fs";

export const SYNTH_HELP = `smallthinker synth --out FILE [options]

Writes a SmallThinker-architecture GGUF with seeded random weights (not a trained model).

  --out FILE            output path (required)
  --preset NAME         ${presetNames().join(", ")} (default tiny)
  --type T              F32, F16, BF16, Q8_0, Q4_0 (default Q4_0)
  --seed N              random seed (default 1)
  --skew S              routing skew: "none", "paper" (${PAPER_SKEW.hotFraction * 100}% hot experts chosen with
                        frequency ${PAPER_SKEW.hotFrequency}), or "HOT_FRACTION,FREQUENCY" (default none)
  --sparsity S          share of gate outputs <= 0: "none" (natural, ~0.5), "paper" (${PAPER_SPARSITY}), or a number
File layout:
  --layout L            whose files to imitate: synthetic (this generator's keys, the default),
                        llama.cpp (its converter and quantizer: expert_gating_func always written,
                        ffn_down_exps {ffn, hidden, E}) or powerinfer (PowerInfer's converter: no
                        expert_gating_func for sigmoid routing; by default the head tied and
                        ffn_down_exps transposed, as in its published files, unless the experts
                        are square: their orientation could not be told from their shape)
  --name NAME           general.name (and general.finetune in the llama.cpp and powerinfer layouts;
                        default 4b_v7 there for the 4b preset, as the published 4B files say)
  --profiler RANK       add PowerInfer's LM-head predictor lm_head_profiler.weight of this rank
                        (RANK × (hidden + vocabulary) values, stored flat); the engine ignores it
  --profiler-dims 1|2   store it as {N} (default) or {N, 1}
  --split N             write N files as llama-gguf-split does (OUT-00001-of-0000N.gguf, …)
  --header-only         write only the header (metadata and tensor list, no weights): enough for
                        "smallthinker info" and the memory plan of a model too large to generate
Shape overrides (default from the preset):
  --layers --hidden --heads --kv-heads --head-dim --experts --experts-used --expert-ffn --context N
  --rope-base X  --rms-eps X  --window N|none  --gating sigmoid|softmax|absent  --tied | --untied
  --down-layout upstream|transposed  --vocab qwen2|MERGES
  -h, --help            this help`;

const TYPES: Record<string, GgmlType> = { F32: GgmlType.F32, F16: GgmlType.F16, BF16: GgmlType.BF16, Q8_0: GgmlType.Q8_0, Q4_0: GgmlType.Q4_0 };

export function parseSkew(text: string | undefined): RoutingSkew | null {
  if (text === undefined || text === "none") return null;
  if (text === "paper") return PAPER_SKEW;
  const [hot, frequency] = text.split(",").map((v) => Number(v));
  if (!(hot! > 0 && hot! < 1 && frequency! > 0 && frequency! <= 1)) {
    throw new UsageError(`--skew: expected none, paper or HOT_FRACTION,FREQUENCY (e.g. 0.25,0.45), got "${text}"`);
  }
  return { hotFraction: hot!, hotFrequency: frequency! };
}

export function parseSparsity(text: string | undefined): number | null {
  if (text === undefined || text === "none") return null;
  if (text === "paper") return PAPER_SPARSITY;
  return parseNumber(text, "--sparsity", 0.01, 0.99)!;
}

export const SYNTH_OPTIONS = {
  out: { type: "string" }, preset: { type: "string" }, type: { type: "string" }, seed: { type: "string" },
  skew: { type: "string" }, sparsity: { type: "string" },
  layers: { type: "string" }, hidden: { type: "string" }, heads: { type: "string" }, "kv-heads": { type: "string" },
  "head-dim": { type: "string" }, experts: { type: "string" }, "experts-used": { type: "string" }, "expert-ffn": { type: "string" },
  context: { type: "string" }, "rope-base": { type: "string" }, "rms-eps": { type: "string" }, window: { type: "string" },
  gating: { type: "string" }, tied: { type: "boolean" }, untied: { type: "boolean" }, "down-layout": { type: "string" },
  vocab: { type: "string" }, layout: { type: "string" }, name: { type: "string" }, profiler: { type: "string" },
  "profiler-dims": { type: "string" }, split: { type: "string" }, "header-only": { type: "boolean" }, help: { type: "boolean", short: "h" },
  } as const;

export async function synthCommand(argv: string[]): Promise<void> {
  const { values } = parseCommand("synth", { args: argv, allowPositionals: false, options: SYNTH_OPTIONS });
  if (values.help) {
    console.log(SYNTH_HELP);
    return;
  }
  if (!values.out) throw new UsageError(`smallthinker synth: --out FILE is required\n\n${SYNTH_HELP}`);
  const presetName = values.preset ?? "tiny";
  const preset = PRESETS[presetName];
  if (!preset) throw new UsageError(`--preset: unknown "${presetName}" (known: ${presetNames().join(", ")})`);
  const typeName = (values.type ?? "Q4_0").toUpperCase();
  const type = TYPES[typeName];
  if (type === undefined) throw new UsageError(`--type: unknown "${values.type}" (known: ${Object.keys(TYPES).join(", ")})`);
  const int = (key: string) => parseInteger(values[key as keyof typeof values] as string | undefined, `--${key}`, 1);
  const layout = (values.layout ?? "synthetic") as FileLayout;
  if (!FILE_LAYOUTS.includes(layout)) throw new UsageError(`--layout: expected ${FILE_LAYOUTS.join(", ")}, got "${values.layout}"`);
  // PowerInfer's published files tie the head to the embeddings (their down matrices: see below).
  const shape: ModelShape = layout === "powerinfer" ? { ...preset, tiedOutput: true } : { ...preset };
  const overrides: [keyof ModelShape, string][] = [
    ["layers", "layers"], ["hidden", "hidden"], ["heads", "heads"], ["kvHeads", "kv-heads"], ["headDim", "head-dim"],
    ["experts", "experts"], ["expertsUsed", "experts-used"], ["expertFfn", "expert-ffn"], ["contextLength", "context"],
  ];
  for (const [field, flag] of overrides) {
    const value = int(flag);
    if (value !== undefined) (shape[field] as number) = value;
  }
  const ropeBase = parseNumber(values["rope-base"], "--rope-base", 1);
  if (ropeBase !== undefined) shape.ropeBase = ropeBase;
  const rmsEps = parseNumber(values["rms-eps"], "--rms-eps", 0, 1);
  if (rmsEps !== undefined) shape.rmsEps = rmsEps;
  if (values.window !== undefined) shape.slidingWindow = values.window === "none" ? null : int("window")!;
  if (values.gating !== undefined) {
    if (!["sigmoid", "softmax", "absent"].includes(values.gating)) throw new UsageError(`--gating: expected sigmoid, softmax or absent, got "${values.gating}"`);
    shape.gating = values.gating as ModelShape["gating"];
  }
  if (values.tied && values.untied) throw new UsageError("--tied and --untied exclude each other");
  if (values.tied) shape.tiedOutput = true;
  if (values.untied) shape.tiedOutput = false;
  if (values["down-layout"] !== undefined) {
    if (!["upstream", "transposed"].includes(values["down-layout"])) throw new UsageError(`--down-layout: expected upstream or transposed`);
    shape.downLayout = values["down-layout"] as ModelShape["downLayout"];
  } else if (layout === "powerinfer" && shape.expertFfn !== shape.hidden) {
    // As PowerInfer's published files (--transpose-down all); square experts would not show it.
    shape.downLayout = "transposed";
  }
  if (values.vocab !== undefined) shape.vocab = values.vocab === "qwen2" ? "qwen2" : parseInteger(values.vocab, "--vocab", 0, 151387)!;
  const seed = parseInteger(values.seed, "--seed", 0, 2 ** 32 - 1) ?? 1;
  const routing = parseSkew(values.skew);
  const sparsity = parseSparsity(values.sparsity);
  const predictor = parsePredictor(values.profiler, values["profiler-dims"]);
  const split = parseInteger(values.split, "--split", 1, 0xffff);
  const name = values.name ?? (layout === "synthetic" ? `SmallThinker synthetic (${presetName})` : presetName === "4b" ? "4b_v7" : presetName);
  const started = Date.now();
  let paths: string[];
  try {
    paths = synthesize(values.out, { shape, type, seed, routing, sparsity, name, layout, predictor, split, headerOnly: values["header-only"] }).paths;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const size = paths.reduce((sum, path) => sum + statSync(path).size, 0);
  const what = values["header-only"] ? "header only, no weights" : `random weights (seed ${seed})`;
  const files = paths.length === 1 ? paths[0] : `${paths[0]} and ${paths.length - 1} more part${paths.length > 2 ? "s" : ""}`;
  console.log(`wrote ${files}: ${formatBytes(size)}, ${typeName}, ${layout} layout, ${what}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function parsePredictor(rank: string | undefined, dims: string | undefined): PredictorSpec | undefined {
  if (rank === undefined) {
    if (dims !== undefined) throw new UsageError("--profiler-dims needs --profiler RANK");
    return undefined;
  }
  if (dims !== undefined && dims !== "1" && dims !== "2") throw new UsageError(`--profiler-dims: expected 1 or 2, got "${dims}"`);
  return { rank: parseInteger(rank, "--profiler", 1, 1 << 16)!, dims: dims === "2" ? 2 : 1 };
}
