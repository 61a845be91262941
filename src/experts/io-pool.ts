import { constants, closeSync, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { Arena, Ptr } from "../kernels/arena.js";
import type { DownLayout, WeightKind } from "../kernels/api.js";
import type { PackerDescriptor } from "../kernels/packer.js";
import type { GgmlType } from "../gguf/types.js";

export const IoStatus = { idle: 0, pending: 1, done: 2, failed: 3 } as const;

/** Direct I/O moves whole 4 KiB sectors between 4 KiB-aligned file offsets and addresses. */
export const DIRECT_ALIGNMENT = 4096;

/** Bytes [position, position + length) of part `part` of the model, read to `ptr`. */
export interface RangeRead {
  part: number;
  position: number;
  length: number;
  ptr: Ptr;
}

/** Packing of data read by the same request, done by the reader once the reads are complete. */
export interface PackStep {
  kind: WeightKind;
  type: GgmlType;
  rows: number;
  cols: number;
  src: Ptr;
  dst: Ptr;
  layout: DownLayout;
}

export interface IoRequest {
  id: number;
  arena: number;
  reads: RangeRead[];
  packs: PackStep[];
}

export interface IoWorkerData {
  /** The model's files (GgufFile.paths): RangeRead.part indexes them. */
  paths: readonly string[];
  direct: boolean;
  status: SharedArrayBuffer;
  errors: SharedArrayBuffer;
  packer: PackerDescriptor;
}

export type IoWorkerMessage =
  | { type: "arena"; index: number; memory: WebAssembly.Memory; scratch: Ptr }
  | { type: "read"; request: IoRequest }
  | { type: "close" };

/** Whether the file can be opened with O_DIRECT (not on tmpfs, for instance). */
export function supportsDirectIo(path: string): boolean {
  try {
    closeSync(openSync(path, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

/**
 * The part of a file range that direct I/O must transfer: `[start, start + length)` of the file,
 * widened to sector boundaries. `offset` is where the wanted bytes begin inside the transfer.
 */
export function alignedRange(position: number, length: number): { position: number; length: number; offset: number } {
  const start = Math.floor(position / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
  const end = Math.ceil((position + length) / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
  return { position: start, length: end - start, offset: position - start };
}

/**
 * Worker threads that read file ranges into arenas in the background and pack what they read into
 * the kernels' layout, so neither the reading nor the packing holds up the compute threads. Each
 * request has a slot in a shared status array: `submit` starts it, `wait` blocks (Atomics.wait, no
 * event loop needed) until it is done.
 */
export class IoPool {
  private readonly workers: Worker[];
  private readonly status: Int32Array;
  private readonly errors: Int32Array;
  private next = 0;
  private readonly attached = new Set<Arena>();

  constructor(readonly paths: readonly string[], readonly direct: boolean, workers: number, readonly slots: number, private readonly packer: PackerDescriptor) {
    const status = new SharedArrayBuffer(4 * slots);
    const errors = new SharedArrayBuffer(4 * slots);
    this.status = new Int32Array(status);
    this.errors = new Int32Array(errors);
    const data: IoWorkerData = { paths, direct, status, errors, packer };
    this.workers = Array.from({ length: workers }, () => {
      const worker = new Worker(new URL("./io-worker.js", import.meta.url), { workerData: data });
      worker.unref();
      return worker;
    });
  }

  /** Bytes `attach` takes from each arena (packing scratch for every reader). */
  scratchBytesPerArena(): number {
    return this.workers.length * this.packer.scratchBytes;
  }

  attach(arena: Arena): void {
    if (this.attached.has(arena)) return;
    this.attached.add(arena);
    for (const worker of this.workers) {
      const scratch = this.packer.scratchBytes > 0 ? arena.alloc(this.packer.scratchBytes) : 0;
      worker.postMessage({ type: "arena", index: arena.index, memory: arena.memory, scratch } satisfies IoWorkerMessage);
    }
  }

  /** Starts reading `reads` into `arena`, then packing `packs`, under request slot `id` (which must not be pending). */
  submit(id: number, arena: Arena, reads: RangeRead[], packs: PackStep[] = []): void {
    this.attach(arena);
    if (Atomics.load(this.status, id) === IoStatus.pending) throw new Error(`I/O slot ${id} is still pending`);
    Atomics.store(this.status, id, IoStatus.pending);
    const worker = this.workers[this.next++ % this.workers.length]!;
    worker.postMessage({ type: "read", request: { id, arena: arena.index, reads, packs } } satisfies IoWorkerMessage);
  }

  isDone(id: number): boolean {
    return Atomics.load(this.status, id) !== IoStatus.pending;
  }

  /** Blocks until request `id` has finished; throws if the read failed. */
  wait(id: number): void {
    while (Atomics.load(this.status, id) === IoStatus.pending) Atomics.wait(this.status, id, IoStatus.pending);
    if (Atomics.load(this.status, id) === IoStatus.failed) {
      const errno = Atomics.load(this.errors, id);
      Atomics.store(this.status, id, IoStatus.idle);
      throw new Error(`reading ${this.paths.join(", ")} failed (errno ${errno})`);
    }
    Atomics.store(this.status, id, IoStatus.idle);
  }

  async close(): Promise<void> {
    for (const worker of this.workers) worker.postMessage({ type: "close" } satisfies IoWorkerMessage);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
