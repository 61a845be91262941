/**
 * Byte-pair merging of one pre-token, as llama.cpp orders it: repeatedly merge the adjacent pair
 * with the lowest merge rank, the leftmost one among equal ranks. A heap of candidate pairs keeps
 * long words (a paragraph of CJK text is a single pre-token) near O(n log n).
 */

/** Merge ranks keyed by "left right", the form of `tokenizer.ggml.merges` entries. */
export type MergeRanks = ReadonlyMap<string, number>;

/** Min-heap of numbers kept in a plain array of doubles, so pushing allocates nothing. */
function heapPush(heap: number[], value: number): void {
  let at = heap.push(value) - 1;
  while (at > 0) {
    const parent = (at - 1) >> 1;
    if (heap[parent]! <= value) break;
    heap[at] = heap[parent]!;
    at = parent;
  }
  heap[at] = value;
}

function heapPop(heap: number[]): number {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length > 0) {
    let at = 0;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && heap[child + 1]! < heap[child]!) child++;
      if (heap[child]! >= last) break;
      heap[at] = heap[child]!;
      at = child;
    }
    heap[at] = last;
  }
  return top;
}

/**
 * The pieces a byte-level word (one character per byte, as byte-level.ts spells it) merges into.
 * Symbols are identified by where they start. Candidates wait in the heap keyed rank·n + start
 * (lowest rank, then leftmost); one is still current when the pair at its start still has its rank,
 * since a rank names exactly one pair of texts.
 */
export function mergeWord(word: string, ranks: MergeRanks): string[] {
  const n = word.length;
  if (n < 2) return [word];
  const length = new Int32Array(n).fill(1);
  const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
  const previous = Int32Array.from({ length: n }, (_, i) => i - 1);
  const pairRank = new Int32Array(n);
  const heap: number[] = [];
  const refresh = (left: number) => {
    if (left < 0) return;
    const right = next[left]!;
    const rank = right < 0 ? -1 : (ranks.get(`${word.slice(left, left + length[left]!)} ${word.slice(right, right + length[right]!)}`) ?? -1);
    pairRank[left] = rank;
    if (rank >= 0) heapPush(heap, rank * n + left);
  };
  for (let i = 0; i < n; i++) refresh(i);

  while (heap.length > 0) {
    const key = heapPop(heap);
    const left = key % n;
    const rank = (key - left) / n;
    if (pairRank[left] !== rank) continue;
    const right = next[left]!;
    length[left] = length[left]! + length[right]!;
    pairRank[right] = -1;
    const after = next[right]!;
    next[left] = after;
    if (after >= 0) previous[after] = left;
    refresh(previous[left]!);
    refresh(left);
  }

  const pieces: string[] = [];
  for (let at = 0; at >= 0; at = next[at]!) pieces.push(word.slice(at, at + length[at]!));
  return pieces;
}
