import { receiveMessageOnPort, workerData } from "node:worker_threads";
import { OpCode, Op, runJob } from "./jobs.js";
import { ArenaInstances, MAX_ARGS, SPIN_ROUNDS, Slot, WorkerData } from "./pool.js";

// A pool worker: waits for jobs in the control block (polling briefly, then Atomics.wait), runs its
// share and reports. Arena memories arrive on `port`; they are picked up synchronously when a job
// names an arena this worker has not seen yet.

const { module, control, index, port } = workerData as WorkerData;
const slots = new Int32Array(control, 0, 16);
const args = new Float64Array(control, 64, MAX_ARGS);

const arenas: ArenaInstances = new ArenaInstances(module, (wanted) => {
  for (let message = receiveMessageOnPort(port); message; message = receiveMessageOnPort(port)) {
    const { arena, memory } = message.message as { arena: number; memory: WebAssembly.Memory };
    arenas.attach(arena, memory);
    if (arena === wanted) return;
  }
});

function waitForJob(seen: number): number {
  for (;;) {
    for (let spin = 0; spin < SPIN_ROUNDS; spin++) {
      const seq = Atomics.load(slots, Slot.Seq);
      if (seq !== seen) return seq;
    }
    Atomics.add(slots, Slot.Sleeping, 1);
    Atomics.wait(slots, Slot.Seq, seen);
    Atomics.sub(slots, Slot.Sleeping, 1);
  }
}

port.postMessage("ready");
let seen = 0;
for (;;) {
  seen = waitForJob(seen);
  const op = Atomics.load(slots, Slot.Op) as OpCode;
  if (op === Op.Stop) break;
  const threads = Atomics.load(slots, Slot.Threads);
  if (index < threads) {
    try {
      const count = runJob(arenas, op, args, index, threads);
      if (count) Atomics.add(slots, Slot.Count, count);
    } catch (error) {
      console.error(`wasm kernels worker ${index}:`, error);
      Atomics.store(slots, Slot.Failed, 1);
    }
  }
  Atomics.add(slots, Slot.Done, 1);
  if (Atomics.load(slots, Slot.MainWaiting)) Atomics.notify(slots, Slot.Done);
}
port.close();
