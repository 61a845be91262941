import { GgufError } from "../gguf/errors.js";
import { describeValueType } from "../gguf/metadata.js";
import { GgufFile } from "../gguf/reader.js";
import { GgufScalar, GgufValue, GgufValueType, ggmlTypeName } from "../gguf/types.js";
import { Kernels } from "../kernels/api.js";
import { SmallThinkerConfig, readConfig } from "../model/config.js";
import { LoadOptions, planLoad } from "../model/load.js";
import { MemoryPlan, formatPlan } from "../model/plan.js";
import { UnsupportedTensors, requireSupported, unsupportedTensors } from "../model/support.js";
import { PREDICTOR_TENSOR, TENSOR_ROLES, TensorRole, predictorRank, tensorRole } from "../model/tensors.js";
import { formatBytes } from "./args.js";

/**
 * What `smallthinker info` says about a GGUF: everything the file says of itself, what the engine
 * understands of it, what it would take in memory, and whether it can run — for files it cannot
 * run too (types it lacks, other architectures, a header without weights).
 */
export interface ModelReport {
  files: { path: string; bytes: number; tensors: number }[];
  version: number;
  metadata: { key: string; type: string; value: ReportValue }[];
  tensors: { count: number; byRole: { role: TensorRole; types: { type: string; count: number; bytes: number | null }[] }[] };
  /** The configuration the engine reads, or why it cannot. */
  config: (Omit<SmallThinkerConfig, "layerPlan"> & { gatingKey: number | null; layerPlan: string[] }) | { error: string };
  predictor: { tensor: string; dims: number[]; type: string; rank: number | null } | null;
  kernels: string;
  /** The default plan (no budget) and the one at --memory, when there is a configuration to plan. */
  plans: { budget: number | null; plan: MemoryPlan | null; error: string | null }[];
  runnable: boolean;
  unsupported: UnsupportedTensors[];
  problems: string[];
}

/** A metadata value as shown: long arrays as their length and first elements. */
export type ReportValue = GgufScalar | ReportValue[] | { length: number; first: ReportValue[] };

const ARRAY_SHOWN = 8;

function reportValue(value: GgufValue): ReportValue {
  if (value.type !== GgufValueType.ARRAY) return value.value;
  const items = (value.value as (GgufScalar | GgufValue)[]).map((item) => (typeof item === "object" ? reportValue(item) : item));
  return items.length <= ARRAY_SHOWN ? items : { length: items.length, first: items.slice(0, ARRAY_SHOWN) };
}

function byRole(file: GgufFile): ModelReport["tensors"]["byRole"] {
  const roles = new Map<TensorRole, Map<string, { count: number; bytes: number | null }>>();
  for (const t of file.tensors) {
    const role = tensorRole(t.name);
    const types = roles.get(role) ?? new Map();
    const entry = types.get(ggmlTypeName(t.type)) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes = entry.bytes === null || t.byteLength === undefined ? null : entry.bytes + t.byteLength;
    types.set(ggmlTypeName(t.type), entry);
    roles.set(role, types);
  }
  return TENSOR_ROLES.filter((role) => roles.has(role)).map((role) => ({
    role,
    types: [...roles.get(role)!].map(([type, entry]) => ({ type, ...entry })),
  }));
}

/** "0, 4, 8" and "1-3, 5-7": layer numbers with runs shortened. */
function layerList(layers: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < layers.length; ) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j]! + 1) j++;
    runs.push(j === i ? `${layers[i]}` : `${layers[i]}-${layers[j]}`);
    i = j + 1;
  }
  return runs.join(", ");
}

/** The per-layer attention plan in a line per kind of layer. */
function layerPlanSummary(config: SmallThinkerConfig): string[] {
  const kinds = new Map<string, number[]>();
  config.layerPlan.forEach((layer, i) => {
    const kind = `${layer.rope ? "RoPE" : "NoPE"} + ${layer.window === Infinity ? "global attention" : `sliding window ${layer.window}`}`;
    kinds.set(kind, [...(kinds.get(kind) ?? []), i]);
  });
  return [...kinds].map(([kind, layers]) => `${kind}: ${layers.length} layer${layers.length === 1 ? "" : "s"} (${layerList(layers)})`);
}

export interface ReportOptions extends Pick<LoadOptions, "contextSize" | "batchSize" | "kvType" | "memory"> {}

/** Describes the opened file (opened with checkData off, so a header alone is described too). */
export function buildReport(file: GgufFile, kernels: Kernels, options: ReportOptions): ModelReport {
  const problems: string[] = [];
  let config: SmallThinkerConfig | undefined;
  let configError: string | undefined;
  try {
    config = readConfig(file);
  } catch (error) {
    if (!(error instanceof GgufError)) throw error;
    configError = error.message;
    problems.push(error.message);
  }
  let unsupported: UnsupportedTensors[] = [];
  if (config) {
    unsupported = unsupportedTensors(file, config, kernels);
    try {
      requireSupported(file, config, kernels);
    } catch (error) {
      if (!(error instanceof GgufError)) throw error;
      problems.push(error.message);
    }
  }
  const missing = file.tensorsBeyondEnd();
  if (missing.length > 0) {
    const names = missing.slice(0, 3).map((t) => t.name).join(", ");
    problems.push(`the data of ${missing.length} of ${file.tensors.length} tensors lies beyond the end of its file (${names}${missing.length > 3 ? ", …" : ""}): a truncated file, or a header without weights`);
  }
  const plans: ModelReport["plans"] = [];
  if (config && unsupported.length === 0) {
    for (const budget of options.memory === undefined ? [undefined] : [undefined, options.memory]) {
      try {
        plans.push({ budget: budget ?? null, plan: planLoad(file, config, kernels, { ...options, memory: budget }).plan, error: null });
      } catch (error) {
        // A budget below the minimum, or a shape the kernels cannot lay out: a reason it cannot run.
        const message = (error as Error).message;
        plans.push({ budget: budget ?? null, plan: null, error: message });
        problems.push(message);
      }
    }
  }
  const predictorInfo = file.tensorsByName.get(PREDICTOR_TENSOR);
  const gatingKey = file.metadata.optionalInteger("smallthinker.expert_gating_func") ?? null;
  return {
    files: file.parts.map((p) => ({ path: p.path, bytes: p.size, tensors: p.tensorCount })),
    version: file.version,
    metadata: [...file.metadata.entries].map(([key, value]) => ({ key, type: describeValueType(value), value: reportValue(value) })),
    tensors: { count: file.tensors.length, byRole: byRole(file) },
    config: config ? { ...config, gatingKey, layerPlan: layerPlanSummary(config) } : { error: configError! },
    predictor: predictorInfo
      ? { tensor: predictorInfo.name, dims: predictorInfo.dims, type: ggmlTypeName(predictorInfo.type), rank: config ? predictorRank(predictorInfo, config) ?? null : null }
      : null,
    kernels: kernels.name,
    plans,
    runnable: problems.length === 0,
    unsupported,
    problems,
  };
}

const STRING_SHOWN = 120;

/** The shortest decimal that reads back as the same float32 (1e-6, not 9.999999974752427e-7). */
function shortestF32(value: number): string {
  for (let digits = 1; digits < 9; digits++) {
    const text = value.toPrecision(digits);
    if (Math.fround(Number(text)) === value) return String(Number(text));
  }
  return String(value);
}

function showScalar(value: GgufScalar, f32: boolean): string {
  if (typeof value === "number" && f32) return shortestF32(value);
  if (typeof value !== "string") return String(value);
  const shown = JSON.stringify(value.length > STRING_SHOWN ? value.slice(0, STRING_SHOWN) : value);
  return value.length > STRING_SHOWN ? `${shown}… (${value.length} characters)` : shown;
}

function showValue(value: ReportValue, f32: boolean): string {
  if (Array.isArray(value)) return `[${value.map((v) => showValue(v, f32)).join(", ")}]`;
  if (typeof value === "object") return `${value.length} values: [${value.first.map((v) => showValue(v, f32)).join(", ")}, …]`;
  return showScalar(value, f32);
}

function showBytes(bytes: number | null): string {
  return bytes === null ? "?" : formatBytes(bytes);
}

/** The report as text for a terminal. */
export function formatReport(report: ModelReport): string {
  const lines: string[] = [];
  const total = report.files.reduce((sum, f) => sum + f.bytes, 0);
  if (report.files.length === 1) lines.push(`${report.files[0]!.path}: GGUF v${report.version}, ${formatBytes(total)}`);
  else {
    lines.push(`${report.files[0]!.path}: GGUF v${report.version}, split in ${report.files.length} parts, ${formatBytes(total)} in all`);
    for (const [i, f] of report.files.entries()) lines.push(`  part ${i + 1}: ${f.path} (${formatBytes(f.bytes)}, ${f.tensors} tensors)`);
  }
  lines.push("", `metadata: ${report.metadata.length} keys`);
  const width = Math.max(...report.metadata.map((m) => m.key.length));
  for (const m of report.metadata) lines.push(`  ${m.key.padEnd(width)}  ${m.type.padEnd(15)} ${showValue(m.value, m.type.endsWith("FLOAT32"))}`);

  lines.push("", `tensors: ${report.tensors.count}, by role and type:`);
  const rows = report.tensors.byRole.flatMap(({ role, types }) => types.map((t, i) => [i === 0 ? role : "", t.type, String(t.count), showBytes(t.bytes)]));
  const columns = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) lines.push(`  ${r[0]!.padEnd(columns[0]!)}  ${r[1]!.padEnd(columns[1]!)}  ${r[2]!.padStart(columns[2]!)}  ${r[3]!.padStart(columns[3]!)}`);

  lines.push("", "configuration:");
  const c = report.config;
  if ("error" in c) lines.push(`  not understood: ${c.error}`);
  else {
    const gating = `${c.gating} gating (${c.gatingKey === null ? "expert_gating_func absent: the HF model's default" : `expert_gating_func ${c.gatingKey}`})`;
    lines.push(
      `  layers ${c.layers}, hidden ${c.hidden}, vocabulary ${c.vocabSize}, context ${c.contextLength}`,
      `  attention: ${c.heads} query heads and ${c.kvHeads} KV heads of ${c.headDim} (query width ${c.heads * c.headDim}), RoPE base ${shortestF32(c.ropeBase)}, RMS norm epsilon ${shortestF32(c.rmsEps)}`,
      `  experts: ${c.experts} of ${c.expertFfn} neurons, top-${c.expertsUsed}, ${gating}`,
      `  expert down matrices: ${c.downLayout === "upstream" ? "llama.cpp's {ffn, hidden, experts}" : "transposed, PowerInfer's {hidden, ffn, experts}"}`,
      `  output head: ${c.tiedOutput ? "tied to the token embeddings" : "output.weight"}`,
      `  sliding window: ${c.slidingWindow ?? "none"}; per layer:`,
      ...c.layerPlan.map((line) => `    ${line}`),
    );
  }
  const p = report.predictor;
  if (p) {
    const rank = p.rank === null ? "not of the predictor's shape" : `rank ${p.rank}`;
    lines.push(`  LM-head predictor: ${p.tensor} {${p.dims.join(", ")}} ${p.type}, ${rank}; ignored (the engine computes the whole head)`);
  }

  for (const { budget, plan, error } of report.plans) {
    lines.push("");
    if (plan) lines.push(formatPlan(plan));
    else lines.push(`memory plan for a budget of ${formatBytes(budget!)}: ${error}`);
  }
  if (report.plans.length === 0) lines.push("", "memory plan: none (there is no configuration that can run to plan)");

  lines.push("");
  if (report.runnable) lines.push(`runs: yes, with the ${report.kernels} kernels`);
  else {
    lines.push(`runs: no, with the ${report.kernels} kernels:`);
    for (const problem of report.problems) lines.push(`  - ${problem}`);
  }
  return lines.join("\n");
}
