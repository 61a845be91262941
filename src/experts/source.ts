import { ExpertRef } from "../kernels/api.js";

/** Per-token expert traffic, for statistics. */
export interface ExpertCounters {
  /** Expert uses served from memory. */
  hits: number;
  /** Expert uses that had to be read from the file. */
  misses: number;
  bytesRead: number;
  /** Milliseconds the forward pass waited for reads. */
  stallMs: number;
  /** Reads started for predicted experts (`predict`). */
  predictedReads: number;
  /** Predicted experts that their layer then chose while they were still cached. */
  predictedUsed: number;
}

/**
 * Where the forward pass gets expert weights. `prefetch` is called right after a layer's router,
 * before its attention, so reads can overlap attention; `acquire` returns the resident weights,
 * waiting only for what has not arrived. An acquired expert stays valid until `release`.
 */
export interface ExpertSource {
  prefetch(layer: number, experts: readonly number[]): void;
  /** How many layers ahead the forward pass should predict experts for `predict` (0: none). */
  readonly lookahead: number;
  /**
   * A guess of the experts a later layer will choose (its router applied to an earlier residual):
   * worth reading early if there is idle I/O, never at the cost of what is needed now.
   */
  predict(layer: number, experts: readonly number[]): void;
  /** Whether the expert can be used without waiting. */
  ready(layer: number, expert: number): boolean;
  acquire(layer: number, expert: number): ExpertRef;
  release(layer: number, expert: number): void;
  /** A chunk of `tokens` tokens has been evaluated (the clock of replacement policies). */
  advance(tokens: number): void;
  readonly counters: ExpertCounters;
  dispose(): void;
}
