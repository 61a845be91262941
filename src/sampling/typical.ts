import { sortByRank } from "./top-k.js";

/**
 * Locally typical sampling, as llama.cpp's typical_p: over the current candidates (the first
 * `count` of `ids`), with p their softmax at temperature 1, H = -Σ p log p the entropy, the tokens
 * are ordered by how far their surprisal -log p lies from H, and the shortest such prefix whose
 * probability exceeds `typicalP` is kept (at least `minKeep` tokens). The kept ids are written back
 * to the front of `ids` ranked by score (best first, lower id among equals), so top-p and min-p can
 * follow; the count is returned. Unlike the other stages it may drop the most likely token.
 *
 * Over the whole vocabulary (no top-k before it) this sorts every token, as llama.cpp does.
 */
export function keepTypical(scores: Float32Array, ids: Int32Array, count: number, typicalP: number, minKeep: number): number {
  if (typicalP >= 1 || count <= 1) return count;
  let maxScore = -Infinity;
  for (let i = 0; i < count; i++) maxScore = Math.max(maxScore, scores[ids[i]!]!);
  const weights = new Float64Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    weights[i] = Math.exp(scores[ids[i]!]! - maxScore);
    total += weights[i]!;
  }
  const logTotal = Math.log(total);
  // log p_i = score_i - maxScore - log Σ; a masked (-Infinity) token has p = 0 and adds nothing to H
  let entropy = 0;
  for (let i = 0; i < count; i++) {
    const p = weights[i]! / total;
    if (p > 0) entropy -= p * (scores[ids[i]!]! - maxScore - logTotal);
  }
  const order = Array.from({ length: count }, (_, i) => i);
  const distance = new Float64Array(count);
  for (let i = 0; i < count; i++) distance[i] = Math.abs(-(scores[ids[i]!]! - maxScore - logTotal) - entropy);
  // ties in distance go to the better-ranked token, so the result never depends on the input order
  order.sort((a, b) => distance[a]! - distance[b]! || scores[ids[b]!]! - scores[ids[a]!]! || ids[a]! - ids[b]!);

  let kept = count;
  let cumulative = 0;
  for (let i = 0; i < count; i++) {
    cumulative += weights[order[i]!]! / total;
    if (cumulative > typicalP && i + 1 >= minKeep) {
      kept = i + 1;
      break;
    }
  }
  const survivors = Int32Array.from(order.slice(0, kept), (i) => ids[i]!);
  sortByRank(scores, survivors);
  ids.set(survivors);
  return kept;
}
