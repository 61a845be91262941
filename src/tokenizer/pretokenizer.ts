import { END_OF_TEXT, LETTER, NUMBER, OTHER, WHITESPACE, codepointClass, type CodepointClass } from "./unicode-classes.js";

const APOSTROPHE = 0x27;
const SPACE = 0x20;
const CR = 0x0d;
const LF = 0x0a;

function isNewline(codepoint: number | undefined): boolean {
  return codepoint === CR || codepoint === LF;
}

function asciiLower(codepoint: number): number {
  return codepoint >= 0x41 && codepoint <= 0x5a ? codepoint + 0x20 : codepoint;
}

const [s, t, m, d, r, v, e, l] = [..."stmdrvel"].map((c) => c.charCodeAt(0));

/**
 * Length of the contraction ('s 't 're 've 'm 'll 'd) starting at `at`, or 0. Case-insensitive
 * for ASCII only, as llama.cpp: a JS /iu regex would also let U+017F (ſ) stand for "s".
 */
function contractionLength(codepoints: readonly number[], at: number): number {
  if (at + 1 >= codepoints.length) return 0;
  const first = asciiLower(codepoints[at + 1]!);
  if (first === s || first === t || first === m || first === d) return 2;
  if (at + 2 >= codepoints.length) return 0;
  const second = asciiLower(codepoints[at + 2]!);
  if (((first === r || first === v) && second === e) || (first === l && second === l)) return 3;
  return 0;
}

/**
 * Splits text into the pieces BPE works on, as llama.cpp's hand-written matcher for Qwen2's regex
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * does it: leftmost alternative first, each alternative greedy, with llama.cpp's character classes
 * (see unicode-classes.ts). The input is one fragment between special tokens.
 */
export function qwen2PreTokens(text: string): string[] {
  const codepoints: number[] = [];
  const offsets: number[] = [];
  for (let i = 0; i < text.length; ) {
    const codepoint = text.codePointAt(i)!;
    codepoints.push(codepoint);
    offsets.push(i);
    i += codepoint > 0xffff ? 2 : 1;
  }
  offsets.push(text.length);
  const count = codepoints.length;
  const classAt = (at: number): CodepointClass => (at < count ? codepointClass(codepoints[at]!) : END_OF_TEXT);

  const pieces: string[] = [];
  let pos = 0;
  const takeUntil = (end: number) => {
    pieces.push(text.slice(offsets[pos], offsets[end]));
    pos = end;
  };

  while (pos < count) {
    const codepoint = codepoints[pos]!;
    const cls = classAt(pos);

    if (codepoint === APOSTROPHE) {
      const length = contractionLength(codepoints, pos);
      if (length > 0) {
        takeUntil(pos + length);
        continue;
      }
    }

    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (cls !== NUMBER && !isNewline(codepoint) && (cls === LETTER || classAt(pos + 1) === LETTER)) {
      let end = pos + 1;
      while (classAt(end) === LETTER) end++;
      takeUntil(end);
      continue;
    }

    // \p{N}
    if (cls === NUMBER) {
      takeUntil(pos + 1);
      continue;
    }

    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    const symbolsStart = codepoint === SPACE ? pos + 1 : pos;
    if (classAt(symbolsStart) === OTHER) {
      let end = symbolsStart + 1;
      while (classAt(end) === OTHER) end++;
      while (isNewline(codepoints[end])) end++;
      takeUntil(end);
      continue;
    }

    // Only whitespace starts here: \s*[\r\n]+ | \s+(?!\S) | \s+
    let end = pos;
    let afterLastNewline = -1;
    while (classAt(end) === WHITESPACE) {
      if (isNewline(codepoints[end])) afterLastNewline = end + 1;
      end++;
    }
    if (afterLastNewline > 0) takeUntil(afterLastNewline);
    else if (end - pos > 1 && end < count) takeUntil(end - 1);
    else takeUntil(end);
  }
  return pieces;
}
