import { GgmlType, GgufValue, ggmlBlockSize, ggmlRowBytes, ggmlTypeName } from "../gguf/types.js";
import { GgufTensorSpec, GgufWriteSpec, gv, writeGguf, writeGgufHeader, writeGgufSplit } from "../gguf/writer.js";
import { PREDICTOR_TENSOR } from "../model/tensors.js";
import { quantize } from "../quant/formats/index.js";
import { layoutMetadata, layoutProblem, sizeLabel } from "./layouts.js";
import { Random, hashString, normalQuantile } from "./random.js";
import { ModelShape, PredictorSpec, SynthOptions } from "./presets.js";
import { buildVocab } from "./vocab.js";

/**
 * How the random weights are shaped (all derived from the options, none is a free constant):
 * - Hidden dimension 0 is a constant channel: every embedding holds B there and no layer writes to
 *   it, so the residual entering each layer has h[0] = B exactly. The router's column 0 then acts as
 *   an exact per-expert bias (routing skew) and the gates' column 0 as a negative offset (ReGLU
 *   sparsity). Real LLMs have such massive-activation channels too.
 * - Each sublayer adds output of standard deviation α = 0.5/√layers, so the residual grows by about
 *   √1.5 over the whole stack and the offsets keep their meaning in every layer.
 * - Router logits have unit noise and stay far below llama.cpp's sigmoid saturation (~17).
 */
const CONSTANT_CHANNEL_SHARE = 0.25;
const NORM_JITTER = 0.05;
const LOGIT_STD = 3;
const ROWS_PER_CHUNK = 64;
/** Values per chunk of a flat tensor: whole blocks of every type. */
const FLAT_CHUNK = 1 << 16;

interface Layout {
  B: number;
  alpha: number;
  /** Per-dimension variance of the non-constant channels entering layer l. */
  variance(layer: number): number;
}

function layoutOf(shape: ModelShape): Layout {
  const d = shape.hidden;
  const B = Math.sqrt((d * CONSTANT_CHANNEL_SHARE) / (1 - CONSTANT_CHANNEL_SHARE));
  const alpha = 0.5 / Math.sqrt(shape.layers);
  return { B, alpha, variance: (l) => 1 + 2 * alpha * alpha * l };
}

/** Bias of hot experts (noise has unit variance) that makes each hot expert win top-k with `frequency`. */
export function hotBias(experts: number, used: number, hot: number, frequency: number, seed: number): number {
  if (hot <= 0 || hot >= experts) throw new Error(`routing skew: hot experts must be 1..${experts - 1}, got ${hot}`);
  if (hot * frequency >= used) {
    throw new Error(`routing skew: ${hot} hot experts at frequency ${frequency} would need ${(hot * frequency).toFixed(2)} of the ${used} slots per token`);
  }
  const rng = new Random(seed, 7);
  const samples = 3000;
  const noise = new Float32Array(samples * experts);
  rng.fillNormal(noise);
  const logits = new Float32Array(experts);
  const frequencyAt = (bias: number): number => {
    let hits = 0;
    for (let s = 0; s < samples; s++) {
      for (let e = 0; e < experts; e++) logits[e] = noise[s * experts + e]! + (e < hot ? bias : 0);
      const sorted = [...logits].sort((a, b) => b - a);
      const threshold = sorted[used - 1]!;
      for (let e = 0; e < hot; e++) if (logits[e]! >= threshold) hits++;
    }
    return hits / (samples * hot);
  };
  let lo = -2;
  let hi = 8;
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (frequencyAt(mid) < frequency) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** E[relu(g)²] for g ~ N(mu, sigma²). */
function meanSquaredRelu(mu: number, sigma: number): number {
  const z = mu / sigma;
  const pdf = Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
  const cdf = 1 - normalTail(z);
  return (mu * mu + sigma * sigma) * cdf + mu * sigma * pdf;
}

function normalTail(z: number): number {
  // Complementary error function approximation (Abramowitz–Stegun 7.1.26), enough for scaling.
  const t = 1 / (1 + 0.2316419 * Math.abs(z));
  const poly = t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  const tail = (Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI)) * poly;
  return z >= 0 ? tail : 1 - tail;
}

type RowFiller = (row: number, values: Float32Array, rng: Random) => void;

/** A tensor of `rows` rows of `cols` values, generated and encoded chunk by chunk. */
function matrix(name: string, type: GgmlType, dims: number[], seed: number, fill: RowFiller): GgufTensorSpec {
  const cols = dims[0]!;
  const rows = dims.slice(1).reduce((a, b) => a * b, 1);
  return {
    name,
    dims,
    type,
    produce(emit) {
      const rng = new Random(seed, hashString(name));
      const values = new Float32Array(cols * ROWS_PER_CHUNK);
      const rowBytes = ggmlRowBytes(type, cols);
      for (let start = 0; start < rows; start += ROWS_PER_CHUNK) {
        const count = Math.min(ROWS_PER_CHUNK, rows - start);
        const chunk = new Uint8Array(rowBytes * count);
        for (let r = 0; r < count; r++) {
          const row = values.subarray(r * cols, (r + 1) * cols);
          fill(start + r, row, rng);
        }
        quantize(type, values.subarray(0, count * cols), chunk);
        emit(chunk);
      }
    },
  };
}

/**
 * The same values `matrix(name, type, dims, …)` would generate, written transposed per expert
 * (dims {dims[1], dims[0], E}), as PowerInfer's converter stores ffn_down_exps.
 */
function transposedExperts(name: string, type: GgmlType, dims: number[], seed: number, fill: RowFiller): GgufTensorSpec {
  const [cols, rows, experts] = dims as [number, number, number];
  return {
    name,
    dims: [rows, cols, experts],
    type,
    produce(emit) {
      const rng = new Random(seed, hashString(name));
      const logical = new Float32Array(rows * cols);
      const transposed = new Float32Array(rows * cols);
      for (let e = 0; e < experts; e++) {
        for (let r = 0; r < rows; r++) fill(e * rows + r, logical.subarray(r * cols, (r + 1) * cols), rng);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) transposed[c * rows + r] = logical[r * cols + c]!;
        const bytes = new Uint8Array(ggmlRowBytes(type, rows) * cols);
        quantize(type, transposed, bytes);
        emit(bytes);
      }
    },
  };
}

/**
 * `count` values of normal noise in any dims, generated and encoded a chunk at a time: for
 * PowerInfer's flat predictor, one "row" of millions of values.
 */
function flatTensor(name: string, type: GgmlType, dims: number[], count: number, seed: number, std: number): GgufTensorSpec {
  return {
    name,
    dims,
    type,
    produce(emit) {
      const rng = new Random(seed, hashString(name));
      for (let start = 0; start < count; start += FLAT_CHUNK) {
        const values = new Float32Array(Math.min(FLAT_CHUNK, count - start));
        rng.fillNormal(values, std);
        const bytes = new Uint8Array(ggmlRowBytes(type, values.length));
        quantize(type, values, bytes);
        emit(bytes);
      }
    },
  };
}

/** PowerInfer's lm_head_profiler: r rows of `hidden` values, then `vocabulary` rows of r, stored flat. */
function predictorTensor(spec: PredictorSpec, type: GgmlType, hidden: number, vocabulary: number, seed: number): GgufTensorSpec {
  const count = spec.rank * (hidden + vocabulary);
  if (!Number.isInteger(spec.rank) || spec.rank < 1) throw new Error(`synth: the predictor's rank must be a positive integer, got ${spec.rank}`);
  if (count % ggmlBlockSize(type) !== 0) {
    throw new Error(`synth: a predictor of rank ${spec.rank} holds ${spec.rank} × (${hidden} + ${vocabulary}) = ${count} values, not whole ${ggmlTypeName(type)} blocks of ${ggmlBlockSize(type)}: choose another rank`);
  }
  return flatTensor(PREDICTOR_TENSOR, type, spec.dims === 1 ? [count] : [count, 1], count, seed, 1 / Math.sqrt(hidden));
}

const FILE_TYPE: Partial<Record<GgmlType, number>> = {
  [GgmlType.F32]: 0,
  [GgmlType.F16]: 1,
  [GgmlType.Q4_0]: 2,
  [GgmlType.Q8_0]: 7,
  [GgmlType.BF16]: 32,
};

export interface SynthResult {
  /** The file to open: the model, or its first part. */
  path: string;
  /** Every file written, the first part first. */
  paths: string[];
  vocabSize: number;
  hotExperts: number[][];
}

/** Picks `hot` distinct experts of `experts` for one layer. */
function pickHot(experts: number, hot: number, rng: Random): number[] {
  const order = Array.from({ length: experts }, (_, i) => i);
  for (let i = experts - 1; i > 0; i--) {
    const j = rng.nextU32() % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order.slice(0, hot).sort((a, b) => a - b);
}

export function synthesize(path: string, options: SynthOptions): SynthResult {
  const { shape, type, seed } = options;
  const fileType = FILE_TYPE[type];
  if (fileType === undefined) throw new Error(`synth: unsupported weight type ${ggmlTypeName(type)} (use F32, F16, BF16, Q8_0 or Q4_0)`);
  validateShape(shape, type);
  const layout = options.layout ?? "synthetic";
  const problem = layoutProblem(layout, shape, options.predictor !== undefined);
  if (problem) throw new Error(`synth: the ${layout} layout: ${problem}`);
  const vocab = buildVocab({ kind: shape.vocab });
  const d = shape.hidden;
  const qWidth = shape.heads * shape.headDim;
  const kvWidth = shape.kvHeads * shape.headDim;
  const L = layoutOf(shape);
  const E = shape.experts;
  const ffn = shape.expertFfn;

  const layoutRng = new Random(seed, 1);
  const hotCount = options.routing ? Math.round(options.routing.hotFraction * E) : 0;
  const bias = options.routing ? hotBias(E, shape.expertsUsed, hotCount, options.routing.hotFrequency, seed) : 0;
  const hotExperts = Array.from({ length: shape.layers }, () => (options.routing ? pickHot(E, hotCount, layoutRng) : []));

  const normVector = (name: string, scale: number): GgufTensorSpec =>
    matrix(name, GgmlType.F32, [d], seed, (_, v, rng) => {
      rng.fillNormal(v, NORM_JITTER);
      for (let i = 0; i < v.length; i++) v[i] = scale * (1 + v[i]!);
      v[0] = scale;
    });

  const tensors: GgufTensorSpec[] = [];
  tensors.push(
    matrix("token_embd.weight", type, [d, vocab.size], seed, (_, v, rng) => {
      rng.fillNormal(v);
      v[0] = L.B;
    }),
  );
  for (let l = 0; l < shape.layers; l++) {
    const p = `blk.${l}`;
    const sigmaOther = Math.sqrt(L.variance(l));
    const rms = Math.sqrt((L.B * L.B + (d - 1) * L.variance(l)) / d);
    const x0 = L.B / rms;
    const share = (x0 * x0) / d;
    const gateNoise = Math.sqrt(1 - share);
    const gateOffset = options.sparsity === null ? 0 : -normalQuantile(options.sparsity) * gateNoise;
    const hot = new Set(hotExperts[l]);

    tensors.push(normVector(`${p}.attn_norm.weight`, 1));
    const projection = (name: string, out: number): GgufTensorSpec =>
      matrix(name, type, [d, out], seed, (_, v, rng) => rng.fillNormal(v, 1 / Math.sqrt(d)));
    tensors.push(projection(`${p}.attn_q.weight`, qWidth));
    tensors.push(projection(`${p}.attn_k.weight`, kvWidth));
    tensors.push(projection(`${p}.attn_v.weight`, kvWidth));
    tensors.push(
      matrix(`${p}.attn_output.weight`, type, [qWidth, d], seed, (row, v, rng) => {
        if (row === 0) v.fill(0);
        else rng.fillNormal(v, L.alpha / Math.sqrt(qWidth));
      }),
    );
    tensors.push(normVector(`${p}.ffn_norm.weight`, 1));
    tensors.push(
      matrix(`${p}.ffn_gate_inp.weight`, GgmlType.F32, [d, E], seed, (expert, v, rng) => {
        rng.fillNormal(v, 1 / (Math.sqrt(d) * sigmaOther));
        v[0] = hot.has(expert) ? bias / L.B : 0;
      }),
    );
    tensors.push(
      matrix(`${p}.ffn_gate_exps.weight`, type, [d, ffn, E], seed, (_, v, rng) => {
        rng.fillNormal(v, 1 / Math.sqrt(d));
        v[0] = gateOffset / x0;
      }),
    );
    tensors.push(matrix(`${p}.ffn_up_exps.weight`, type, [d, ffn, E], seed, (_, v, rng) => rng.fillNormal(v, 1 / Math.sqrt(d))));
    const activeEnergy = meanSquaredRelu(gateOffset, gateNoise) * gateNoise * gateNoise;
    const downStd = L.alpha / Math.sqrt(ffn * activeEnergy);
    const downFill: RowFiller = (row, v, rng) => {
      if (row % d === 0) v.fill(0);
      else rng.fillNormal(v, downStd);
    };
    const downName = `${p}.ffn_down_exps.weight`;
    tensors.push(
      shape.downLayout === "upstream"
        ? matrix(downName, type, [ffn, d, E], seed, downFill)
        : transposedExperts(downName, type, [ffn, d, E], seed, downFill),
    );
  }
  const headScale = LOGIT_STD / Math.sqrt(d * (1 - CONSTANT_CHANNEL_SHARE));
  tensors.push(normVector("output_norm.weight", headScale));
  if (!shape.tiedOutput) {
    tensors.push(matrix("output.weight", type, [d, vocab.size], seed, (_, v, rng) => rng.fillNormal(v)));
  }
  if (options.predictor) tensors.push(predictorTensor(options.predictor, type, d, vocab.size, seed));

  const metadata: [string, GgufValue][] = layoutMetadata(layout, shape, { name: options.name ?? "SmallThinker synthetic", fileType, sizeLabel: sizeLabel(tensors) });
  metadata.push(["synth.seed", gv.u32(seed)]);
  if (options.routing) {
    metadata.push(["synth.routing.hot_fraction", gv.f32(options.routing.hotFraction)]);
    metadata.push(["synth.routing.hot_frequency", gv.f32(options.routing.hotFrequency)]);
    metadata.push(["synth.routing.hot_experts", gv.i32s(hotExperts.flat())]);
  }
  if (options.sparsity !== null) metadata.push(["synth.sparsity", gv.f32(options.sparsity)]);
  metadata.push(...vocab.metadata);

  const paths = write(path, { metadata, tensors }, options);
  return { path: paths[0]!, paths, vocabSize: vocab.size, hotExperts };
}

/** Writes the model whole or in parts, with its weights or only its header; returns the paths. */
function write(path: string, spec: GgufWriteSpec, options: SynthOptions): string[] {
  if (options.split !== undefined && options.split > 1) {
    return writeGgufSplit(path.replace(/\.gguf$/, ""), spec, { parts: options.split, headerOnly: options.headerOnly });
  }
  if (options.headerOnly) writeGgufHeader(path, spec);
  else writeGguf(path, spec);
  return [path];
}

function validateShape(shape: ModelShape, type: GgmlType): void {
  const problems: string[] = [];
  const positive = ["layers", "hidden", "heads", "kvHeads", "headDim", "experts", "expertsUsed", "expertFfn", "contextLength"] as const;
  for (const key of positive) if (!Number.isInteger(shape[key]) || shape[key] <= 0) problems.push(`${key} must be a positive integer`);
  if (shape.heads % shape.kvHeads !== 0) problems.push(`heads (${shape.heads}) must be a multiple of kvHeads (${shape.kvHeads})`);
  if (shape.expertsUsed > shape.experts) problems.push(`expertsUsed (${shape.expertsUsed}) exceeds experts (${shape.experts})`);
  if (shape.headDim % 2 !== 0) problems.push("headDim must be even (RoPE rotates pairs)");
  if (shape.downLayout === "transposed" && shape.expertFfn === shape.hidden) {
    problems.push("a transposed down matrix of square experts (expertFfn = hidden) looks like llama.cpp's, and readers would take it so");
  }
  const block = type === GgmlType.Q4_0 || type === GgmlType.Q8_0 ? 32 : 1;
  for (const key of ["hidden", "expertFfn"] as const) {
    if (shape[key] % block !== 0) problems.push(`${key} (${shape[key]}) must be a multiple of ${block} for ${ggmlTypeName(type)}`);
  }
  if ((shape.heads * shape.headDim) % block !== 0) problems.push(`heads×headDim must be a multiple of ${block} for ${ggmlTypeName(type)}`);
  if (problems.length) throw new Error(`synth: invalid shape: ${problems.join("; ")}`);
}
