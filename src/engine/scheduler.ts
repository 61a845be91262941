import { KvCache } from "../kv/cache.js";
import { SequenceChunk, SmallThinkerModel } from "../model/model.js";
import { Decoding } from "./decoding.js";
import { GenerationResult } from "./generation.js";

/** A generation handed to the scheduler, and where its output goes. */
export interface SchedulerJob {
  readonly decoding: Decoding;
  /** Whether its client has given up: asked before every step and between the layers of one. */
  cancelled(): boolean;
  onText(text: string): void;
  onFinish(result: GenerationResult): void;
  /** The forward pass failed on a step this job was part of; the job is over. */
  onError(error: unknown): void;
}

/** One sequence of the model: a KV cache, what it holds, and the job using it, if any. */
interface Slot {
  readonly kv: KvCache;
  /** The tokens whose keys and values are in `kv`, in order (kept after a job ends, for reuse). */
  evaluated: number[];
  /** When the slot was last given up (least recently used slots are taken first). */
  freedAt: number;
  job: ActiveJob | undefined;
}

interface ActiveJob {
  readonly job: SchedulerJob;
  /** Tokens to evaluate: the rest of the prompt, then the one token just sampled. */
  pending: number[];
  /** Still evaluating the prompt (not yet decoding). */
  prompting: boolean;
  /** Order of admission: prompts are evaluated first come, first served. */
  readonly admittedAt: number;
}

/** Work that needs the model to itself (every position's logits from an empty context). */
interface ExclusiveJob {
  run(kv: KvCache): number[];
  resolve(): void;
  reject(error: unknown): void;
}

type Waiting = { kind: "generation"; job: SchedulerJob } | { kind: "exclusive"; job: ExclusiveJob };

export interface SchedulerCounts {
  /** Sequences the model runs at once. */
  slots: number;
  /** Slots running a generation. */
  active: number;
  /** Generations waiting for a slot. */
  waiting: number;
  /** Positions held in the slots' KV caches (idle slots keep theirs for prefix reuse). */
  kvTokens: number;
  /** Positions all the slots' KV caches can hold. */
  kvCapacity: number;
  /** Prompt tokens evaluated, and tokens generated, since the model was loaded. */
  promptTokens: number;
  generatedTokens: number;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Continuous batching over the model's parallel sequences. Each step is one forward pass: every
 * generation that is decoding contributes its one new token, and generations still evaluating their
 * prompt fill the rest of the batch with their next prompt tokens, in arrival order. Generations
 * join (taking the free slot whose KV cache shares the longest prefix with their prompt, else the
 * least recently used one) and leave between steps. Between steps the event loop runs, so new jobs
 * and cancellations come in; a step that a cancelled job belongs to is abandoned between layers
 * and done again without it.
 */
export class Scheduler {
  private readonly slots: Slot[];
  private readonly queue: Waiting[] = [];
  private clock = 0;
  private driving = false;
  private idleWaiters: (() => void)[] = [];
  private promptTokens = 0;
  private generatedTokens = 0;

  constructor(private readonly model: SmallThinkerModel) {
    this.slots = model.kvs.map((kv) => ({ kv, evaluated: [], freedAt: 0, job: undefined }));
  }

  /** Queues a generation; its output arrives through the job's callbacks. */
  submit(job: SchedulerJob): void {
    this.queue.push({ kind: "generation", job });
    this.wake();
  }

  /**
   * Runs `run` on the first sequence's KV cache once every generation queued before it has ended
   * (it returns the tokens it left in the cache).
   */
  exclusive(run: (kv: KvCache) => number[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: "exclusive", job: { run, resolve, reject } });
      this.wake();
    });
  }

  /** Looks at the jobs again soon (after a cancellation, say). */
  wake(): void {
    if (this.driving) return;
    this.driving = true;
    void this.drive();
  }

  /** Resolves once no job is running or waiting. */
  idle(): Promise<void> {
    if (!this.hasWork()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  counts(): SchedulerCounts {
    const active = this.slots.filter((slot) => slot.job).length;
    return {
      slots: this.slots.length,
      active,
      waiting: this.queue.filter((waiting) => waiting.kind === "generation").length,
      kvTokens: this.slots.reduce((sum, slot) => sum + slot.kv.length, 0),
      kvCapacity: this.slots.reduce((sum, slot) => sum + slot.kv.contextSize, 0),
      promptTokens: this.promptTokens,
      generatedTokens: this.generatedTokens,
    };
  }

  private hasWork(): boolean {
    return this.queue.length > 0 || this.slots.some((slot) => slot.job);
  }

  private async drive(): Promise<void> {
    try {
      while (this.hasWork()) {
        try {
          this.step();
        } catch (error) {
          // a fault of the scheduler's own (forward-pass errors are the jobs' already): nothing
          // running can be trusted to go on, but the scheduler serves what comes next
          this.failEverything(error);
        }
        // new jobs, cancellations and the consumers of the text come in between steps
        await nextTurn();
      }
    } finally {
      this.driving = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  /** One step: retire cancelled jobs, admit waiting ones, run one forward pass. */
  step(): void {
    this.retireCancelled();
    this.admit();
    const head = this.queue[0];
    if (head?.kind === "exclusive" && this.slots.every((slot) => !slot.job)) {
      this.queue.shift();
      this.runExclusive(head.job);
      return;
    }
    const batch = this.composeBatch();
    if (batch.length > 0) this.runBatch(batch);
  }

  private retireCancelled(): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const waiting = this.queue[i]!;
      if (waiting.kind === "generation" && waiting.job.cancelled()) {
        this.queue.splice(i, 1);
        waiting.job.decoding.abort();
        waiting.job.onFinish(waiting.job.decoding.result());
      }
    }
    for (const slot of this.slots) {
      if (slot.job?.job.cancelled()) {
        slot.job.job.decoding.abort();
        this.release(slot, slot.job.job.decoding.result());
      }
    }
  }

  /** Gives free slots to waiting generations in arrival order (an exclusive job waits for all slots). */
  private admit(): void {
    while (this.queue[0]?.kind === "generation") {
      const free = this.slots.filter((slot) => !slot.job);
      if (free.length === 0) return;
      const { job } = this.queue.shift() as { job: SchedulerJob };
      const prompt = job.decoding.spec.promptIds;
      // the last prompt token is always evaluated: its logits choose the first token
      const reusable = (slot: Slot) => Math.min(commonPrefix(slot.evaluated, prompt), prompt.length - 1);
      const slot = free.reduce((best, slot) => {
        const gain = reusable(slot) - reusable(best);
        return gain > 0 || (gain === 0 && slot.freedAt < best.freedAt) ? slot : best;
      });
      let keep = reusable(slot);
      if (!slot.kv.truncate(keep)) {
        // a sliding-window ring has overwritten what the prefix needs
        keep = 0;
        slot.kv.truncate(0);
      }
      slot.evaluated.length = keep;
      slot.job = { job, pending: prompt.slice(keep), prompting: true, admittedAt: ++this.clock };
      job.decoding.startPrompt(keep);
    }
  }

  /** Decoding generations first (one token each), then prompt tokens while the batch has room. */
  private composeBatch(): Slot[] {
    const running = this.slots.filter((slot) => slot.job);
    const decoding = running.filter((slot) => !slot.job!.prompting);
    const prompting = running.filter((slot) => slot.job!.prompting).sort((a, b) => a.job!.admittedAt - b.job!.admittedAt);
    return [...decoding, ...prompting];
  }

  private runBatch(slots: Slot[]): void {
    let room = this.model.options.batchSize;
    const chunks: SequenceChunk[] = [];
    const outcomes = new Map<Slot, { text: string; next: number | undefined } | { error: unknown }>();
    const inStep: Slot[] = [];
    for (const slot of slots) {
      if (room === 0) break;
      const active = slot.job!;
      const tokens = active.pending.slice(0, room);
      room -= tokens.length;
      const last = tokens.length === active.pending.length;
      inStep.push(slot);
      chunks.push({
        kv: slot.kv,
        tokens,
        logits: last ? "last" : "none",
        onLogits: (_, logits) => {
          const { decoding } = active.job;
          const before = decoding.tokens.length;
          try {
            outcomes.set(slot, decoding.next(logits));
            this.generatedTokens += decoding.tokens.length - before;
          } catch (error) {
            outcomes.set(slot, { error });
          }
        },
      });
    }
    const jobs = inStep.map((slot) => slot.job!.job);
    let completed: boolean;
    try {
      completed = this.model.forwardBatch(chunks, () => jobs.some((job) => job.cancelled()));
    } catch (error) {
      // the caches of this step are in an unknown state: start them afresh
      for (const slot of inStep) {
        const { job } = slot.job!;
        slot.kv.truncate(0);
        slot.evaluated = [];
        slot.job = undefined;
        slot.freedAt = ++this.clock;
        job.onError(error);
      }
      return;
    }
    if (!completed) return; // a job was cancelled mid-step: retired next step, the rest redone
    inStep.forEach((slot, i) => {
      const active = slot.job!;
      const tokens = chunks[i]!.tokens;
      slot.evaluated.push(...tokens);
      active.pending = active.pending.slice(tokens.length);
      if (active.prompting) this.promptTokens += tokens.length;
      const outcome = outcomes.get(slot);
      if (outcome === undefined) return; // more of the prompt to come
      if ("error" in outcome) {
        slot.job = undefined;
        slot.freedAt = ++this.clock;
        active.job.onError(outcome.error);
        return;
      }
      if (outcome.text) active.job.onText(outcome.text);
      active.prompting = false;
      if (outcome.next === undefined) this.release(slot, active.job.decoding.result());
      else active.pending = [outcome.next];
    });
  }

  private failEverything(error: unknown): void {
    for (const slot of this.slots) {
      const active = slot.job;
      slot.job = undefined;
      slot.kv.truncate(0);
      slot.evaluated = [];
      active?.job.onError(error);
    }
    for (const waiting of this.queue.splice(0)) {
      if (waiting.kind === "generation") waiting.job.onError(error);
      else waiting.job.reject(error);
    }
  }

  private release(slot: Slot, result: GenerationResult): void {
    const { job } = slot.job!;
    slot.job = undefined;
    slot.freedAt = ++this.clock;
    job.onFinish(result);
  }

  private runExclusive(job: ExclusiveJob): void {
    const slot = this.slots[0]!;
    slot.evaluated = [];
    try {
      slot.evaluated = job.run(slot.kv);
      job.resolve();
    } catch (error) {
      slot.kv.truncate(0);
      job.reject(error);
    }
  }
}
