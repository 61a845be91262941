import { MessageChannel, MessagePort, Worker, receiveMessageOnPort } from "node:worker_threads";
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
 * How long to poll before sleeping, in ms: long enough that the kernels of a decode step, a few
 * microseconds of JS apart, hand over without a system call (waking a sleeping thread costs tens of
 * microseconds here), short enough to give a core that another process needs back soon.
 */
export const SPIN_MS = 0.1;

/** Sleepers look again after this long even if not notified (insurance: notifications are not missed). */
export const SLEEP_CHECK_MS = 100;

/** Polls `slot` until it differs from `value` or SPIN_MS pass; returns the last value read. */
export function spinWhileEqual(slots: Int32Array, slot: number, value: number): number {
  const deadline = performance.now() + SPIN_MS;
  for (let round = 1; ; round++) {
    const current = Atomics.load(slots, slot);
    if (current !== value) return current;
    // Reading the clock costs far more than a load: look at it now and then.
    if ((round & 255) === 0 && performance.now() > deadline) return current;
  }
}

export interface ControlViews {
  slots: Int32Array;
  args: Float64Array;
}

export function controlViews(control: SharedArrayBuffer): ControlViews {
  return { slots: new Int32Array(control, 0, SLOTS), args: new Float64Array(control, ARGS_OFFSET, MAX_ARGS) };
}

/**
 * Claims and runs units of job `seq` until none is left, adding their counts to `Count` before
 * reporting each unit completed. Used by the main thread and the workers alike. A worker reports its
 * failure (`report`) and sets `Failed`; after its own failure the main thread still claims (without
 * running) the units left, so the job completes, and throws once it has.
 */
export function claimAndRun(views: ControlViews, context: JobContext, seq: number, participant: number,
  report?: (error: unknown) => void): void {
  const { slots, args } = views;
  const id = (seq & 0xffff) << 16;
  let failure: unknown;
  for (;;) {
    const claim = Atomics.load(slots, Slot.Claim);
    if ((claim & ~0xffff) !== id) break;
    const unit = claim & 0xffff;
    const units = Atomics.load(slots, Slot.Units);
    if (unit >= units) break;
    if (Atomics.compareExchange(slots, Slot.Claim, claim, claim + 1) !== claim) continue;
    // The job cannot move on before this unit completes, so its op and arguments are still current.
    try {
      if (failure === undefined) {
        const count = runUnit(context, Atomics.load(slots, Slot.Op) as OpCode, args, unit, units, participant);
        if (count) Atomics.add(slots, Slot.Count, count);
      }
    } catch (error) {
      if (report) {
        report(error);
        Atomics.store(slots, Slot.Failed, 1);
      } else {
        failure = error;
      }
    } finally {
      Atomics.add(slots, Slot.Completed, 1);
      if (Atomics.load(slots, Slot.MainWaiting)) Atomics.notify(slots, Slot.Completed);
    }
  }
  if (failure !== undefined) throw failure;
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
    const seq = ++this.seq;
    // Close the claims first: a worker still looking at the previous job (whose id the old Claim
    // carries) must not claim a unit while Op, Units and the arguments change under it.
    Atomics.store(slots, Slot.Claim, ((seq & 0xffff) << 16) | MAX_UNITS);
    for (let i = 0; i < args.length; i++) this.views.args[i] = args[i]!;
    Atomics.store(slots, Slot.Op, op);
    Atomics.store(slots, Slot.Units, units);
    Atomics.store(slots, Slot.Completed, 0);
    Atomics.store(slots, Slot.Count, 0);
    Atomics.store(slots, Slot.Claim, (seq & 0xffff) << 16);
    Atomics.store(slots, Slot.Seq, seq);
    if (Atomics.load(slots, Slot.Sleeping) > 0) Atomics.notify(slots, Slot.Seq);
    let failure: unknown;
    try {
      claimAndRun(this.views, this.main, seq, 0);
    } catch (error) {
      failure = error;
    } finally {
      this.waitForCompletion(units);
    }
    const reports = this.workerFailures();
    if (failure !== undefined) throw failure;
    if (reports.length > 0) throw new Error(`wasm kernels: a worker's unit failed: ${reports.join("; ")}`);
    return Atomics.load(slots, Slot.Count);
  }

  /** Failures workers reported during the last job (clearing them). */
  private workerFailures(): string[] {
    const { slots } = this.views;
    if (!Atomics.load(slots, Slot.Failed)) return [];
    Atomics.store(slots, Slot.Failed, 0);
    const reports: string[] = [];
    for (const port of this.ports) {
      for (let received = receiveMessageOnPort(port); received; received = receiveMessageOnPort(port)) {
        reports.push(String((received.message as { failure: unknown }).failure));
      }
    }
    return reports;
  }

  private waitForCompletion(units: number): void {
    const { slots } = this.views;
    // Poll while units keep completing; sleep once a polling period passes without progress.
    let done = Atomics.load(slots, Slot.Completed);
    while (done < units) {
      const next = spinWhileEqual(slots, Slot.Completed, done);
      if (next === done) break;
      done = next;
    }
    if (done >= units) return;
    Atomics.store(slots, Slot.MainWaiting, 1);
    for (done = Atomics.load(slots, Slot.Completed); done < units; done = Atomics.load(slots, Slot.Completed)) {
      Atomics.wait(slots, Slot.Completed, done, SLEEP_CHECK_MS);
    }
    Atomics.store(slots, Slot.MainWaiting, 0);
  }

  async dispose(): Promise<void> {
    if (this.workers.length === 0) return;
    const { slots } = this.views;
    Atomics.store(slots, Slot.Stop, 1);
    Atomics.store(slots, Slot.Seq, ++this.seq);
    Atomics.notify(slots, Slot.Seq);
    // Unreferenced workers would let the event loop end before their exit events arrive.
    for (const worker of this.workers) worker.ref();
    await Promise.all(this.exited);
    for (const port of this.ports) port.close();
  }
}
