import { gatherNucleus } from "./nucleus.js";
import type { ResolvedSamplingOptions } from "./options.js";
import { selectTopK } from "./top-k.js";

/**
 * The truncation stages of the chain (top-k → top-p → min-p). Candidates are token ids written to the
 * front of an Int32Array; their scores stay in the logit vector, so no stage copies logits around.
 */

/**
 * The id of the highest score, the lowest id among equals. Also the one pass that looks at every
 * logit, so it is where corrupt logits are caught.
 */
export function argmax(scores: Float32Array): number {
  let best = -1;
  let bestScore = -Infinity;
  const vocabSize = scores.length;
  for (let id = 0; id < vocabSize; id++) {
    const score = scores[id]!;
    // written so NaN takes the rare branch too: checking it on every element costs V8 far more
    if (!(score <= bestScore)) {
      if (Number.isNaN(score) || score === Infinity) throw new RangeError(`logit of token ${id} is ${score}`);
      best = id;
      bestScore = score;
    }
  }
  if (best < 0) throw new RangeError("every logit is -Infinity: no token can be sampled");
  return best;
}

/**
 * Writes the ids that survive top-k, top-p and min-p to the front of `ids` and returns how many
 * (at least one: every stage keeps the best token). `maxScore` is the highest score.
 */
export function selectCandidates(
  scores: Float32Array,
  maxScore: number,
  options: Pick<ResolvedSamplingOptions, "topK" | "topP" | "minP">,
  ids: Int32Array,
): number {
  const { topK, topP, minP } = options;
  // llama.cpp's form of "p ≥ minP · p_max", in logit space so it needs no exponentials; without
  // min-p the floor still sits above -Infinity, so masked tokens never count as candidates
  const minScore = minP > 0 ? maxScore + Math.log(minP) : -Number.MAX_VALUE;
  if (topK === 0 || topK >= scores.length) {
    return topP < 1 ? gatherNucleus(scores, maxScore, topP, minScore, ids) : gatherAtLeast(scores, minScore, ids);
  }
  selectTopK(scores, topK, ids);
  const count = topP < 1 ? truncateTopP(scores, ids, topK, maxScore, topP) : topK;
  return keepPrefixAtLeast(scores, ids, count, minScore);
}

/** Keeps the shortest ranked prefix whose share of the candidates' probability mass reaches topP. */
function truncateTopP(scores: Float32Array, ids: Int32Array, count: number, maxScore: number, topP: number): number {
  let mass = 0;
  for (let i = 0; i < count; i++) mass += Math.exp(scores[ids[i]!]! - maxScore);
  const target = topP * mass;
  let cumulative = 0;
  for (let i = 0; i < count; i++) {
    cumulative += Math.exp(scores[ids[i]!]! - maxScore);
    if (cumulative >= target) return i + 1;
  }
  return count;
}

function keepPrefixAtLeast(scores: Float32Array, ids: Int32Array, count: number, minScore: number): number {
  let kept = 1;
  while (kept < count && scores[ids[kept]!]! >= minScore) kept++;
  return kept;
}

function gatherAtLeast(scores: Float32Array, minScore: number, ids: Int32Array): number {
  let count = 0;
  const vocabSize = scores.length;
  for (let id = 0; id < vocabSize; id++) {
    if (scores[id]! >= minScore) ids[count++] = id;
  }
  return count;
}
