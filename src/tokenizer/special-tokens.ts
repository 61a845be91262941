/** A piece of input: raw text still to be tokenized, or a special token already recognised. */
export type Fragment = string | number;

/**
 * Splits text around special tokens the way llama.cpp partitions it: each token in turn (longest
 * first) takes every non-overlapping occurrence, left to right, in the text the earlier tokens left.
 * So a longer token wins over a shorter one even when the shorter occurs further left.
 */
export function splitOnSpecialTokens(
  text: string,
  specialTokens: readonly number[],
  textOf: (id: number) => string,
): Fragment[] {
  let fragments: Fragment[] = text === "" ? [] : [text];
  for (const id of specialTokens) {
    const tokenText = textOf(id);
    if (!fragments.some((fragment) => typeof fragment === "string" && fragment.includes(tokenText))) continue;
    const split: Fragment[] = [];
    for (const fragment of fragments) {
      if (typeof fragment !== "string") {
        split.push(fragment);
        continue;
      }
      let from = 0;
      for (let at = fragment.indexOf(tokenText); at >= 0; at = fragment.indexOf(tokenText, from)) {
        if (at > from) split.push(fragment.slice(from, at));
        split.push(id);
        from = at + tokenText.length;
      }
      if (from < fragment.length) split.push(fragment.slice(from));
    }
    fragments = split;
  }
  return fragments;
}
