import { receiveMessageOnPort, workerData } from "node:worker_threads";
import { ArenaInstances, SLEEP_CHECK_MS, Slot, WorkerData, claimAndRun, controlViews, spinWhileEqual } from "./pool.js";

// A pool worker: waits for a job to be published (polling briefly, then Atomics.wait) and claims
// units until none is left. Arena memories arrive on `port` and are picked up synchronously when a
// unit names an arena this worker has not seen yet.

const { module, control, index, port } = workerData as WorkerData;
const views = controlViews(control);
const { slots } = views;

const arenas: ArenaInstances = new ArenaInstances(module, (wanted) => {
  for (let message = receiveMessageOnPort(port); message; message = receiveMessageOnPort(port)) {
    const { arena, memory } = message.message as { arena: number; memory: WebAssembly.Memory };
    arenas.attach(arena, memory);
    if (arena === wanted) return;
  }
});

function waitForJob(seen: number): number {
  for (;;) {
    const seq = spinWhileEqual(slots, Slot.Seq, seen);
    if (seq !== seen) return seq;
    Atomics.add(slots, Slot.Sleeping, 1);
    Atomics.wait(slots, Slot.Seq, seen, SLEEP_CHECK_MS);
    Atomics.sub(slots, Slot.Sleeping, 1);
  }
}

port.postMessage("ready");
for (let seen = 0; ;) {
  seen = waitForJob(seen);
  if (Atomics.load(slots, Slot.Stop)) break;
  claimAndRun(views, arenas, seen, index, (error) => port.postMessage({ failure: error instanceof Error ? error.message : String(error) }));
}
port.close();
