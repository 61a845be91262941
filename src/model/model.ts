import { GgufFile } from "../gguf/reader.js";
import { GgufTensorInfo, ggmlRowBytes } from "../gguf/types.js";
import { ActivationFormat, AttentionParams, ExpertRef, ExpertTask, Kernels, KvType, MatrixProduct, MatrixRef, activationBlockValues, activationFormatFor } from "../kernels/api.js";
import { Arena, Ptr } from "../kernels/arena.js";
import { KvCache } from "../kv/cache.js";
import { ExpertSource } from "../experts/source.js";
import { SmallThinkerConfig } from "./config.js";
import { ropeTables } from "./rope.js";
import { route } from "./routing.js";
import { WeightLoader } from "./weights.js";
import type { MemoryPlan } from "./plan.js";

export interface ModelRuntimeOptions {
  contextSize: number;
  /** Most tokens per forward chunk (prompt processing batch). */
  batchSize: number;
  kvType: KvType;
  /** Skip up/down work for neurons whose gate is ≤ 0 (exact either way). */
  sparse: boolean;
  /** Logit rows computed at once when every position's logits are wanted. */
  logitsRows: number;
  /** Sequences with a KV cache of their own, which one forward pass can evaluate together (default 1). */
  parallel?: number;
}

interface LayerWeights {
  attnNorm: Ptr;
  q: MatrixRef;
  k: MatrixRef;
  v: MatrixRef;
  o: MatrixRef;
  ffnNorm: Ptr;
  router: MatrixRef;
}

export interface DenseWeights {
  layers: LayerWeights[];
  outputNorm: Ptr;
  output: MatrixRef;
  embedding: GgufTensorInfo;
}

/** Routing and activation counts gathered while the model runs (for `smallthinker stats`). */
export class ActivityStats {
  /** [layer][expert] times chosen. */
  readonly routed: number[][];
  tokens = 0;
  gateActive = 0;
  gateTotal = 0;
  /** Per-layer gate outputs > 0 and evaluated. */
  readonly layerActive: number[];
  readonly layerTotal: number[];

  constructor(layers: number, experts: number) {
    this.routed = Array.from({ length: layers }, () => new Array<number>(experts).fill(0));
    this.layerActive = new Array<number>(layers).fill(0);
    this.layerTotal = new Array<number>(layers).fill(0);
  }
}

/** Working buffers an arena needs to run experts that live in it. */
interface ExpertScratch {
  arena: Arena;
  /** Prepared activations of the chunk's tokens (a copy in arenas other than the main one). */
  x: Ptr;
  /** i32 lists: each task's token rows, then its output rows ([token][slot] of `y`). */
  lists: Ptr;
  /** Expert outputs [token][slot][hidden]: the main arena's `expertOut`, or a buffer of this arena. */
  y: Ptr;
  work: Ptr;
  /** Whether `x` holds the current chunk's activations. */
  filled: boolean;
}

export interface ForwardRequest {
  /** Which positions' logits to compute. */
  logits: "last" | "all" | "none";
  /** Receives each computed row of logits (index into the tokens given). */
  onLogits?: (index: number, logits: Float32Array) => void;
}

/** One sequence's share of a batched forward pass: tokens at its next positions. */
export interface SequenceChunk extends ForwardRequest {
  kv: KvCache;
  tokens: readonly number[];
}

/** Where a sequence's rows sit in a batch. */
interface ChunkRows {
  chunk: SequenceChunk;
  /** Index of its first row in the batch. */
  start: number;
}

export interface BufferLayout {
  /** Working buffers in the main arena, by name. */
  buffers: Record<string, number>;
  /** Bytes every arena that holds experts needs to run them. */
  expertScratchBytes: number;
  embedRowBytes: number;
  actBytes: number;
  expertWorkBytes: number;
}

/** The activation buffers the forward pass allocates (so the memory planner can count them). */
export function bufferLayout(file: GgufFile, config: SmallThinkerConfig, kernels: Kernels, options: ModelRuntimeOptions): BufferLayout {
  const { hidden, heads, kvHeads, headDim, expertsUsed, experts, vocabSize } = config;
  const B = options.batchSize;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const embedRowBytes = ggmlRowBytes(file.tensor("token_embd.weight").type, hidden);
  // An upper bound for any weight's prepared activations (quantized formats take whole blocks).
  const formats: ActivationFormat[] = ["f32", "f16", "bf16", "q8_0", "q8_1", "q8_k"];
  const widest = Math.max(hidden, qWidth);
  const actBytes = Math.max(...formats.map((f) => {
    const block = activationBlockValues(f);
    return kernels.activationBytes(f, Math.ceil(widest / block) * block);
  }));
  const f32 = (count: number) => 4 * count;
  const buffers: Record<string, number> = {
    hidden: f32(B * hidden),
    residual: f32(B * hidden),
    normed: f32(B * hidden),
    q: f32(B * qWidth),
    k: f32(B * kvWidth),
    v: f32(B * kvWidth),
    attention: f32(B * qWidth),
    projected: f32(B * hidden),
    routerLogits: f32(B * experts),
    expertOut: f32(B * expertsUsed * hidden),
    expertWeights: f32(B * expertsUsed),
    positions: f32(B),
    cos: f32((B * headDim) / 2),
    sin: f32((B * headDim) / 2),
    logits: f32(options.logitsRows * vocabSize),
    act: B * actBytes,
    routerAct: B * actBytes,
    moeAct: B * actBytes,
    embedRaw: B * embedRowBytes,
  };
  const pairs = B * expertsUsed;
  const expertWorkBytes = Math.max(
    ...Array.from({ length: config.layers }, (_, l) =>
      kernels.expertScratchBytes(hidden, config.expertFfn, pairs, file.tensor(`blk.${l}.ffn_gate_exps.weight`).type, file.tensor(`blk.${l}.ffn_down_exps.weight`).type),
    ),
  );
  // x, the row lists, outputs (in arenas other than the main one), the kernels' work area.
  const expertScratchBytes = B * actBytes + 8 * pairs + 4 * pairs * hidden + expertWorkBytes + 4 * 64;
  return { buffers, expertScratchBytes, embedRowBytes, actBytes, expertWorkBytes };
}

/**
 * The SmallThinker forward pass. It holds one KV cache per parallel sequence (`kvs`; `kv` is the
 * first) and evaluates several sequences in one pass (`forwardBatch`): their rows share every
 * product and each expert's weights, and each sequence attends to its own cache at its own
 * positions. A row's arithmetic never depends on the other rows of its batch (the kernels'
 * contract), so a sequence's logits are the same bits alone or batched.
 */
export class SmallThinkerModel {
  /** The first sequence's KV cache (the only one unless `parallel` > 1). */
  readonly kv: KvCache;
  readonly kvs: readonly KvCache[];
  readonly stats: ActivityStats;
  readonly experts: ExpertSource;
  /** Arena 0 holds dense weights, buffers and the KV cache; experts may spill into more. */
  readonly arenas: Arena[];
  private readonly arena: Arena;
  private readonly buffers: Record<string, Ptr> = {};
  private readonly expertScratch = new Map<Arena, ExpertScratch>();
  private readonly embedRowBytes: number;
  private readonly actBytes: number;
  private readonly cosTable: Float32Array;
  private readonly sinTable: Float32Array;
  private readonly expertWorkBytes: number;
  /** Router logits of the layers ahead, for predicting their experts (when the source wants them). */
  private readonly predictedLogits: Ptr;

  constructor(
    private readonly file: GgufFile,
    readonly config: SmallThinkerConfig,
    readonly kernels: Kernels,
    readonly weights: DenseWeights,
    createExperts: (arenas: Arena[], headroom: number) => ExpertSource,
    arena: Arena,
    readonly options: ModelRuntimeOptions,
    readonly plan: MemoryPlan,
  ) {
    this.arena = arena;
    const layout = bufferLayout(file, config, kernels, options);
    for (const [name, bytes] of Object.entries(layout.buffers)) this.buffers[name] = arena.alloc(bytes);
    this.embedRowBytes = layout.embedRowBytes;
    this.actBytes = layout.actBytes;
    this.expertWorkBytes = layout.expertWorkBytes;
    this.cosTable = new Float32Array((options.batchSize * config.headDim) / 2);
    this.sinTable = new Float32Array((options.batchSize * config.headDim) / 2);
    const kvOptions = { contextSize: options.contextSize, batchSize: options.batchSize, type: options.kvType };
    this.kvs = Array.from({ length: options.parallel ?? 1 }, () => new KvCache(arena, config, kvOptions));
    this.kv = this.kvs[0]!;
    this.stats = new ActivityStats(config.layers, config.experts);
    this.scratchFor(arena);
    this.arenas = [arena];
    // Each further arena needs room for the expert scratch and an 8 MiB loading stage.
    this.experts = createExperts(this.arenas, layout.expertScratchBytes + (16 << 20));
    this.predictedLogits = arena.alloc(4 * this.experts.lookahead * config.experts);
  }

  /** Releases the model file and expert storage; the model is unusable afterwards. */
  close(): void {
    this.experts.dispose();
    this.file.close();
  }


  /** Loads the dense (non-expert) weights into `arena`. */
  static loadDenseWeights(file: GgufFile, config: SmallThinkerConfig, loader: WeightLoader, arena: Arena): DenseWeights {
    const layers: LayerWeights[] = [];
    for (let l = 0; l < config.layers; l++) {
      const t = (name: string) => file.tensor(`blk.${l}.${name}.weight`);
      layers.push({
        attnNorm: loader.loadVector(arena, t("attn_norm")),
        q: loader.loadMatrix(arena, t("attn_q")),
        k: loader.loadMatrix(arena, t("attn_k")),
        v: loader.loadMatrix(arena, t("attn_v")),
        o: loader.loadMatrix(arena, t("attn_output")),
        ffnNorm: loader.loadVector(arena, t("ffn_norm")),
        router: loader.loadMatrix(arena, t("ffn_gate_inp")),
      });
    }
    const embedding = file.tensor("token_embd.weight");
    return {
      layers,
      outputNorm: loader.loadVector(arena, file.tensor("output_norm.weight")),
      output: loader.loadMatrix(arena, config.tiedOutput ? embedding : file.tensor("output.weight")),
      embedding,
    };
  }

  private buffer(name: string): Ptr {
    return this.buffers[name]!;
  }

  /** Prepared activations of `rows` rows of `cols` f32 values for a product with `w`. */
  private prepare(w: MatrixRef, src: Ptr, rows: number, cols: number, target = this.buffer("act")): Ptr {
    this.kernels.prepareActivations(this.arena, activationFormatFor(w.type), src, rows, cols, target);
    return target;
  }

  private scratchFor(arena: Arena): ExpertScratch {
    let scratch = this.expertScratch.get(arena);
    if (!scratch) {
      const B = this.options.batchSize;
      const pairs = B * this.config.expertsUsed;
      scratch = {
        arena,
        x: arena === this.arena ? this.buffer("moeAct") : arena.alloc(B * this.actBytes),
        lists: arena.alloc(8 * pairs),
        y: arena === this.arena ? this.buffer("expertOut") : arena.alloc(4 * pairs * this.config.hidden),
        work: arena.alloc(this.expertWorkBytes),
        filled: false,
      };
      this.expertScratch.set(arena, scratch);
    }
    return scratch;
  }

  /**
   * Evaluates `tokens` at the next positions of the first sequence, appending them to its KV cache,
   * and hands out the requested logits.
   */
  forward(tokens: ArrayLike<number>, request: ForwardRequest): void {
    const total = tokens.length;
    this.checkChunk(this.kv, tokens);
    for (let start = 0; start < total; start += this.options.batchSize) {
      const n = Math.min(this.options.batchSize, total - start);
      const part = Array.from({ length: n }, (_, i) => tokens[start + i]!);
      const wantLast = request.logits === "last" && start + n === total;
      this.forwardBatch([{
        kv: this.kv,
        tokens: part,
        logits: request.logits === "all" ? "all" : wantLast ? "last" : "none",
        onLogits: (row, logits) => request.onLogits?.(start + row, logits),
      }]);
    }
  }

  /**
   * Evaluates several sequences' tokens in one pass (at most `batchSize` tokens in all, each
   * sequence's cache at most once), appending them to their KV caches, then hands out each one's
   * requested logits. `shouldStop` is asked between layers: when it answers true the pass is
   * abandoned, no cache advances (what was written past a cache's length is ignored) and this
   * returns false.
   */
  forwardBatch(chunks: readonly SequenceChunk[], shouldStop?: () => boolean): boolean {
    const rows: ChunkRows[] = [];
    let n = 0;
    for (const chunk of chunks) {
      if (rows.some((r) => r.chunk.kv === chunk.kv)) throw new Error("forwardBatch: a sequence appears twice in one batch");
      this.checkChunk(chunk.kv, chunk.tokens);
      if (chunk.tokens.length === 0) continue;
      rows.push({ chunk, start: n });
      n += chunk.tokens.length;
    }
    if (n > this.options.batchSize) throw new RangeError(`forwardBatch: ${n} tokens exceed the batch size ${this.options.batchSize}`);
    if (n === 0) return true;
    if (!this.evaluateRows(rows, n, shouldStop)) return false;
    const wanted: { owner: ChunkRows; row: number }[] = [];
    for (const owner of rows) {
      const { chunk } = owner;
      const count = chunk.tokens.length;
      if (chunk.logits === "all") for (let i = 0; i < count; i++) wanted.push({ owner, row: i });
      else if (chunk.logits === "last") wanted.push({ owner, row: count - 1 });
    }
    this.computeLogits(wanted.map((w) => w.owner.start + w.row), (index, logits) => {
      const { owner, row } = wanted[index]!;
      owner.chunk.onLogits?.(row, logits);
    });
    for (const { chunk } of rows) chunk.kv.length += chunk.tokens.length;
    return true;
  }

  private checkChunk(kv: KvCache, tokens: ArrayLike<number>): void {
    if (!this.kvs.includes(kv)) throw new Error("forward: the KV cache is not one of this model's");
    const total = tokens.length;
    if (kv.length + total > kv.contextSize) {
      throw new RangeError(`context full: ${kv.length} + ${total} tokens exceed the context size ${kv.contextSize}`);
    }
    for (let i = 0; i < total; i++) {
      const id = tokens[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new RangeError(`token id ${id} at index ${i} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
      }
    }
  }

  /** Runs every layer over the batch's `n` rows; false if `shouldStop` ended it early. */
  private evaluateRows(rows: readonly ChunkRows[], n: number, shouldStop: (() => boolean) | undefined): boolean {
    const { config, kernels, arena } = this;
    const { hidden, heads, kvHeads, headDim } = config;
    const qWidth = heads * headDim;
    const kvWidth = kvHeads * headDim;
    const positions = arena.i32(this.buffer("positions"), n);
    for (const { chunk, start } of rows) {
      for (let i = 0; i < chunk.tokens.length; i++) positions[start + i] = chunk.kv.length + i;
    }
    ropeTables(positions, headDim, config.ropeBase, this.cosTable, this.sinTable);
    arena.f32(this.buffer("cos"), (n * headDim) / 2).set(this.cosTable.subarray(0, (n * headDim) / 2));
    arena.f32(this.buffer("sin"), (n * headDim) / 2).set(this.sinTable.subarray(0, (n * headDim) / 2));

    const embedRaw = this.buffer("embedRaw");
    for (const { chunk, start } of rows) {
      chunk.tokens.forEach((token, i) => {
        this.file.readTensor(this.weights.embedding, arena.u8(embedRaw + (start + i) * this.embedRowBytes, this.embedRowBytes), token * this.embedRowBytes);
      });
    }
    const hiddenPtr = this.buffer("hidden");
    kernels.dequantizeRows(arena, this.weights.embedding.type, embedRaw, n, hidden, hiddenPtr);

    for (let l = 0; l < config.layers; l++) {
      if (shouldStop?.()) return false;
      const w = this.weights.layers[l]!;
      const plan = config.layerPlan[l]!;
      // The router (on the raw residual) and Q, K, V (on its norm) in one job; then the routing,
      // which starts expert reads before attention.
      const routerX = this.prepare(w.router, hiddenPtr, n, hidden, this.buffer("routerAct"));
      const normed = this.buffer("normed");
      kernels.rmsNorm(arena, hiddenPtr, w.attnNorm, n, hidden, config.rmsEps, normed);
      const products: MatrixProduct[] = [{ w: w.router, x: routerX, y: this.buffer("routerLogits") }];
      const ahead = this.layersToPredict(l, n);
      ahead.forEach((layer, i) => products.push({ w: this.weights.layers[layer]!.router, x: routerX, y: this.predictedLogits + 4 * i * config.experts }));
      const qkv = [[w.q, "q"], [w.k, "k"], [w.v, "v"]] as const;
      const formats = new Map<ActivationFormat, Ptr>();
      for (const [matrix, out] of qkv) {
        const format = activationFormatFor(matrix.type);
        let x = formats.get(format);
        if (x === undefined) {
          if (formats.size > 0) {
            // Another format than Q's: its own product (the act buffer is taken).
            kernels.matmul(matrix, this.prepare(matrix, normed, n, hidden, this.buffer("moeAct")), n, this.buffer(out));
            continue;
          }
          formats.set(format, (x = this.prepare(matrix, normed, n, hidden)));
        }
        products.push({ w: matrix, x, y: this.buffer(out) });
      }
      kernels.matmuls(products, n);
      const routes = this.routeTokens(l, n);
      this.predictExperts(ahead);

      if (plan.rope) {
        kernels.rope(arena, this.buffer("q"), n, heads, headDim, this.buffer("cos"), this.buffer("sin"));
        kernels.rope(arena, this.buffer("k"), n, kvHeads, headDim, this.buffer("cos"), this.buffer("sin"));
      }
      // Each sequence stores its keys and values in its own cache and attends to it alone.
      const params: AttentionParams = { heads, kvHeads, headDim, window: plan.window, scale: Math.fround(1 / Math.sqrt(headDim)) };
      for (const { chunk, start } of rows) {
        const count = chunk.tokens.length;
        const cache = chunk.kv.layers[l]!;
        const at = this.buffer("positions") + 4 * start;
        chunk.kv.noteWrite(chunk.kv.length + count);
        kernels.storeKv(cache, this.buffer("k") + 4 * start * kvWidth, this.buffer("v") + 4 * start * kvWidth, count, at);
        kernels.attention(cache, this.buffer("q") + 4 * start * qWidth, count, at, params, this.buffer("attention") + 4 * start * qWidth);
      }
      kernels.matmul(w.o, this.prepare(w.o, this.buffer("attention"), n, qWidth), n, this.buffer("projected"));
      const residual = this.buffer("residual");
      kernels.add(arena, hiddenPtr, this.buffer("projected"), n * hidden, residual);
      if (shouldStop?.()) return false;

      kernels.rmsNorm(arena, residual, w.ffnNorm, n, hidden, config.rmsEps, normed);
      this.runExperts(l, routes, normed, n);
      kernels.moeCombine(arena, this.buffer("expertOut"), this.buffer("expertWeights"), n, config.expertsUsed, hidden, residual, hiddenPtr);
    }
    this.stats.tokens += n;
    this.experts.advance(n);
    return true;
  }

  /** Top-k of the router logits (computed from the raw residual entering the layer); starts expert reads. */
  private routeTokens(layer: number, n: number): { experts: number[]; weights: number[] }[] {
    const { config, arena } = this;
    const logitsPtr = this.buffer("routerLogits");
    const routes = [];
    const needed = new Set<number>();
    for (let t = 0; t < n; t++) {
      const r = route(arena.f32(logitsPtr + 4 * t * config.experts, config.experts), config.expertsUsed, config.gating);
      routes.push(r);
      for (const e of r.experts) {
        needed.add(e);
        this.stats.routed[layer]![e]!++;
      }
    }
    this.experts.prefetch(layer, [...needed]);
    return routes;
  }

  /**
   * The layers after `layer` whose experts are guessed now, by applying their routers to this
   * layer's input residual: the residual changes little from one layer to the next, and reading
   * the guesses while this layer's experts compute keeps the disk busy. Only for a single token
   * (a batch's tokens together need nearly every expert anyway), and only layers whose router takes
   * the same activation format as this one's.
   */
  private layersToPredict(layer: number, n: number): number[] {
    if (n !== 1) return [];
    const format = activationFormatFor(this.weights.layers[layer]!.router.type);
    const layers = [];
    for (let ahead = layer + 1; ahead <= layer + this.experts.lookahead && ahead < this.config.layers; ahead++) {
      if (activationFormatFor(this.weights.layers[ahead]!.router.type) === format) layers.push(ahead);
    }
    return layers;
  }

  /** Announces the guessed experts of `layers` (logits from `layersToPredict`), nearest layer first. */
  private predictExperts(layers: number[]): void {
    const { config, arena } = this;
    layers.forEach((layer, i) => {
      const logits = arena.f32(this.predictedLogits + 4 * i * config.experts, config.experts);
      this.experts.predict(layer, route(logits, config.expertsUsed, config.gating).experts);
    });
  }

  private runExperts(layer: number, routes: { experts: number[]; weights: number[] }[], normed: Ptr, n: number): void {
    const { config, kernels, arena } = this;
    const { hidden, expertsUsed } = config;
    const users = new Map<number, number[]>();
    const weights = arena.f32(this.buffer("expertWeights"), n * expertsUsed);
    routes.forEach((r, t) => {
      r.experts.forEach((e, slot) => {
        let list = users.get(e);
        if (!list) users.set(e, (list = []));
        list.push(t * expertsUsed + slot);
        weights[t * expertsUsed + slot] = r.weights[slot]!;
      });
    });
    let prepared = false;
    for (const scratch of this.expertScratch.values()) scratch.filled = false;
    const prepareIn = (expertArena: Arena, type: number): ExpertScratch => {
      const scratch = this.scratchFor(expertArena);
      if (!prepared) {
        kernels.prepareActivations(arena, activationFormatFor(type), normed, n, hidden, this.buffer("moeAct"));
        prepared = true;
        this.scratchFor(arena).filled = true;
      }
      if (!scratch.filled) {
        const xBytes = kernels.activationBytes(activationFormatFor(type), hidden) * n;
        expertArena.u8(scratch.x, xBytes).set(arena.u8(this.buffer("moeAct"), xBytes));
        scratch.filled = true;
      }
      return scratch;
    };
    const run = (batch: { expert: number; ref: ExpertRef }[]) => {
      const expertArena = batch[0]!.ref.gate.arena;
      const scratch = prepareIn(expertArena, batch[0]!.ref.gate.type);
      const lists = expertArena.heapI32;
      let offset = scratch.lists >> 2;
      const tasks: ExpertTask[] = [];
      let pairs = 0;
      for (const { expert, ref } of batch) {
        const list = users.get(expert)!;
        const rows = offset;
        for (let i = 0; i < list.length; i++) lists[offset++] = Math.floor(list[i]! / expertsUsed);
        const outRows = offset;
        for (let i = 0; i < list.length; i++) lists[offset++] = list[i]!;
        tasks.push({ expert: ref, rows: rows << 2, outRows: outRows << 2, count: list.length });
        pairs += list.length;
      }
      const active = kernels.expertsForward(tasks, scratch.x, scratch.y, scratch.work, this.options.sparse);
      this.stats.gateActive += active;
      this.stats.gateTotal += pairs * config.expertFfn;
      this.stats.layerActive[layer]! += active;
      this.stats.layerTotal[layer]! += pairs * config.expertFfn;
      if (expertArena !== arena) {
        const out = this.buffer("expertOut");
        for (const { expert } of batch) {
          for (const row of users.get(expert)!) {
            arena.f32(out + 4 * row * hidden, hidden).set(expertArena.f32(scratch.y + 4 * row * hidden, hidden));
          }
        }
      }
    };
    // Experts already in memory first, in batches per arena, giving reads still in flight more
    // time; then the others one at a time as they arrive. Results do not depend on the grouping or
    // the order: each expert's output goes to its own rows before the fixed-order sum.
    // Most tokens first: the biggest tasks start first, balancing the threads' shares.
    const order = [...users.keys()].sort((a, b) => users.get(b)!.length - users.get(a)!.length || a - b);
    const ready = order.filter((e) => this.experts.ready(layer, e));
    const byArena = new Map<Arena, { expert: number; ref: ExpertRef }[]>();
    for (const e of ready) {
      const ref = this.experts.acquire(layer, e);
      let batch = byArena.get(ref.gate.arena);
      if (!batch) byArena.set(ref.gate.arena, (batch = []));
      batch.push({ expert: e, ref });
    }
    for (const batch of byArena.values()) {
      run(batch);
      for (const { expert } of batch) this.experts.release(layer, expert);
    }
    for (const e of order) {
      if (ready.includes(e)) continue;
      const ref = this.experts.acquire(layer, e);
      run([{ expert: e, ref }]);
      this.experts.release(layer, e);
    }
  }

  /** Final norm and output head for the given rows of the last batch; `deliver` gets the index into `rows`. */
  private computeLogits(rows: number[], deliver: (row: number, logits: Float32Array) => void): void {
    const { config, kernels, arena } = this;
    const { hidden, vocabSize } = config;
    const capacity = this.options.logitsRows;
    for (let i = 0; i < rows.length; i += capacity) {
      const group = rows.slice(i, i + capacity);
      const normed = this.buffer("normed");
      group.forEach((row, j) => {
        kernels.rmsNorm(arena, this.buffer("hidden") + 4 * row * hidden, this.weights.outputNorm, 1, hidden, config.rmsEps, normed + 4 * j * hidden);
      });
      const output = this.weights.output;
      kernels.matmul(output, this.prepare(output, normed, group.length, hidden), group.length, this.buffer("logits"));
      group.forEach((_, j) => deliver(i + j, arena.f32(this.buffer("logits") + 4 * j * vocabSize, vocabSize)));
    }
  }
}
