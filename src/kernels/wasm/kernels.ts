import { availableParallelism } from "node:os";
import { GgmlType, ggmlTypeName } from "../../gguf/types.js";
import {
  ActivationFormat,
  AttentionParams,
  DOWN_CHUNK,
  DownLayout,
  ExpertTask,
  MatrixProduct,
  Kernels,
  KvLayerRef,
  MatrixRef,
  WeightKind,
  activationBlockValues,
  activationFormatFor,
} from "../api.js";
import { Arena, Ptr } from "../arena.js";
import { FORMAT_NUMBER, KernelExports, SimdLevel, compileKernels, instantiate } from "./exports.js";
import type { PackerDescriptor } from "../packer.js";
import { Op } from "./jobs.js";
import {
  ATTENTION_CHUNK,
  MAX_PRODUCTS,
  PARTIALS_BYTES,
  PRODUCT_FIELDS,
  PRODUCT_TABLE,
  THREAD_SCRATCH_BYTES,
  attentionChunkScratch,
  MatrixKind,
  checkType,
  isBlock,
  isQuant,
  matrixKind,
  packedBytes,
  partialBytes,
  partialsArea,
  reservedBytes,
  supportsType,
  threadScratch,
} from "./layout.js";
import { ArenaInstances, WorkerPool } from "./pool.js";
import { writeCodebooks } from "./tables.js";

export interface WasmKernelOptions {
  /** Threads including the calling one (default: the machine's parallelism). */
  threads?: number;
  /** "relaxed" (default) uses relaxed SIMD when the engine supports it; "simd128" never does. */
  simd?: SimdLevel;
  /**
   * Work (in Q4_0 multiply-adds) below which a job is not cut further; default 2^17, about 5 µs.
   * Tests set it to 1 so every job is cut as finely as it can be.
   */
  unitWork?: number;
}

/** Most query tokens per unit of a prefill's attention. */
const ATTENTION_BLOCK = 32;

/** Weight bytes per piece of a multi-product job. */
const PIECE_BYTES = 64 << 10;

/** Bytes per task in an expert call's task table (see src/kernels/assembly/expert.ts). */
const TASK_BYTES = 32;
/** Expert calls of at most this many (task, token) pairs compute chunk partial sums in one job. */
const LIGHT_TOKENS = 8;

/** Expert down preparation, numbered as in src/kernels/assembly/expert.ts. */
const DownKind = { Quant: 0, AsIs: 1, F16: 2, BF16: 3, Block: 4, Q4K: 5, Q6K: 6 } as const;

/** Work of one multiply-add of a matrix kind, in Q4_0 multiply-adds (for cutting jobs). */
function workPerValue(kind: number): number {
  return kind === MatrixKind.Quant || kind === MatrixKind.Q4K ? 1 : kind === MatrixKind.Q6K || kind === MatrixKind.IQ4XS ? 1.5 : kind === MatrixKind.Block ? 2 : 4;
}

/**
 * Work (in Q4_0 multiply-adds, ~5 µs per 2^17) worth a unit of its own: handing a job over costs
 * about a microsecond, claiming a unit a fraction of that.
 */
const UNIT_WORK = 1 << 17;
/** Most units per thread: more balance the load when a thread is slow, fewer cost less to claim. */
const UNITS_PER_THREAD = 4;
/** With a tiny unit work, jobs are cut this fine (bounded by their granularity). */
const MOST_UNITS = 64;

/**
 * The WebAssembly SIMD kernels on a pool of worker threads sharing each arena's memory. Every call
 * is synchronous: the calling thread publishes the job, does its own share and waits for the rest.
 */
export class WasmKernels implements Kernels {
  readonly name: string;
  readonly reservedArenaBytes: number;
  private readonly main: ArenaInstances;
  private readonly arenas = new WeakSet<Arena>();
  private arenaCount = 0;
  /** An instance on a private memory, for the module's size formulas. */
  private readonly formulas: KernelExports;

  readonly packer: PackerDescriptor;

  private constructor(module: WebAssembly.Module, readonly simd: SimdLevel, readonly threads: number, private readonly pool: WorkerPool,
    private readonly unitWork: number) {
    this.name = `wasm-${simd}`;
    this.packer = { url: new URL("./packer.js", import.meta.url).href, options: { module }, scratchBytes: THREAD_SCRATCH_BYTES };
    this.reservedArenaBytes = reservedBytes(threads);
    this.main = pool.main;
    this.formulas = instantiate(module, new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }));
  }

  static async create(options: WasmKernelOptions = {}): Promise<WasmKernels> {
    const threads = Math.max(1, Math.floor(options.threads ?? availableParallelism()));
    const { module, level } = await compileKernels(options.simd ?? "relaxed");
    const pool = new WorkerPool(module, threads, new ArenaInstances(module));
    await pool.ready();
    return new WasmKernels(module, level, threads, pool, options.unitWork ?? UNIT_WORK);
  }

  createArena(initialBytes = this.reservedArenaBytes): Arena {
    const arena = new Arena(this.arenaCount++, this.reservedArenaBytes, Math.max(initialBytes, this.reservedArenaBytes));
    writeCodebooks(arena.bytes);
    this.main.attach(arena.index, arena.memory);
    this.pool.attach(arena.index, arena.memory);
    this.arenas.add(arena);
    return arena;
  }

  /** As `units`, but up to every piece: for jobs whose pieces vary in cost (claims are cheap). */
  private fineUnits(work: number, pieces: number): number {
    if (this.threads === 1 || work < this.unitWork) return 1;
    return Math.max(1, Math.min(pieces, this.unitWork < UNIT_WORK ? MOST_UNITS : 8 * this.threads, Math.ceil(work / this.unitWork)));
  }

  /** Units to cut a job of `work` into, at most `pieces` (its natural granularity). */
  private units(work: number, pieces: number): number {
    if (this.threads === 1 || work < this.unitWork) return 1;
    const perThread = this.unitWork < UNIT_WORK ? MOST_UNITS : Math.min(UNITS_PER_THREAD, Math.ceil(work / (this.unitWork * this.threads)));
    return Math.max(1, Math.min(pieces, perThread * this.threads));
  }

  private own(arena: Arena): number {
    if (!this.arenas.has(arena)) throw new Error(`wasm kernels: arena ${arena.index} was not created by these kernels`);
    return arena.index;
  }

  supports(type: GgmlType): boolean {
    return supportsType(type);
  }

  packedBytes(kind: WeightKind, type: GgmlType, rows: number, cols: number, layout?: DownLayout): number {
    return packedBytes(kind, type, rows, cols, layout);
  }

  pack(arena: Arena, kind: WeightKind, type: GgmlType, rows: number, cols: number, src: Ptr, dst: Ptr, layout?: DownLayout): void {
    packedBytes(kind, type, rows, cols, layout);
    const k = this.main.instance(this.own(arena));
    if (kind === "matrix") k.packMatrix(type, src, dst, rows, cols, threadScratch(0));
    else k.packDown(type, layout === "upstream" ? 1 : 0, src, dst, rows, cols, threadScratch(0));
  }

  activationBytes(format: ActivationFormat, cols: number): number {
    const block = activationBlockValues(format);
    if (cols % block !== 0) throw new Error(`wasm kernels: ${format} rows of ${cols} values are not whole ${block}-value blocks`);
    return this.formulas.activationRowBytes(FORMAT_NUMBER[format], cols);
  }

  prepareActivations(arena: Arena, format: ActivationFormat, src: Ptr, rows: number, cols: number, dst: Ptr): void {
    this.activationBytes(format, cols);
    this.pool.run(Op.Prepare, [this.own(arena), FORMAT_NUMBER[format], src, cols, dst, rows], this.units(8 * rows * cols, rows));
  }

  matmul(w: MatrixRef, x: Ptr, n: number, y: Ptr): void {
    checkType(w.type, w.cols);
    const xStride = this.activationBytes(activationFormatFor(w.type), w.cols);
    const kind = matrixKind(w.type);
    const units = this.units(workPerValue(kind) * w.rows * w.cols * n, Math.ceil(w.rows / 4));
    this.pool.run(Op.Matmul, [this.own(w.arena), kind, w.type, w.ptr, w.cols, w.rows, x, xStride, n, y, 4 * w.rows], units);
  }

  matmuls(products: readonly MatrixProduct[], n: number): void {
    if (products.length === 0) return;
    const arenaRef = products[0]!.w.arena;
    if (products.length > MAX_PRODUCTS) throw new Error(`wasm kernels: ${products.length} products in one call (at most ${MAX_PRODUCTS})`);
    const i32 = arenaRef.heapI32;
    let first = 0;
    let work = 0;
    products.forEach(({ w, x, y }, i) => {
      if (w.arena !== arenaRef) throw new Error("wasm kernels: a call's products must share one arena");
      checkType(w.type, w.cols);
      const kind = matrixKind(w.type);
      const bytes = this.packedBytes("matrix", w.type, w.rows, w.cols);
      // Pieces of about 64 KiB of weights, a quad of rows at least (for every type: see matmulPiece).
      const pieces = Math.max(1, Math.min(Math.ceil(w.rows / 4), Math.round(bytes / PIECE_BYTES)));
      const o = (PRODUCT_TABLE >> 2) + i * PRODUCT_FIELDS;
      i32.set([kind, w.type, w.ptr, w.cols, w.rows, x, this.activationBytes(activationFormatFor(w.type), w.cols), y, 4 * w.rows, pieces, first, 0], o);
      first += pieces;
      work += workPerValue(kind) * w.rows * w.cols * n;
    });
    // Every piece is a unit (one thread runs them all in turn). Tiny jobs stay on this thread: each
    // product is then too small for `matmul` to share out.
    if (work < this.unitWork) {
      for (const { w, x, y } of products) this.matmul(w, x, n, y);
      return;
    }
    this.pool.run(Op.Matmuls, [this.own(arenaRef), products.length, n], first);
  }

  expertScratchBytes(hidden: number, ffn: number, tokens: number): number {
    const light = Math.min(tokens, LIGHT_TOKENS);
    return TASK_BYTES * tokens + tokens * this.formulas.expertTokenBytes(ffn) + light * Math.ceil(ffn / DOWN_CHUNK) * 4 * hidden + 64;
  }

  expertsForward(tasks: readonly ExpertTask[], x: Ptr, out: Ptr, scratch: Ptr, sparse: boolean): number {
    if (tasks.length === 0) return 0;
    const first = tasks[0]!.expert;
    const { gate, down } = first;
    const ffn = gate.rows;
    const hidden = gate.cols;
    for (const { expert } of tasks) {
      const { gate: g, up, down: d } = expert;
      if (g.arena !== gate.arena || up.arena !== gate.arena || d.arena !== gate.arena) throw new Error("wasm kernels: a call's experts must share one arena");
      if (g.type !== gate.type || up.type !== gate.type || g.rows !== ffn || up.rows !== ffn || g.cols !== hidden || up.cols !== hidden ||
        d.hidden !== hidden || d.ffn !== ffn || d.type !== down.type || d.layout !== down.layout) {
        throw new Error(`wasm kernels: expert shapes gate ${g.rows}×${g.cols} ${ggmlTypeName(g.type)}, up ${up.rows}×${up.cols} ${ggmlTypeName(up.type)}, down ${d.hidden}×${d.ffn} ${ggmlTypeName(d.type)} do not match`);
      }
    }
    if (ffn % 32 !== 0 || hidden % 32 !== 0) throw new Error(`wasm kernels: expert ${hidden}×${ffn} (multiples of 32 needed)`);
    checkType(gate.type, hidden);
    checkType(down.type, down.layout === "upstream" ? ffn : hidden);
    const arenaRef = gate.arena;
    const arena = this.own(arenaRef);
    const tokenStride = this.formulas.expertTokenBytes(ffn);
    const quantUpstream = down.layout === "upstream" && isQuant(down.type);
    const blockUpstream = down.layout === "upstream" && isBlock(down.type);
    const downKind = quantUpstream ? DownKind.Quant
      : blockUpstream && down.type === GgmlType.Q4_K ? DownKind.Q4K
      : blockUpstream && down.type === GgmlType.Q6_K ? DownKind.Q6K
      : blockUpstream ? DownKind.Block
      : down.layout === "transposed" || down.type === GgmlType.F32 ? DownKind.AsIs
      : down.type === GgmlType.F16 ? DownKind.F16 : DownKind.BF16;
    // A block format's h is prepared a whole activation block at a time, by the unit that computed it.
    const align = blockUpstream ? Math.max(1, activationBlockValues(activationFormatFor(down.type)) / DOWN_CHUNK) : 1;
    const xStride = this.activationBytes(activationFormatFor(gate.type), hidden);
    // The task table, then the token regions, then (few tokens) the chunk partial sums.
    const table = scratch;
    const i32 = arenaRef.heapI32;
    let tokens = 0;
    for (let t = 0; t < tasks.length; t++) {
      const { expert, rows, outRows, count } = tasks[t]!;
      const o = (table >> 2) + 8 * t;
      i32[o] = expert.gate.ptr;
      i32[o + 1] = expert.up.ptr;
      i32[o + 2] = expert.down.ptr;
      i32[o + 3] = count;
      i32[o + 4] = rows;
      i32[o + 5] = outRows;
      i32[o + 6] = tokens;
      tokens += count;
    }
    const regions = table + TASK_BYTES * tokens;
    // Few tokens: each unit also sums its chunks' share of the down product (not for block formats,
    // whose down product needs every neuron of an activation block at once).
    const light = tokens <= LIGHT_TOKENS && !blockUpstream;
    const partials = light ? regions + tokens * tokenStride : 0;
    const chunks = Math.ceil(ffn / DOWN_CHUNK);
    const work = 2 * ffn * hidden * tokens;
    // Each task's neurons in as few runs as keep the threads busy (a run streams its gate rows, then
    // reads its active up rows together).
    const splits = this.threads === 1 ? 1 : Math.min(chunks, Math.max(1, Math.ceil((2 * this.threads) / tasks.length)));
    const active = this.pool.run(Op.ExpertChunks,
      [arena, table, tasks.length, gate.type, down.type, quantUpstream ? 1 : 0, downKind, hidden, ffn, x, xStride, regions, tokenStride, partials,
        sparse ? 1 : 0, splits, align],
      this.fineUnits(work, tasks.length * splits));
    if (light) {
      this.main.instance(arena).expertReduce(table, tasks.length, hidden, ffn, partials, out);
    } else {
      const ranges = Math.max(1, Math.min(hidden / 32, Math.round((4 * this.threads) / tasks.length)));
      this.pool.run(Op.ExpertRows, [arena, table, tasks.length, down.type, quantUpstream ? 1 : 0, downKind, hidden, ffn, regions, tokenStride, out, ranges],
        this.fineUnits(ffn * hidden * tokens, tasks.length * ranges));
    }
    return active;
  }

  rmsNorm(arena: Arena, src: Ptr, weight: Ptr, rows: number, cols: number, eps: number, dst: Ptr): void {
    this.pool.run(Op.RmsNorm, [this.own(arena), src, weight, cols, eps, dst, rows], this.units(16 * rows * cols, rows));
  }

  rope(arena: Arena, x: Ptr, n: number, heads: number, headDim: number, cos: Ptr, sin: Ptr): void {
    this.pool.run(Op.Rope, [this.own(arena), x, heads, headDim, cos, sin, n], this.units(4 * n * heads * headDim, n));
  }

  storeKv(cache: KvLayerRef, k: Ptr, v: Ptr, n: number, positions: Ptr): void {
    const args = [this.own(cache.arena), cache.k, cache.v, cache.type === "f16" ? 1 : 0, cache.capacity, cache.kvHeads * cache.headDim, k, v, positions, n];
    this.pool.run(Op.StoreKv, args, this.units(8 * n * cache.kvHeads * cache.headDim, cache.capacity));
  }

  attention(cache: KvLayerRef, q: Ptr, n: number, positions: Ptr, params: AttentionParams, out: Ptr): void {
    const { heads, kvHeads, headDim, scale } = params;
    const group = heads / kvHeads;
    if (!Number.isInteger(group) || kvHeads !== cache.kvHeads || headDim !== cache.headDim || headDim % 16 !== 0) {
      throw new Error(`wasm kernels: attention with ${heads} heads, ${kvHeads} KV heads of ${headDim} (cache ${cache.kvHeads}×${cache.headDim}; head dims must be multiples of 16)`);
    }
    if (attentionChunkScratch(group, headDim) + 2 * partialBytes(group, headDim) > THREAD_SCRATCH_BYTES) {
      throw new Error(`wasm kernels: attention groups of ${group} heads of ${headDim} exceed the thread scratch`);
    }
    const window = params.window === Infinity ? 0 : params.window;
    const pos = cache.arena.i32(positions, n);
    for (let t = 0; t < n; t++) {
      const first = window > 0 ? Math.max(0, pos[t]! - window + 1) : 0;
      if (pos[t]! - first + 1 > cache.capacity) throw new RangeError(`attention span ${pos[t]! - first + 1} exceeds KV capacity ${cache.capacity}`);
    }
    const arena = this.own(cache.arena);
    const half = cache.type === "f16" ? 1 : 0;
    const common = [arena, cache.k, cache.v, half, cache.capacity, kvHeads, group, headDim, scale, window, q];
    // One query: KV heads that share out evenly over the threads go whole (no partials to fold);
    // otherwise chunks are spread over the threads and folded afterwards.
    if (n === 1 && this.threads > 1 && kvHeads % this.threads !== 0) {
      const position = pos[0]!;
      const first = window > 0 ? Math.max(0, position - window + 1) : 0;
      const chunks = Math.floor(position / ATTENTION_CHUNK) - Math.floor(first / ATTENTION_CHUNK) + 1;
      const partials = partialsArea(this.threads);
      if (chunks > 1 && kvHeads * chunks * partialBytes(group, headDim) <= PARTIALS_BYTES) {
        const span = position - first + 1;
        this.pool.run(Op.AttendChunks, [...common, position, chunks, partials], this.units(8 * heads * headDim * span, kvHeads * chunks));
        this.pool.run(Op.FoldChunks, [arena, kvHeads, group, headDim, chunks, partials, out], this.units(8 * heads * headDim * chunks, kvHeads));
        return;
      }
    }
    let work = 0;
    for (let t = 0; t < n; t++) work += 8 * heads * headDim * (pos[t]! - (window > 0 ? Math.max(0, pos[t]! - window + 1) : 0) + 1);
    // Queries in blocks that share each chunk's widened keys and values (as many as the scratch holds).
    const room = Math.floor((THREAD_SCRATCH_BYTES - attentionChunkScratch(group, headDim)) / partialBytes(group, headDim)) - 1;
    const block = Math.max(1, Math.min(ATTENTION_BLOCK, room, Math.ceil(n / (2 * this.threads))));
    const pieces = Math.ceil(n / block) * kvHeads;
    this.pool.run(Op.AttendUnits, [...common, positions, n, out, block], this.threads === 1 ? 1 : n === 1 ? pieces : Math.min(pieces, this.fineUnits(work, pieces)));
  }

  add(arena: Arena, a: Ptr, b: Ptr, count: number, dst: Ptr): void {
    this.pool.run(Op.Add, [this.own(arena), a, b, dst, count], this.units(count, Math.ceil(count / 4)));
  }

  moeCombine(arena: Arena, y: Ptr, weights: Ptr, n: number, k: number, hidden: number, residual: Ptr, out: Ptr): void {
    this.pool.run(Op.MoeCombine, [this.own(arena), y, weights, n, k, hidden, residual, out], this.units(2 * n * k * hidden, n));
  }

  dequantizeRows(arena: Arena, type: GgmlType, src: Ptr, n: number, cols: number, dst: Ptr): void {
    checkType(type, cols);
    this.pool.run(Op.Dequantize, [this.own(arena), type, src, cols, dst, n], this.units(2 * n * cols, n));
  }

  sumBlocks(arena: Arena, src: Ptr, blocks: number): number {
    return this.pool.run(Op.SumBlocks, [this.own(arena), src, blocks], this.threads === 1 ? 1 : Math.min(16 * this.threads, Math.max(1, blocks))) | 0;
  }

  async dispose(): Promise<void> {
    await this.pool.dispose();
  }
}

/** The WASM kernels with `threads` threads (default: one per core), relaxed SIMD when available. */
export function createWasmKernels(options: WasmKernelOptions = {}): Promise<WasmKernels> {
  return WasmKernels.create(options);
}
