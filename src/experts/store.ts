import { GgufFile } from "../gguf/reader.js";
import { GgmlType, GgufTensorInfo, ggmlRowBytes } from "../gguf/types.js";
import { DownLayout, ExpertRef, Kernels, WeightKind } from "../kernels/api.js";
import { Arena, Ptr } from "../kernels/arena.js";
import { DirectFile } from "./direct-file.js";
import { IoPool, PackStep, RangeRead, alignedRange, DIRECT_ALIGNMENT, supportsDirectIo } from "./io-pool.js";
import { PolicyName, ReplacementPolicy, createPolicy } from "./policy.js";
import { ExpertCounters, ExpertSource } from "./source.js";

export interface ExpertGeometry {
  layers: number;
  experts: number;
  hidden: number;
  ffn: number;
  downLayout: DownLayout;
}

/** Where one expert matrix lies in the model's files and how it is packed. */
interface MatrixSource {
  part: number;
  position: number;
  length: number;
  type: GgmlType;
  rows: number;
  cols: number;
  kind: WeightKind;
}

interface Slot {
  arena: Arena;
  /** Where the packed gate, up and down matrices go, one after another. */
  base: Ptr;
  key: number;
  state: "empty" | "loading" | "ready";
  pins: number;
  staging: Staging | undefined;
  ref: ExpertRef | undefined;
}

interface Staging {
  id: number;
  arena: Arena;
  ptr: Ptr;
  slot: Slot | undefined;
}

export interface ExpertStoreOptions {
  /** How many experts the cache holds. */
  slots: number;
  policy: PolicyName;
  /** Start reads when the router has chosen (before attention); off: read when the expert is needed. */
  prefetch: boolean;
  ioWorkers: number;
  /** Concurrent reads per arena (each needs a staging buffer of one raw expert). */
  ioDepth: number;
  /** Layers ahead to read predicted experts for (0: only the router's actual choices). */
  lookahead: number;
}

const MATRICES = ["gate", "up", "down"] as const;

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** Sizes the expert store needs, for the memory planner. */
export function expertStoreSizes(file: GgufFile, geometry: ExpertGeometry, kernels: Kernels): { slotBytes: number; stagingBytes: number; expertBytes: number } {
  let slotBytes = 0;
  let stagingBytes = 0;
  let expertBytes = 0;
  for (let l = 0; l < geometry.layers; l++) {
    const sources = matrixSources(file, l, 0);
    slotBytes = Math.max(slotBytes, sources.reduce((sum, m) => sum + alignUp(kernels.packedBytes(m.kind, m.type, m.rows, m.cols, geometry.downLayout), DIRECT_ALIGNMENT), 0));
    stagingBytes = Math.max(stagingBytes, sources.reduce((sum, m) => sum + DirectFile.stagingBytes(m.length), 0));
    expertBytes += sources.reduce((sum, m) => sum + m.length, 0) * geometry.experts;
  }
  return { slotBytes, stagingBytes, expertBytes };
}

function matrixSources(file: GgufFile, layer: number, expert: number): MatrixSource[] {
  return MATRICES.map((name) => {
    const info: GgufTensorInfo = file.tensor(`blk.${layer}.ffn_${name}_exps.weight`);
    const cols = info.dims[0]!;
    const rows = info.dims[1]!;
    const length = rows * ggmlRowBytes(info.type, cols);
    return { part: info.part, position: info.offset + expert * length, length, type: info.type, rows, cols, kind: name === "down" ? "expert-down" : "matrix" };
  });
}

/**
 * A fixed pool of expert slots inside the memory budget, filled from the model file. Reads for a
 * layer start when its router has chosen (`prefetch`, before attention) and run on I/O threads,
 * which also pack the experts for the kernels; `acquire` waits only for what has not arrived. A
 * replacement policy decides which cached expert gives way.
 */
export class ExpertStore implements ExpertSource {
  readonly counters: ExpertCounters = { hits: 0, misses: 0, bytesRead: 0, stallMs: 0, predictedReads: 0, predictedUsed: 0 };
  private readonly slots: Slot[] = [];
  private readonly slotOf = new Map<number, Slot>();
  private readonly stagings = new Map<Arena, Staging[]>();
  private readonly io: IoPool;
  private readonly policy: ReplacementPolicy;
  private time = 0;
  /** Experts the layer being computed needs: evicted for one another only when nothing else can go. */
  private protectedKeys = new Set<number>();
  /** Of those, the ones already used: the first to go if it comes to that. */
  private doneKeys = new Set<number>();
  /** Experts read on a guess (`predict`) that their layer has not chosen yet. */
  private readonly guessed = new Set<number>();
  private readonly geometry: ExpertGeometry;

  constructor(
    private readonly file: GgufFile,
    geometry: ExpertGeometry,
    private readonly kernels: Kernels,
    arenas: Arena[],
    /** Bytes to leave free in each arena for the model's other buffers there. */
    arenaHeadroom: number,
    readonly options: ExpertStoreOptions,
  ) {
    this.geometry = geometry;
    const sizes = expertStoreSizes(file, geometry, kernels);
    const totalKeys = geometry.layers * geometry.experts;
    if (options.slots < 1) throw new RangeError("the expert cache needs at least one slot");
    this.policy = createPolicy(options.policy, totalKeys);
    const stagingCount = Math.max(1, options.ioDepth);
    this.io = new IoPool(file.paths, file.paths.every(supportsDirectIo), Math.max(1, options.ioWorkers), 16 * stagingCount, kernels.packer);
    let arena = arenas[arenas.length - 1]!;
    const perArena = (a: Arena) => {
      if (!this.stagings.has(a)) {
        const list: Staging[] = [];
        for (let i = 0; i < stagingCount; i++) {
          list.push({ id: this.stagings.size * stagingCount + i, arena: a, ptr: a.alloc(sizes.stagingBytes, DIRECT_ALIGNMENT), slot: undefined });
        }
        this.stagings.set(a, list);
        this.io.attach(a);
      }
    };
    perArena(arena);
    for (let i = 0; i < options.slots; i++) {
      if (arena.available < sizes.slotBytes + arenaHeadroom) {
        arena = kernels.createArena();
        arenas.push(arena);
        perArena(arena);
      }
      const base = arena.alloc(sizes.slotBytes, DIRECT_ALIGNMENT);
      this.slots.push({ arena, base, key: -1, state: "empty", pins: 0, staging: undefined, ref: undefined });
    }
  }

  get lookahead(): number {
    return this.options.prefetch ? this.options.lookahead : 0;
  }

  predict(layer: number, experts: readonly number[]): void {
    if (!this.options.prefetch) return;
    for (const expert of experts) {
      const key = layer * this.geometry.experts + expert;
      if (this.slotOf.has(key)) continue;
      // Only into idle readers: a guess must not delay a read the current layer waits for.
      if (!this.hasIdleStaging()) return;
      if (!this.startLoad(key, false)) return;
      this.guessed.add(key);
      this.counters.predictedReads++;
    }
  }

  /** Whether a read can start in whichever arena the next slot is in, without waiting. */
  private hasIdleStaging(): boolean {
    for (const list of this.stagings.values()) if (!list.some((s) => !s.slot)) return false;
    return true;
  }

  /** A new chunk of `tokens` tokens begins (the policy's clock). */
  advance(tokens: number): void {
    this.time += tokens;
  }

  ready(layer: number, expert: number): boolean {
    return this.slotOf.get(layer * this.geometry.experts + expert)?.state === "ready";
  }

  prefetch(layer: number, experts: readonly number[]): void {
    this.pump();
    const keys = experts.map((e) => layer * this.geometry.experts + e);
    this.protectedKeys = new Set(keys);
    this.doneKeys = new Set();
    let room = this.options.prefetch;
    for (const key of keys) {
      if (this.slotOf.has(key)) {
        this.counters.hits++;
        if (this.guessed.delete(key)) this.counters.predictedUsed++;
        continue;
      }
      this.counters.misses++;
      // A batch can need more experts than the cache holds: prefetch what fits, load the rest on use.
      if (room) room = this.startLoad(key, false) !== undefined;
    }
  }

  acquire(layer: number, expert: number): ExpertRef {
    const key = layer * this.geometry.experts + expert;
    let slot = this.slotOf.get(key);
    if (!slot) {
      if (!this.protectedKeys.has(key)) {
        // Used without being announced: count it here.
        this.counters.misses++;
        this.protectedKeys.add(key);
      }
      slot = this.startLoad(key, true)!;
    }
    if (slot.state === "loading") this.finishLoad(slot);
    slot.pins++;
    this.policy.touch(key, this.time);
    return slot.ref!;
  }

  release(layer: number, expert: number): void {
    const key = layer * this.geometry.experts + expert;
    const slot = this.slotOf.get(key);
    if (slot && slot.pins > 0) slot.pins--;
    this.doneKeys.add(key);
  }

  /** Packs loads that have arrived, freeing their staging buffers early. */
  private pump(): void {
    for (const list of this.stagings.values()) {
      for (const staging of list) if (staging.slot && this.io.isDone(staging.id)) this.finishLoad(staging.slot);
    }
  }

  /**
   * A slot for a new expert, evicting the policy's choice among unpinned cached experts that the
   * current layer does not need. `urgent` (the expert is needed now) may also take a slot of this
   * layer's experts, used ones first, and wait for reads in flight; otherwise undefined when full.
   */
  private takeSlot(urgent: boolean): Slot | undefined {
    const empty = this.slots.find((s) => s.state === "empty");
    if (empty) return empty;
    for (;;) {
      const free = (accept: (key: number) => boolean) => {
        const keys: number[] = [];
        for (const slot of this.slots) if (slot.state === "ready" && slot.pins === 0 && accept(slot.key)) keys.push(slot.key);
        return keys;
      };
      let candidates = free((key) => !this.protectedKeys.has(key));
      if (candidates.length === 0 && urgent) candidates = free((key) => this.doneKeys.has(key));
      if (candidates.length === 0 && urgent) candidates = free(() => true);
      if (candidates.length > 0) {
        const victim = this.slotOf.get(this.policy.victim(candidates, this.time))!;
        this.slotOf.delete(victim.key);
        this.guessed.delete(victim.key);
        victim.key = -1;
        victim.state = "empty";
        victim.ref = undefined;
        return victim;
      }
      const loading = this.slots.find((s) => s.state === "loading");
      if (!urgent) return undefined;
      if (!loading) throw new Error(`the expert cache of ${this.slots.length} slots is too small: every slot is pinned`);
      this.finishLoad(loading);
    }
  }

  private takeStaging(arena: Arena): Staging {
    const list = this.stagings.get(arena)!;
    for (;;) {
      const free = list.find((s) => !s.slot);
      if (free) return free;
      this.finishLoad(list.find((s) => s.slot)!.slot!);
    }
  }

  private startLoad(key: number, urgent: boolean): Slot | undefined {
    const slot = this.takeSlot(urgent);
    if (!slot) return undefined;
    const layer = Math.floor(key / this.geometry.experts);
    const expert = key % this.geometry.experts;
    const staging = this.takeStaging(slot.arena);
    const { downLayout } = this.geometry;
    const reads: RangeRead[] = [];
    const packs: PackStep[] = [];
    const ptrs: Ptr[] = [];
    let rawOffset = 0;
    let packedOffset = 0;
    const sources = matrixSources(this.file, layer, expert);
    for (const source of sources) {
      const range = alignedRange(source.position, source.length);
      reads.push({ part: source.part, position: range.position, length: range.length, ptr: staging.ptr + rawOffset });
      const dst = slot.base + packedOffset;
      packs.push({ kind: source.kind, type: source.type, rows: source.rows, cols: source.cols, src: staging.ptr + rawOffset + range.offset, dst, layout: downLayout });
      ptrs.push(dst);
      rawOffset += range.length;
      packedOffset += alignUp(this.kernels.packedBytes(source.kind, source.type, source.rows, source.cols, downLayout), DIRECT_ALIGNMENT);
      this.counters.bytesRead += source.length;
    }
    this.io.submit(staging.id, slot.arena, reads, packs);
    const [gate, up, down] = sources as [MatrixSource, MatrixSource, MatrixSource];
    const arena = slot.arena;
    slot.ref = {
      gate: { arena, ptr: ptrs[0]!, type: gate.type, rows: gate.rows, cols: gate.cols },
      up: { arena, ptr: ptrs[1]!, type: up.type, rows: up.rows, cols: up.cols },
      down: { arena, ptr: ptrs[2]!, type: down.type, layout: downLayout, hidden: this.geometry.hidden, ffn: this.geometry.ffn },
    };
    staging.slot = slot;
    slot.staging = staging;
    slot.key = key;
    slot.state = "loading";
    this.slotOf.set(key, slot);
    return slot;
  }

  /** Waits for a slot's read (and packing, done by the reader) to complete. */
  private finishLoad(slot: Slot): void {
    const staging = slot.staging!;
    const waitStart = performance.now();
    this.io.wait(staging.id);
    this.counters.stallMs += performance.now() - waitStart;
    slot.state = "ready";
    slot.staging = undefined;
    staging.slot = undefined;
  }

  dispose(): void {
    void this.io.close();
  }
}
