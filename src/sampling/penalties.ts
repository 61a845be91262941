import type { ResolvedSamplingOptions } from "./options.js";

type PenaltyOptions = Pick<ResolvedSamplingOptions, "repeatPenalty" | "repeatLastN" | "presencePenalty" | "frequencyPenalty">;

export function penaltiesEnabled(options: PenaltyOptions): boolean {
  return options.repeatLastN !== 0 && (options.repeatPenalty !== 1 || options.presencePenalty !== 0 || options.frequencyPenalty !== 0);
}

/**
 * Writes `logits` with the repetition, presence and frequency penalties applied into `out`, for every
 * token that occurs in the last `repeatLastN` entries of `history` (llama.cpp semantics: the
 * repetition penalty divides a positive logit and multiplies a non-positive one, so it always makes
 * the token less likely; then count × frequency + presence is subtracted).
 */
export function applyPenalties(logits: Float32Array, history: readonly number[], options: PenaltyOptions, out: Float32Array): void {
  out.set(logits);
  const windowStart = options.repeatLastN === -1 ? 0 : Math.max(0, history.length - options.repeatLastN);
  const counts = new Map<number, number>();
  for (let i = windowStart; i < history.length; i++) {
    const token = history[i]!;
    if (!Number.isInteger(token) || token < 0 || token >= logits.length) {
      throw new RangeError(`history[${i}] = ${token} is not a token id of this ${logits.length}-token vocabulary`);
    }
    counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  for (const [token, count] of counts) {
    const logit = out[token]!;
    const repeated = logit <= 0 ? logit * options.repeatPenalty : logit / options.repeatPenalty;
    out[token] = repeated - count * options.frequencyPenalty - options.presencePenalty;
  }
}
