import { MessageChannel, MessagePort, Worker } from "node:worker_threads";
import { KernelExports, instantiate } from "./exports.js";
import { JobArgs, JobContext, OpCode, runUnit } from "./jobs.js";

/**
 * The control block the main thread and the workers share: Int32 slots, then f64 job arguments.
 *
 * A job is a number of units that any thread may claim. The main thread publishes it (arguments, then
 * `Claim` = job id << 16, then bumps `Seq`) and starts claiming itself; woken workers claim too. A
 * claim is a compare-exchange on `Claim`, which carries the job id, so a late worker can never take a
 * unit of a job that has moved on. Whoever finishes a unit bumps `Completed`; the main thread
 * returns when all units are completed. If a worker is slow to wake (another process holds the
 * core), the main thread simply runs more of the units itself.
 */
export const Slot = {
  Seq: 0,
  /** (job id & 0xffff) << 16 | next unclaimed unit. */
  Claim: 1,
  Units: 2,
  Completed: 3,
  /** Workers blocked in Atomics.wait on Seq (the main thread notifies only when some are). */
  Sleeping: 4,
  /** The main thread is blocked in Atomics.wait on Completed. */
  MainWaiting: 5,
  Op: 6,
  /** Sum of the counts units return (expert active neurons). */
  Count: 7,
  /** Set when a worker's unit threw. */
  Failed: 8,
  Stop: 9,
} as const;
const SLOTS = 16;
const ARGS_OFFSET = 4 * SLOTS;
export const MAX_ARGS = 24;
const CONTROL_BYTES = ARGS_OFFSET + 8 * MAX_ARGS;
/** Units are numbered in the low 16 bits of `Claim`. */
export const MAX_UNITS = 0xffff;

/**
 * How long to poll before sleeping: a few tens of microseconds, so the back-to-back kernels of a
 * decode step hand over without a system call, while a core another process needs is given back soon.
 */
export const SPIN_ROUNDS = 1 << 13;

export interface ControlViews {
  slots: Int32Array;
  args: Float64Array;
}

export function controlViews(control: SharedArrayBuffer): ControlViews {
  return { slots: new Int32Array(control, 0, SLOTS), args: new Float64Array(control, ARGS_OFFSET, MAX_ARGS) };
}

/**
 * Claims and runs units of job `seq` until none is left, adding their counts to `Count` before
 * reporting each unit completed. Used by the main thread and the workers alike; a worker's failure
 * is recorded in `Failed` (the main thread's own is thrown, after the job completes).
 */
export function claimAndRun(views: ControlViews, context: JobContext, seq: number, participant: number): void {
  const { slots, args } = views;
  const id = (seq & 0xffff) << 16;
  for (;;) {
    const claim = Atomics.load(slots, Slot.Claim);
    if ((claim & ~0xffff) !== id) return;
    const unit = claim & 0xffff;
    const units = Atomics.load(slots, Slot.Units);
    if (unit >= units) return;
    if (Atomics.compareExchange(slots, Slot.Claim, claim, claim + 1) !== claim) continue;
    // The job cannot move on before this unit completes, so its op and arguments are still current.
    try {
      const count = runUnit(context, Atomics.load(slots, Slot.Op) as OpCode, args, unit, units, participant);
      if (count) Atomics.add(slots, Slot.Count, count);
    } catch (error) {
      if (participant === 0) throw error;
      console.error(`wasm kernels worker ${participant}:`, error);
      Atomics.store(slots, Slot.Failed, 1);
    } finally {
      Atomics.add(slots, Slot.Completed, 1);
      if (Atomics.load(slots, Slot.MainWaiting)) Atomics.notify(slots, Slot.Completed);
    }
  }
}

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

/** The main thread's side of the pool. */
export class WorkerPool {
  private readonly control = new SharedArrayBuffer(CONTROL_BYTES);
  private readonly views = controlViews(this.control);
  private readonly workers: Worker[] = [];
  private readonly ports: MessagePort[] = [];
  private readonly exited: Promise<void>[] = [];
  private seq = 0;

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
    const started = this.ports.map((port) => new Promise<void>((resolve) => port.once("message", () => {
      port.unref();
      resolve();
    })));
    return Promise.all(started).then(() => undefined);
  }

  /** Makes an arena's memory known to every worker (they instantiate it when a job first names it). */
  attach(arena: number, memory: WebAssembly.Memory): void {
    for (const port of this.ports) port.postMessage({ arena, memory });
  }

  /** Runs a job of `units` units (1: on the calling thread, no hand-over); returns the summed counts. */
  run(op: OpCode, args: JobArgs, units = 1): number {
    if (units <= 1 || this.workers.length === 0) {
      let count = 0;
      for (let unit = 0; unit < units; unit++) count += runUnit(this.main, op, args, unit, units, 0);
      return count;
    }
    if (args.length > MAX_ARGS || units > MAX_UNITS) throw new Error(`wasm kernels: job of ${args.length} arguments, ${units} units`);
    const { slots } = this.views;
    for (let i = 0; i < args.length; i++) this.views.args[i] = args[i]!;
    const seq = ++this.seq;
    Atomics.store(slots, Slot.Op, op);
    Atomics.store(slots, Slot.Units, units);
    Atomics.store(slots, Slot.Completed, 0);
    Atomics.store(slots, Slot.Count, 0);
    Atomics.store(slots, Slot.Claim, (seq & 0xffff) << 16);
    Atomics.store(slots, Slot.Seq, seq);
    if (Atomics.load(slots, Slot.Sleeping) > 0) Atomics.notify(slots, Slot.Seq);
    try {
      claimAndRun(this.views, this.main, seq, 0);
    } finally {
      this.waitForCompletion(units);
    }
    if (Atomics.load(slots, Slot.Failed)) {
      Atomics.store(slots, Slot.Failed, 0);
      throw new Error("wasm kernels: a worker's unit failed (see its error output)");
    }
    return Atomics.load(slots, Slot.Count);
  }

  private waitForCompletion(units: number): void {
    const { slots } = this.views;
    for (let spin = 0; spin < SPIN_ROUNDS; spin++) if (Atomics.load(slots, Slot.Completed) === units) return;
    Atomics.store(slots, Slot.MainWaiting, 1);
    for (let done = Atomics.load(slots, Slot.Completed); done !== units; done = Atomics.load(slots, Slot.Completed)) {
      Atomics.wait(slots, Slot.Completed, done);
    }
    Atomics.store(slots, Slot.MainWaiting, 0);
  }

  async dispose(): Promise<void> {
    if (this.workers.length === 0) return;
    const { slots } = this.views;
    Atomics.store(slots, Slot.Stop, 1);
    Atomics.store(slots, Slot.Seq, ++this.seq);
    Atomics.notify(slots, Slot.Seq);
    await Promise.all(this.exited);
    for (const port of this.ports) port.close();
  }
}
