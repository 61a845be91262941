import { sortByRank } from "./top-k.js";

// Tokens are grouped by their distance below the best logit in 1/512-nat steps, fine enough that even
// a near-flat distribution puts only a few hundred tokens in one bucket. Past 32 nats a token weighs
// under e^-32 of the best one, so a single overflow bucket holds all of those.
const BUCKETS_PER_NAT = 512;
const BUCKET_COUNT = 32 * BUCKETS_PER_NAT;

/**
 * Top-p (and min-p) over the whole vocabulary without sorting it. A histogram of probability mass by
 * distance below the best score finds the bucket where the cumulative mass reaches topP: tokens in
 * nearer buckets are all kept, farther ones all dropped, and only that one boundary bucket is sorted
 * to find the exact cut. Tokens below `minScore` (the min-p threshold; finite, so it also drops
 * masked tokens) are left out while gathering: top-p and min-p both keep a prefix of the ranked
 * order, so that gives the same set as applying min-p afterwards. Writes the kept ids to the front
 * of `ids` (nearer buckets in id order, then the boundary bucket ranked) and returns how many.
 */
export function gatherNucleus(scores: Float32Array, maxScore: number, topP: number, minScore: number, ids: Int32Array): number {
  const vocabSize = scores.length;
  const bucketMass = new Float64Array(BUCKET_COUNT + 1);
  let totalMass = 0;
  for (let id = 0; id < vocabSize; id++) {
    const gap = maxScore - scores[id]!;
    const weight = Math.exp(-gap);
    totalMass += weight;
    bucketMass[bucketOf(gap)] += weight;
  }

  const target = topP * totalMass;
  let boundary = 0;
  let massBefore = 0;
  while (boundary < BUCKET_COUNT && massBefore + bucketMass[boundary]! < target) {
    massBefore += bucketMass[boundary]!;
    boundary++;
  }

  // kept tokens fill `ids` from the front, boundary tokens from the back; they cannot meet
  let kept = 0;
  let boundaryStart = vocabSize;
  for (let id = 0; id < vocabSize; id++) {
    const score = scores[id]!;
    if (score < minScore) continue;
    const bucket = bucketOf(maxScore - score);
    if (bucket < boundary) ids[kept++] = id;
    else if (bucket === boundary) ids[--boundaryStart] = id;
  }
  const boundaryCount = vocabSize - boundaryStart;
  ids.copyWithin(kept, boundaryStart, vocabSize);
  sortByRank(scores, ids.subarray(kept, kept + boundaryCount));

  let cumulative = massBefore;
  const end = kept + boundaryCount;
  for (let i = kept; i < end; i++) {
    cumulative += Math.exp(scores[ids[i]!]! - maxScore);
    if (cumulative >= target) return i + 1;
  }
  return end;
}

function bucketOf(gap: number): number {
  return Math.min(Math.floor(gap * BUCKETS_PER_NAT), BUCKET_COUNT);
}
