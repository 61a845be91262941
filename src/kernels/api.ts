import { GgmlType, ggmlTypeName } from "../gguf/types.js";
import { ACTIVATION_FORMATS, WEIGHT_FORMATS, type ActivationFormat } from "../quant/formats/index.js";
import { Arena, Ptr } from "./arena.js";
import type { PackerDescriptor } from "./packer.js";

/**
 * The numeric kernels of the forward pass. Two implementations exist: the plain-TS reference
 * (`reference.ts`, the definition of every operation, used by tests as ground truth) and the
 * WebAssembly SIMD one on a worker pool. All operands live in arenas and are named by pointer.
 *
 * Semantics follow llama.cpp's CPU backend, so results agree with it: each weight type multiplies
 * activations prepared as ggml's vec_dot_type for it (src/quant/formats: Q8_0, Q8_1 or Q8_K
 * blocks for quantized weights, F16/BF16/F32 for float ones), with the block arithmetic of the
 * format table's reference `dot`.
 */

export type { ActivationFormat };

/** How activations must be prepared for a product with weights of `type`. */
export function activationFormatFor(type: GgmlType): ActivationFormat {
  const format = WEIGHT_FORMATS[type];
  if (!format) throw new Error(`no kernels for tensor type ${ggmlTypeName(type)}`);
  return format.activation;
}

/** Values per block of an activation format (1 for the float formats). */
export function activationBlockValues(format: ActivationFormat): number {
  return ACTIVATION_FORMATS[format].blockValues;
}

/**
 * What a weight is used for, which decides how the kernels may lay it out in memory:
 * "matrix": y = W·x with W of `rows` outputs × `cols` inputs, stored as in GGUF (row-major).
 * "expert-down": an expert's down projection, consumed sparsely (one column per active neuron).
 */
export type WeightKind = "matrix" | "expert-down";

/** Orientation of an expert's down projection in the file. */
export type DownLayout =
  /** llama.cpp's: `hidden` rows of `ffn` values (ggml dims {ffn, hidden}). */
  | "upstream"
  /** PowerInfer's: `ffn` rows of `hidden` values, one per neuron (ggml dims {hidden, ffn}). */
  | "transposed";

export interface MatrixRef {
  arena: Arena;
  ptr: Ptr;
  type: GgmlType;
  rows: number;
  cols: number;
}

/** One product of `matmuls`: y = W·x (x prepared for W's type). */
export interface MatrixProduct {
  w: MatrixRef;
  x: Ptr;
  y: Ptr;
}

export interface ExpertDownRef {
  arena: Arena;
  ptr: Ptr;
  type: GgmlType;
  hidden: number;
  ffn: number;
  layout: DownLayout;
}

/** One expert's three matrices, packed by `Kernels.pack`, all in one arena. */
export interface ExpertRef {
  gate: MatrixRef;
  up: MatrixRef;
  down: ExpertDownRef;
}

/**
 * Neurons per partial sum of an expert's down product in llama.cpp's orientation (a multiple of 32):
 * the Q4_0, Q8_0 and float kernels sum the neurons a chunk at a time (the chunks can go to different
 * threads). Every other type's down product is one plain dot per output row (`downChunk` Infinity).
 */
export const DOWN_CHUNK = 128;

const CHUNKED_DOWN_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.F32, GgmlType.F16, GgmlType.BF16]);

/** The neurons per partial sum of the down product for weights of `type` in llama.cpp's orientation. */
export function downChunk(type: GgmlType): number {
  if (!WEIGHT_FORMATS[type]) throw new Error(`no kernels for tensor type ${ggmlTypeName(type)}`);
  return CHUNKED_DOWN_TYPES.has(type) ? DOWN_CHUNK : Infinity;
}

/** One expert's share of a layer: the tokens routed to it and where their results go. */
export interface ExpertTask {
  expert: ExpertRef;
  /** i32 list of `count` rows of the prepared activations (the tokens). */
  rows: Ptr;
  /** i32 list of `count` output rows. */
  outRows: Ptr;
  count: number;
}

export type KvType = "f32" | "f16";

/** One layer's KV cache: a ring of `capacity` positions, position p stored at slot p % capacity. */
export interface KvLayerRef {
  arena: Arena;
  /** [capacity][kvHeads][headDim] keys (after RoPE) of type `type`. */
  k: Ptr;
  v: Ptr;
  type: KvType;
  capacity: number;
  kvHeads: number;
  headDim: number;
}

export interface AttentionParams {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Keys with position > query position - window are visible; Infinity for global attention. */
  window: number;
  scale: number;
}

export interface Kernels {
  readonly name: string;
  readonly threads: number;
  /** Bytes at the bottom of every arena reserved for the kernel module. */
  readonly reservedArenaBytes: number;

  /** An arena whose memory the kernels can use (workers attach to it). */
  createArena(initialBytes?: number): Arena;

  // ---- weights ----
  /** Whether these kernels pack, multiply and dequantize weights of `type`. */
  supports(type: GgmlType): boolean;
  /** Bytes a packed weight occupies. */
  packedBytes(kind: WeightKind, type: GgmlType, rows: number, cols: number, layout?: DownLayout): number;
  /**
   * Packs raw GGUF bytes at `src` into the kernel's layout at `dst` (both in `arena`, not overlapping).
   * For "expert-down", rows/cols are the file's (see DownLayout).
   */
  pack(arena: Arena, kind: WeightKind, type: GgmlType, rows: number, cols: number, src: Ptr, dst: Ptr, layout?: DownLayout): void;

  // ---- activations ----
  /** Bytes of one prepared activation row of `cols` values. */
  activationBytes(format: ActivationFormat, cols: number): number;
  /** Prepares `rows` f32 rows of `cols` values at `src` for products with weights needing `format`. */
  prepareActivations(arena: Arena, format: ActivationFormat, src: Ptr, rows: number, cols: number, dst: Ptr): void;

  // ---- products ----
  /** y[t][r] = W[r]·x[t] for t < n; x prepared for W's type; y is f32 [n][W.rows]. */
  matmul(w: MatrixRef, x: Ptr, n: number, y: Ptr): void;
  /**
   * Several products of n activation rows at once, each exactly as `matmul` (one job instead of
   * one per product: their weights stream as one). All in one arena; outputs must not overlap inputs.
   */
  matmuls(products: readonly MatrixProduct[], n: number): void;

  /**
   * A layer's fused ReGLU experts. For each task and each of its tokens j, with x = prepared row
   * rows[j] of `x`: g = gate·x, h_i = relu(g_i)·(up_i·x) (up computed only where g_i > 0 when
   * `sparse`), y = down·h, written (f32 [hidden]) to row outRows[j] of `out`. The down product sums
   * the neurons in chunks of downChunk(down type) (DOWN_CHUNK for the
   * transposed layout): each chunk's sum starts from zero, and the chunk sums are
   * added in chunk order (see the reference for the arithmetic within a chunk). Results are
   * bit-identical with `sparse` on or off, and do not depend on how tasks are grouped into calls or
   * ordered. Experts, x, the lists, `out` and `scratch` all lie in one arena.
   * Returns how many (token, neuron) pairs had g > 0.
   */
  expertsForward(tasks: readonly ExpertTask[], x: Ptr, out: Ptr, scratch: Ptr, sparse: boolean): number;
  /** Scratch bytes expertsForward needs for calls of at most `tokens` (task, token) pairs in all. */
  expertScratchBytes(hidden: number, ffn: number, tokens: number, gateType: GgmlType, downType: GgmlType): number;

  // ---- elementwise and attention ----
  /** dst[t] = rmsnorm(src[t]) * weight, as llama.cpp (sum of squares in f64). */
  rmsNorm(arena: Arena, src: Ptr, weight: Ptr, rows: number, cols: number, eps: number, dst: Ptr): void;
  /** NEOX RoPE in place on [n][heads][headDim]; cos/sin tables are f32 [n][headDim/2]. */
  rope(arena: Arena, x: Ptr, n: number, heads: number, headDim: number, cos: Ptr, sin: Ptr): void;
  /** Writes k, v (f32 [n][kvHeads][headDim]) of positions positions[t] (i32) into the cache. */
  storeKv(cache: KvLayerRef, k: Ptr, v: Ptr, n: number, positions: Ptr): void;
  /**
   * out[t][h] = softmax(scale · q[t][h]·K_j) · V_j over cached positions j with
   * positions[t] - window < j ≤ positions[t] (q, out f32 [n][heads][headDim]).
   */
  attention(cache: KvLayerRef, q: Ptr, n: number, positions: Ptr, params: AttentionParams, out: Ptr): void;
  /** dst[i] = a[i] + b[i] for i < count (f32). */
  add(arena: Arena, a: Ptr, b: Ptr, count: number, dst: Ptr): void;
  /**
   * The MoE output as llama.cpp sums it: out[t] = residual[t] + ((w[t][0]·y[t][0] + w[t][1]·y[t][1]) + …)
   * with y f32 [n][k][hidden] and w f32 [n][k].
   */
  moeCombine(arena: Arena, y: Ptr, weights: Ptr, n: number, k: number, hidden: number, residual: Ptr, out: Ptr): void;
  /** dst f32 [n][cols] = dequantized raw GGUF rows at src (n consecutive rows of `type`). */
  dequantizeRows(arena: Arena, type: GgmlType, src: Ptr, n: number, cols: number, dst: Ptr): void;
  /**
   * The wrapping i32 sum of the little-endian i32 words in `blocks` 64-byte blocks at src, read on
   * every thread: the benchmark's memory-bandwidth probe.
   */
  sumBlocks(arena: Arena, src: Ptr, blocks: number): number;

  /** Lets other threads pack weights into this kernel set's layouts (bit-identical to `pack`). */
  readonly packer: PackerDescriptor;

  /** Ends worker threads; the kernels are unusable afterwards. */
  dispose(): Promise<void>;
}
