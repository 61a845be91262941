import { closeSync, constants, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import type { IoRequest, IoWorkerData, IoWorkerMessage } from "./io-pool.js";
import { IoStatus } from "./io-pool.js";

/**
 * Reads ranges of the model file straight into arena memory (O_DIRECT where the file system allows,
 * so the page cache stays out of the memory budget), then marks the request done in shared memory
 * so the compute thread can wait on it with Atomics without an event loop.
 */
const { path, direct, status, errors } = workerData as IoWorkerData;
const statusView = new Int32Array(status);
const errorView = new Int32Array(errors);
const memories = new Map<number, WebAssembly.Memory>();
const fd = openSync(path, direct ? constants.O_RDONLY | constants.O_DIRECT : constants.O_RDONLY);

function perform(request: IoRequest): void {
  try {
    const memory = memories.get(request.arena);
    if (!memory) throw new Error(`arena ${request.arena} not attached`);
    const bytes = new Uint8Array(memory.buffer);
    for (const read of request.reads) {
      let done = 0;
      while (done < read.length) {
        const n = readSync(fd, bytes, read.ptr + done, read.length - done, read.position + done);
        if (n === 0) break; // end of file: the aligned tail beyond it is not needed
        done += n;
      }
    }
    Atomics.store(statusView, request.id, IoStatus.done);
  } catch (error) {
    Atomics.store(errorView, request.id, Math.abs((error as NodeJS.ErrnoException).errno ?? 1));
    Atomics.store(statusView, request.id, IoStatus.failed);
  }
  Atomics.notify(statusView, request.id);
}

parentPort!.on("message", (message: IoWorkerMessage) => {
  if (message.type === "arena") memories.set(message.index, message.memory);
  else if (message.type === "read") perform(message.request);
  else {
    closeSync(fd);
    parentPort!.close();
  }
});
