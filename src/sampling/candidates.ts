import { gatherNucleus } from "./nucleus.js";
import type { ResolvedSamplingOptions } from "./options.js";
import { selectTopK } from "./top-k.js";
import { keepTypical } from "./typical.js";

/**
 * The truncation stages of the chain (top-k → typical → top-p → min-p). Candidates are token ids written to the
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
 * Writes the ids that survive top-k, typical, top-p and min-p to the front of `ids` and returns how
 * many (at least one, and at least minKeep where there are that many: without typical sampling,
 * every stage keeps the best token). `maxScore` is the highest score.
 */
export function selectCandidates(
  scores: Float32Array,
  maxScore: number,
  options: Pick<ResolvedSamplingOptions, "topK" | "topP" | "minP"> & Partial<Pick<ResolvedSamplingOptions, "typicalP" | "minKeep">>,
  ids: Int32Array,
): number {
  const { topK, topP, minP, typicalP = 1 } = options;
  const minKeep = Math.min(Math.max(options.minKeep ?? 0, 1), scores.length);
  const topKActive = topK > 0 && topK < scores.length;
  if (typicalP < 1) return selectWithTypical(scores, { topK, topP, minP, typicalP }, minKeep, ids);
  // llama.cpp's form of "p ≥ minP · p_max", in logit space so it needs no exponentials; without
  // min-p the floor still sits above -Infinity, so masked tokens never count as candidates
  const minScore = minP > 0 ? maxScore + Math.log(minP) : -Number.MAX_VALUE;
  if (!topKActive) {
    const count = topP < 1 ? gatherNucleus(scores, maxScore, topP, minScore, ids) : gatherAtLeast(scores, minScore, ids);
    if (count >= minKeep) return count;
    // top-p and min-p both keep a prefix of the ranked tokens, so keeping more means the best minKeep
    selectTopK(scores, minKeep, ids);
    return minKeep;
  }
  selectTopK(scores, topK, ids);
  const count = topP < 1 ? truncateTopP(scores, ids, topK, maxScore, topP, minKeep) : topK;
  return keepPrefixAtLeast(scores, ids, count, minScore, minKeep);
}

/** The chain with typical sampling, which may drop the best token: later stages go by the best survivor. */
function selectWithTypical(scores: Float32Array, options: Pick<ResolvedSamplingOptions, "topK" | "topP" | "minP" | "typicalP">, minKeep: number, ids: Int32Array): number {
  const { topK, topP, minP, typicalP } = options;
  let count: number;
  if (topK > 0 && topK < scores.length) {
    selectTopK(scores, topK, ids);
    count = topK;
  } else {
    count = scores.length;
    for (let id = 0; id < count; id++) ids[id] = id;
  }
  count = keepTypical(scores, ids, count, typicalP, minKeep);
  const bestScore = scores[ids[0]!]!;
  if (topP < 1) count = truncateTopP(scores, ids, count, bestScore, topP, minKeep);
  return keepPrefixAtLeast(scores, ids, count, minP > 0 ? bestScore + Math.log(minP) : -Number.MAX_VALUE, minKeep);
}

/** Keeps the shortest ranked prefix (of at least minKeep) whose share of the candidates' probability mass reaches topP. */
function truncateTopP(scores: Float32Array, ids: Int32Array, count: number, maxScore: number, topP: number, minKeep: number): number {
  let mass = 0;
  for (let i = 0; i < count; i++) mass += Math.exp(scores[ids[i]!]! - maxScore);
  const target = topP * mass;
  let cumulative = 0;
  for (let i = 0; i < count; i++) {
    cumulative += Math.exp(scores[ids[i]!]! - maxScore);
    if (cumulative >= target && i + 1 >= minKeep) return i + 1;
  }
  return count;
}

function keepPrefixAtLeast(scores: Float32Array, ids: Int32Array, count: number, minScore: number, minKeep: number): number {
  let kept = 1;
  while (kept < count && (kept < minKeep || scores[ids[kept]!]! >= minScore)) kept++;
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
