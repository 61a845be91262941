import { argmax, selectCandidates } from "./candidates.js";
import { resolveSamplingOptions, type ResolvedSamplingOptions, type SamplingOptions } from "./options.js";
import { applyPenalties, penaltiesEnabled } from "./penalties.js";
import { SeededRandom } from "./random.js";

/**
 * Picks the next token from a logit vector with llama.cpp's default chain:
 * penalties → top-k → typical → top-p → min-p → temperature → seeded draw.
 * Holds its random stream, so one Sampler serves one generation; its vocabulary-sized buffers are
 * allocated once, not per token.
 */
export class Sampler {
  /** The options in effect, defaults filled in; `seed` is the one actually used, for reproducing a run. */
  readonly options: ResolvedSamplingOptions;
  private readonly vocabSize: number;
  private readonly random: SeededRandom;
  private readonly penalized: Float32Array | undefined;
  private readonly candidates: Int32Array;
  private readonly weights: Float64Array;

  constructor(options: SamplingOptions, vocabSize: number) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) {
      throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
    }
    this.options = resolveSamplingOptions(options);
    this.vocabSize = vocabSize;
    this.random = new SeededRandom(this.options.seed);
    this.penalized = penaltiesEnabled(this.options) ? new Float32Array(vocabSize) : undefined;
    this.candidates = new Int32Array(vocabSize);
    this.weights = new Float64Array(vocabSize);
  }

  /**
   * The next token id. `logits` is not modified. `history` is every token so far, prompt included
   * as llama-cli does; the penalties look at its last `repeatLastN`.
   */
  sample(logits: Float32Array, history: readonly number[]): number {
    if (logits.length !== this.vocabSize) {
      throw new RangeError(`expected ${this.vocabSize} logits (the vocabulary size), got ${logits.length}`);
    }
    let scores = logits;
    if (this.penalized) {
      applyPenalties(logits, history, this.options, this.penalized);
      scores = this.penalized;
    }
    const best = argmax(scores);
    if (this.options.temperature <= 0) return best;
    const maxScore = scores[best]!;
    const count = selectCandidates(scores, maxScore, this.options, this.candidates);
    // typical sampling may have dropped the best token: the draw is then scaled by the best kept one
    return this.draw(scores, count, this.options.typicalP < 1 ? scores[this.candidates[0]!]! : maxScore);
  }

  /** Draws one of the first `count` candidates with probability ∝ exp((score - maxScore) / temperature). */
  private draw(scores: Float32Array, count: number, maxScore: number): number {
    const { candidates, weights } = this;
    const temperature = this.options.temperature;
    let total = 0;
    for (let i = 0; i < count; i++) {
      const weight = Math.exp((scores[candidates[i]!]! - maxScore) / temperature);
      weights[i] = weight;
      total += weight;
    }
    // the running sum repeats the additions that made `total`, so it ends exactly at total and the
    // last candidate is reached only when the target lies in its share
    const target = this.random.nextDouble() * total;
    let cumulative = 0;
    for (let i = 0; i < count - 1; i++) {
      cumulative += weights[i]!;
      if (cumulative > target) return candidates[i]!;
    }
    return candidates[count - 1]!;
  }
}
