import { MessageChannel, MessagePort, Worker } from "node:worker_threads";
import { KernelExports, instantiate } from "./exports.js";
import { JobArgs, JobContext, Op, OpCode, runJob } from "./jobs.js";

/**
 * The control block the main thread and the workers share (Int32 slots, then f64 job arguments).
 * A job is published by bumping `Seq`; each worker bumps `Done` when its share is finished.
 */
export const Slot = {
  Seq: 0,
  Done: 1,
  /** Workers blocked in Atomics.wait on Seq (the main thread notifies only when some are). */
  Sleeping: 2,
  /** The main thread is blocked in Atomics.wait on Done. */
  MainWaiting: 3,
  Op: 4,
  Threads: 5,
  /** Sum of the counts the participants return (expert active neurons). */
  Count: 6,
  /** Set by a worker whose share threw. */
  Failed: 7,
} as const;
const ARGS_OFFSET = 64;
export const MAX_ARGS = 24;
export const CONTROL_BYTES = ARGS_OFFSET + 8 * MAX_ARGS;

/**
 * How long to poll before sleeping: a few tens of microseconds, so back-to-back kernels of a decode
 * step hand over in well under a microsecond, while a core another process needs is given back soon.
 */
export const SPIN_ROUNDS = 1 << 14;

/** Instances per arena for one thread (arenas join later as they are created). */
export class ArenaInstances implements JobContext {
  private readonly instances = new Map<number, KernelExports>();
  private readonly memories = new Map<number, WebAssembly.Memory>();

  constructor(private readonly module: WebAssembly.Module, private readonly onMissing?: (arena: number) => void) {}

  attach(arena: number, memory: WebAssembly.Memory): KernelExports {
    const exports = instantiate(this.module, memory);
    this.instances.set(arena, exports);
    this.memories.set(arena, memory);
    return exports;
  }

  instance(arena: number): KernelExports {
    let exports = this.instances.get(arena);
    if (!exports) {
      this.onMissing?.(arena);
      exports = this.instances.get(arena);
      if (!exports) throw new Error(`wasm kernels: arena ${arena} was not created by these kernels`);
    }
    return exports;
  }

  memory(arena: number): WebAssembly.Memory {
    this.instance(arena);
    return this.memories.get(arena)!;
  }
}

export interface WorkerData {
  module: WebAssembly.Module;
  control: SharedArrayBuffer;
  index: number;
  port: MessagePort;
}

/** Main thread's side of the pool: publishes jobs, runs share 0, waits for the workers. */
export class WorkerPool {
  private readonly control = new SharedArrayBuffer(CONTROL_BYTES);
  private readonly slots = new Int32Array(this.control, 0, ARGS_OFFSET / 4);
  private readonly args = new Float64Array(this.control, ARGS_OFFSET, MAX_ARGS);
  private readonly workers: Worker[] = [];
  private readonly ports: MessagePort[] = [];
  private readonly exited: Promise<void>[] = [];

  constructor(module: WebAssembly.Module, readonly threads: number, readonly main: ArenaInstances) {
    for (let index = 1; index < threads; index++) {
      const { port1, port2 } = new MessageChannel();
      const data: WorkerData = { module, control: this.control, index, port: port2 };
      const worker = new Worker(new URL("./worker.js", import.meta.url), { workerData: data, transferList: [port2] });
      worker.unref();
      this.exited.push(new Promise((resolve) => worker.once("exit", () => resolve())));
      this.workers.push(worker);
      this.ports.push(port1);
    }
  }

  /** Resolves once every worker runs its job loop. */
  ready(): Promise<void> {
    return Promise.all(this.ports.map((port) => new Promise<void>((resolve) => port.once("message", () => {
      port.unref();
      resolve();
    })))).then(() => {});
  }

  /** Makes an arena's memory known to every worker (they instantiate on first use). */
  attach(arena: number, memory: WebAssembly.Memory): void {
    for (const port of this.ports) port.postMessage({ arena, memory });
  }

  /**
   * Runs a job on `threads` participants (1 = the main thread alone, no hand-over) and returns the
   * sum of their counts.
   */
  run(op: OpCode, args: JobArgs, threads = this.threads): number {
    if (threads <= 1 || this.workers.length === 0) return runJob(this.main, op, args, 0, 1);
    if (args.length > MAX_ARGS) throw new Error(`wasm kernels: job with ${args.length} arguments`);
    const slots = this.slots;
    for (let i = 0; i < args.length; i++) this.args[i] = args[i]!;
    Atomics.store(slots, Slot.Op, op);
    Atomics.store(slots, Slot.Threads, threads);
    Atomics.store(slots, Slot.Done, 0);
    Atomics.store(slots, Slot.Count, 0);
    Atomics.add(slots, Slot.Seq, 1);
    if (Atomics.load(slots, Slot.Sleeping) > 0) Atomics.notify(slots, Slot.Seq);
    let count: number;
    try {
      count = runJob(this.main, op, args, 0, threads);
    } finally {
      this.waitForWorkers();
    }
    if (Atomics.load(slots, Slot.Failed)) {
      Atomics.store(slots, Slot.Failed, 0);
      throw new Error("wasm kernels: a worker failed (see its error output)");
    }
    return count + Atomics.load(slots, Slot.Count);
  }

  private waitForWorkers(): void {
    const slots = this.slots;
    const expected = this.workers.length;
    for (let spin = 0; spin < SPIN_ROUNDS; spin++) if (Atomics.load(slots, Slot.Done) === expected) return;
    Atomics.store(slots, Slot.MainWaiting, 1);
    for (let done = Atomics.load(slots, Slot.Done); done !== expected; done = Atomics.load(slots, Slot.Done)) {
      Atomics.wait(slots, Slot.Done, done);
    }
    Atomics.store(slots, Slot.MainWaiting, 0);
  }

  async dispose(): Promise<void> {
    if (this.workers.length === 0) return;
    Atomics.store(this.slots, Slot.Op, Op.Stop);
    Atomics.add(this.slots, Slot.Seq, 1);
    Atomics.notify(this.slots, Slot.Seq);
    await Promise.all(this.exited);
    for (const port of this.ports) port.close();
  }
}
