/**
 * The k best token ids, found with a bounded min-heap in one pass over the vocabulary instead of a
 * full sort. Writes them to the front of `ids` by descending score, lower id first among equals.
 */
export function selectTopK(scores: Float32Array, k: number, ids: Int32Array): void {
  for (let id = 0; id < k; id++) {
    ids[id] = id;
    siftUp(scores, ids, id);
  }
  // a later id with an equal score ranks below the heap's worst, so only a strictly higher score enters
  const vocabSize = scores.length;
  for (let id = k; id < vocabSize; id++) {
    if (scores[id]! > scores[ids[0]!]!) {
      ids[0] = id;
      siftDown(scores, ids, k);
    }
  }
  sortByRank(scores, ids.subarray(0, k));
}

/** Sorts ids by descending score, then ascending id, so the order never depends on sort stability. */
export function sortByRank(scores: Float32Array, ids: Int32Array): void {
  // -Infinity minus -Infinity is NaN, which is falsy, so equal infinite scores also fall back to the id
  ids.sort((a, b) => scores[b]! - scores[a]! || a - b);
}

function ranksAbove(scores: Float32Array, a: number, b: number): boolean {
  const scoreA = scores[a]!;
  const scoreB = scores[b]!;
  return scoreA > scoreB || (scoreA === scoreB && a < b);
}

// The root holds the lowest-ranked id, the one a better token replaces.
function siftUp(scores: Float32Array, heap: Int32Array, position: number): void {
  while (position > 0) {
    const parent = (position - 1) >> 1;
    if (!ranksAbove(scores, heap[parent]!, heap[position]!)) return;
    swap(heap, parent, position);
    position = parent;
  }
}

function siftDown(scores: Float32Array, heap: Int32Array, size: number): void {
  let position = 0;
  for (;;) {
    const left = 2 * position + 1;
    if (left >= size) return;
    const right = left + 1;
    const lower = right < size && ranksAbove(scores, heap[left]!, heap[right]!) ? right : left;
    if (!ranksAbove(scores, heap[position]!, heap[lower]!)) return;
    swap(heap, position, lower);
    position = lower;
  }
}

function swap(heap: Int32Array, i: number, j: number): void {
  const held = heap[i]!;
  heap[i] = heap[j]!;
  heap[j] = held;
}
