/**
 * Which cached expert to give up when a slot is needed. Keys are layer × experts + expert; time is
 * counted in tokens.
 */
export interface ReplacementPolicy {
  readonly name: string;
  /** The expert was used at `time`. */
  touch(key: number, time: number): void;
  /** The candidate least worth keeping at `time`. */
  victim(candidates: readonly number[], time: number): number;
}

/** Plain least-recently-used, the baseline. */
export class LruPolicy implements ReplacementPolicy {
  readonly name = "lru";
  private readonly lastUse: Float64Array;
  private clock = 0;

  constructor(keys: number) {
    this.lastUse = new Float64Array(keys);
  }

  touch(key: number): void {
    this.lastUse[key] = ++this.clock;
  }

  victim(candidates: readonly number[]): number {
    let best = candidates[0]!;
    for (const key of candidates) if (this.lastUse[key]! < this.lastUse[best]!) best = key;
    return best;
  }
}

/**
 * Frequency with exponential aging (a decayed LFU): every expert, cached or not, keeps a use count
 * that halves every `halfLife` tokens. The least-used cached expert goes first, so experts that the
 * router keeps choosing stay pinned while a rarely chosen one passes through the coldest slot
 * without displacing them; aging lets the profile follow a change of topic. Ties go to LRU.
 */
export class FrequencyPolicy implements ReplacementPolicy {
  readonly name = "frequency";
  private readonly score: Float64Array;
  private readonly scoredAt: Float64Array;
  private readonly lastUse: Float64Array;
  private readonly decayPerToken: number;
  private clock = 0;

  constructor(keys: number, halfLife = 256) {
    this.score = new Float64Array(keys);
    this.scoredAt = new Float64Array(keys);
    this.lastUse = new Float64Array(keys);
    this.decayPerToken = Math.log(2) / halfLife;
  }

  private current(key: number, time: number): number {
    return this.score[key]! * Math.exp(-this.decayPerToken * (time - this.scoredAt[key]!));
  }

  touch(key: number, time: number): void {
    this.score[key] = this.current(key, time) + 1;
    this.scoredAt[key] = time;
    this.lastUse[key] = ++this.clock;
  }

  victim(candidates: readonly number[], time: number): number {
    let best = candidates[0]!;
    let bestScore = this.current(best, time);
    for (const key of candidates) {
      const score = this.current(key, time);
      if (score < bestScore || (score === bestScore && this.lastUse[key]! < this.lastUse[best]!)) {
        best = key;
        bestScore = score;
      }
    }
    return best;
  }
}

export type PolicyName = "frequency" | "lru";

export function createPolicy(name: PolicyName, keys: number): ReplacementPolicy {
  return name === "lru" ? new LruPolicy(keys) : new FrequencyPolicy(keys);
}
