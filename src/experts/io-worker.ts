import { parentPort, workerData } from "node:worker_threads";
import { openPartReader } from "../gguf/part-reader.js";
import type { CreatePacker, PackFunction } from "../kernels/packer.js";
import type { IoRequest, IoWorkerData, IoWorkerMessage } from "./io-pool.js";
import { IoStatus } from "./io-pool.js";

/**
 * Reads ranges of the model's files straight into arena memory (O_DIRECT where the file system allows,
 * so the page cache stays out of the memory budget), packs them with the kernels' own packer, then
 * marks the request done in shared memory so the compute thread can wait on it with Atomics without
 * an event loop.
 */
const { paths, direct, status, errors, packer } = workerData as IoWorkerData;
const statusView = new Int32Array(status);
const errorView = new Int32Array(errors);
const createPacker = ((await import(packer.url)) as { createPacker: CreatePacker }).createPacker;
const arenas = new Map<number, { memory: WebAssembly.Memory; pack: PackFunction }>();
const reader = openPartReader(paths, { direct });

function perform(request: IoRequest): void {
  try {
    const arena = arenas.get(request.arena);
    if (!arena) throw new Error(`arena ${request.arena} not attached`);
    const bytes = new Uint8Array(arena.memory.buffer);
    // A read may end short at the end of its part: the aligned tail beyond it is not needed.
    for (const read of request.reads) reader.read(read.part, read.position, bytes.subarray(read.ptr, read.ptr + read.length));
    for (const step of request.packs) arena.pack(step.kind, step.type, step.rows, step.cols, step.src, step.dst, step.layout);
    Atomics.store(statusView, request.id, IoStatus.done);
  } catch (error) {
    Atomics.store(errorView, request.id, Math.abs((error as NodeJS.ErrnoException).errno ?? 1));
    Atomics.store(statusView, request.id, IoStatus.failed);
  }
  Atomics.notify(statusView, request.id);
}

parentPort!.on("message", (message: IoWorkerMessage) => {
  if (message.type === "arena") arenas.set(message.index, { memory: message.memory, pack: createPacker(message.memory, message.scratch, packer.options) });
  else if (message.type === "read") perform(message.request);
  else {
    reader.close();
    parentPort!.close();
  }
});
