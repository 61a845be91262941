import { GgufFile } from "../gguf/reader.js";
import { Model } from "./model.js";

/** Experts chosen at least this often count as hot (the paper's hot experts run at 0.4–0.6). */
export const HOT_FREQUENCY = 0.3;
/** The paper's cold experts stay below this activation frequency. */
export const COLD_FREQUENCY = 0.14;

export interface ActivityReport {
  tokens: number;
  /** [layer][expert]: share of tokens that chose the expert. */
  frequencies: number[][];
  /** Share of experts (over all layers) chosen with frequency ≥ HOT_FREQUENCY. */
  hotShare: number;
  hotMeanFrequency: number;
  /** Highest frequency among the other experts. */
  coldMaxFrequency: number;
  /** Share of evaluated gate outputs ≤ 0 (ReGLU activation sparsity), overall and per layer. */
  sparsity: number;
  layerSparsity: number[];
  /** What a synthetic model's file says it was made with. */
  claims: { hotFraction?: number; hotFrequency?: number; hotExperts?: number[][]; sparsity?: number };
}

/** Text with some variety (prose, code, numbers, CJK) to drive the model when measuring. */
export const ACTIVITY_TEXT =
  "The old lighthouse keeper climbed the stairs each evening, counting 127 steps while the wind pulled at the windows. " +
  "function mean(xs) { return xs.reduce((a, b) => a + b, 0) / xs.length; }\n" +
  "Mixture-of-experts models route every token to a few experts; 模型在本地设备上运行，内存很小。 " +
  "In 1969, 600 million people watched; prices rose 3.5% and fell 2.25% the next quarter. ";

function claimsOf(path: string, layers: number): ActivityReport["claims"] {
  const file = GgufFile.open(path);
  try {
    const meta = file.metadata;
    const hot = meta.has("synth.routing.hot_experts") ? meta.getNumberArray("synth.routing.hot_experts") : undefined;
    const perLayer = hot && hot.length % layers === 0 ? hot.length / layers : 0;
    return {
      hotFraction: meta.optionalNumber("synth.routing.hot_fraction"),
      hotFrequency: meta.optionalNumber("synth.routing.hot_frequency"),
      hotExperts: hot && perLayer > 0 ? Array.from({ length: layers }, (_, l) => hot.slice(l * perLayer, (l + 1) * perLayer)) : undefined,
      sparsity: meta.optionalNumber("synth.sparsity"),
    };
  } finally {
    file.close();
  }
}

/** Runs `count` tokens of text through the model and measures routing skew and ReGLU sparsity. */
export async function measureActivity(model: Model, count: number, text = ACTIVITY_TEXT): Promise<ActivityReport> {
  const unit = model.tokenize(text, false);
  const tokens: number[] = [];
  while (tokens.length < count) tokens.push(...unit.slice(0, count - tokens.length));
  const stats = model.engine.stats;
  const before = { routed: stats.routed.map((r) => [...r]), tokens: stats.tokens, active: [...stats.layerActive], total: [...stats.layerTotal] };
  for (let start = 0; start < tokens.length; start += model.contextSize - 1) {
    await model.logits(tokens.slice(start, start + model.contextSize - 1), () => {});
  }
  const n = stats.tokens - before.tokens;
  const frequencies = stats.routed.map((row, l) => row.map((count, e) => (count - before.routed[l]![e]!) / n));
  const all = frequencies.flat();
  const hot = all.filter((f) => f >= HOT_FREQUENCY);
  const cold = all.filter((f) => f < HOT_FREQUENCY);
  const layerSparsity = stats.layerActive.map((active, l) => 1 - (active - before.active[l]!) / (stats.layerTotal[l]! - before.total[l]!));
  const totalActive = stats.layerActive.reduce((a, b, l) => a + b - before.active[l]!, 0);
  const totalEvaluated = stats.layerTotal.reduce((a, b, l) => a + b - before.total[l]!, 0);
  return {
    tokens: n,
    frequencies,
    hotShare: hot.length / all.length,
    hotMeanFrequency: hot.length ? hot.reduce((a, b) => a + b, 0) / hot.length : 0,
    coldMaxFrequency: cold.length ? Math.max(...cold) : 0,
    sparsity: 1 - totalActive / totalEvaluated,
    layerSparsity,
    claims: claimsOf(model.path, model.config.layers),
  };
}

function percent(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

export function formatActivity(report: ActivityReport): string {
  const sorted = [...report.layerSparsity].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const lines = [
    `measured over ${report.tokens} tokens:`,
    `  routing: ${percent(report.hotShare)} of experts are hot (chosen ≥ ${HOT_FREQUENCY} of tokens) with mean frequency ${report.hotMeanFrequency.toFixed(3)};` +
      ` the others at most ${report.coldMaxFrequency.toFixed(3)}${report.coldMaxFrequency < COLD_FREQUENCY ? ` (< ${COLD_FREQUENCY}, as the paper's cold experts)` : ""}`,
    `  ReGLU sparsity: ${percent(report.sparsity)} of gate outputs ≤ 0 (per layer: min ${percent(sorted[0] ?? 0)}, median ${percent(median)}, max ${percent(sorted[sorted.length - 1] ?? 0)})`,
  ];
  const { claims } = report;
  if (claims.hotFraction !== undefined) {
    lines.push(`  file claims: ${percent(claims.hotFraction)} hot experts at frequency ${claims.hotFrequency?.toFixed(2)}` + (claims.sparsity !== undefined ? `, sparsity ${percent(claims.sparsity)}` : ""));
  } else if (claims.sparsity !== undefined) {
    lines.push(`  file claims: sparsity ${percent(claims.sparsity)}`);
  }
  return lines.join("\n");
}
