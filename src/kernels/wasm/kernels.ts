import { availableParallelism } from "node:os";
import { GgmlType, ggmlTypeName } from "../../gguf/types.js";
import {
  ActivationFormat,
  AttentionParams,
  DownLayout,
  ExpertRef,
  Kernels,
  KvLayerRef,
  MatrixRef,
  WeightKind,
  activationFormatFor,
} from "../api.js";
import { Arena, Ptr } from "../arena.js";
import { FORMAT_NUMBER, KernelExports, SimdLevel, compileKernels, instantiate } from "./exports.js";
import type { PackerDescriptor } from "../packer.js";
import { Op } from "./jobs.js";
import {
  ATTENTION_CHUNK,
  PARTIALS_BYTES,
  THREAD_SCRATCH_BYTES,
  attentionChunkScratch,
  checkType,
  isQuant,
  packedBytes,
  partialBytes,
  partialsArea,
  reservedBytes,
  threadScratch,
} from "./layout.js";
import { ArenaInstances, WorkerPool } from "./pool.js";

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

/** Expert down preparation, numbered as in src/kernels/assembly/expert.ts. */
const DownKind = { Quant: 0, AsIs: 1, F16: 2, BF16: 3 } as const;

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
    this.main.attach(arena.index, arena.memory);
    this.pool.attach(arena.index, arena.memory);
    this.arenas.add(arena);
    return arena;
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

  packedBytes(kind: WeightKind, type: GgmlType, rows: number, cols: number, layout?: DownLayout): number {
    return packedBytes(kind, type, rows, cols, layout);
  }

  pack(arena: Arena, kind: WeightKind, type: GgmlType, rows: number, cols: number, src: Ptr, dst: Ptr, layout?: DownLayout): void {
    packedBytes(kind, type, rows, cols, layout);
    const k = this.main.instance(this.own(arena));
    if (kind === "matrix") k.packMatrix(type, src, dst, rows, cols);
    else k.packDown(type, layout === "upstream" ? 1 : 0, src, dst, rows, cols, threadScratch(0));
  }

  activationBytes(format: ActivationFormat, cols: number): number {
    if (format === "q8" && cols % 32 !== 0) throw new Error(`wasm kernels: q8 rows of ${cols} values are not whole blocks`);
    return this.formulas.activationRowBytes(FORMAT_NUMBER[format], cols);
  }

  prepareActivations(arena: Arena, format: ActivationFormat, src: Ptr, rows: number, cols: number, dst: Ptr): void {
    this.activationBytes(format, cols);
    this.pool.run(Op.Prepare, [this.own(arena), FORMAT_NUMBER[format], src, cols, dst, rows], this.units(8 * rows * cols, rows));
  }

  matmul(w: MatrixRef, x: Ptr, n: number, y: Ptr): void {
    checkType(w.type, w.cols);
    const xStride = this.activationBytes(activationFormatFor(w.type), w.cols);
    const quant = isQuant(w.type);
    const units = this.units((quant ? 1 : 4) * w.rows * w.cols * n, Math.ceil(w.rows / 4));
    this.pool.run(Op.Matmul, [this.own(w.arena), quant ? 1 : 0, w.type, w.ptr, w.cols, w.rows, x, xStride, n, y, 4 * w.rows], units);
  }

  expertScratchBytes(_hidden: number, ffn: number, n: number): number {
    return n * this.formulas.expertTokenBytes(ffn);
  }

  expertForward(expert: ExpertRef, x: Ptr, xRowsPtr: Ptr, n: number, y: Ptr, scratch: Ptr, sparse: boolean): number {
    const { gate, up, down } = expert;
    const ffn = gate.rows;
    const hidden = gate.cols;
    if (up.type !== gate.type || up.rows !== ffn || up.cols !== hidden || down.hidden !== hidden || down.ffn !== ffn) {
      throw new Error(`wasm kernels: expert shapes gate ${gate.rows}×${gate.cols} ${ggmlTypeName(gate.type)}, up ${up.rows}×${up.cols} ${ggmlTypeName(up.type)}, down ${down.hidden}×${down.ffn} do not match`);
    }
    if (ffn % 32 !== 0 || hidden % 32 !== 0) throw new Error(`wasm kernels: expert ${hidden}×${ffn} (multiples of 32 needed)`);
    checkType(gate.type, hidden);
    checkType(down.type, down.layout === "upstream" ? ffn : hidden);
    const arena = this.own(gate.arena);
    const tokenStride = this.formulas.expertTokenBytes(ffn);
    const quantUpstream = down.layout === "upstream" && isQuant(down.type);
    const downKind = quantUpstream ? DownKind.Quant
      : down.layout === "transposed" || down.type === GgmlType.F32 ? DownKind.AsIs
      : down.type === GgmlType.F16 ? DownKind.F16 : DownKind.BF16;
    const xStride = this.activationBytes(activationFormatFor(gate.type), hidden);
    const active = this.pool.run(Op.ExpertGateUp,
      [arena, gate.type, gate.ptr, up.ptr, hidden, ffn, x, xStride, xRowsPtr, n, scratch, tokenStride, downKind, sparse ? 1 : 0],
      this.units(2 * ffn * hidden * n, ffn / 32));
    this.pool.run(Op.ExpertDown, [arena, down.type, quantUpstream ? 1 : 0, down.ptr, hidden, ffn, n, scratch, tokenStride, y, 4 * hidden],
      this.units(ffn * hidden * n, hidden / 32));
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
    if (n === 1 && this.threads > 1) {
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
    this.pool.run(Op.AttendUnits, [...common, positions, n, out], this.units(work, n * kvHeads));
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

  async dispose(): Promise<void> {
    await this.pool.dispose();
  }
}

/** The WASM kernels with `threads` threads (default: one per core), relaxed SIMD when available. */
export function createWasmKernels(options: WasmKernelOptions = {}): Promise<WasmKernels> {
  return WasmKernels.create(options);
}
