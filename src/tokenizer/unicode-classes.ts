/**
 * The codepoint classes the Qwen2 pre-tokenizer distinguishes, as llama.cpp's own Unicode tables
 * define them (not as this runtime's regex engine would):
 * - whitespace is Unicode's White_Space property, so U+0085 counts and U+FEFF does not (JS `\s`
 *   says the opposite for both);
 * - llama.cpp's tables are Unicode 15.1: characters assigned in Unicode 16.0 and 17.0 are
 *   unassigned (Cn) there, so they are neither letters nor numbers, while Node 20's ICU knows them.
 */

export const OTHER = 0;
export const LETTER = 1;
export const NUMBER = 2;
export const WHITESPACE = 3;
/** Past the end of the text: matches no class. */
export const END_OF_TEXT = 4;
export type CodepointClass = typeof OTHER | typeof LETTER | typeof NUMBER | typeof WHITESPACE | typeof END_OF_TEXT;

/**
 * Inclusive ranges of the codepoints first assigned in Unicode 16.0 or 17.0: exactly where Node 20's
 * Unicode 17 categories and llama.cpp's tables disagree (checked codepoint by codepoint).
 */
const ASSIGNED_AFTER_UNICODE_15_1: readonly (readonly [number, number])[] = [
  [0x88f, 0x88f], [0x897, 0x897], [0xc5c, 0xc5c], [0xcdc, 0xcdc], [0x1acf, 0x1add], [0x1ae0, 0x1aeb],
  [0x1b4e, 0x1b4f], [0x1b7f, 0x1b7f], [0x1c89, 0x1c8a], [0x20c1, 0x20c1], [0x2427, 0x2429], [0x2b96, 0x2b96],
  [0x31e4, 0x31e5], [0xa7cb, 0xa7cf], [0xa7d2, 0xa7d2], [0xa7d4, 0xa7d4], [0xa7da, 0xa7dc], [0xa7f1, 0xa7f1],
  [0xfbc3, 0xfbd2], [0xfd90, 0xfd91], [0xfdc8, 0xfdce], [0x105c0, 0x105f3], [0x10940, 0x10959],
  [0x10d40, 0x10d65], [0x10d69, 0x10d85], [0x10d8e, 0x10d8f], [0x10ec2, 0x10ec7], [0x10ed0, 0x10ed8],
  [0x10efa, 0x10efc], [0x11380, 0x11389], [0x1138b, 0x1138b], [0x1138e, 0x1138e], [0x11390, 0x113b5],
  [0x113b7, 0x113c0], [0x113c2, 0x113c2], [0x113c5, 0x113c5], [0x113c7, 0x113ca], [0x113cc, 0x113d5],
  [0x113d7, 0x113d8], [0x113e1, 0x113e2], [0x116d0, 0x116e3], [0x11b60, 0x11b67], [0x11bc0, 0x11be1],
  [0x11bf0, 0x11bf9], [0x11db0, 0x11ddb], [0x11de0, 0x11de9], [0x11f5a, 0x11f5a], [0x13460, 0x143fa],
  [0x16100, 0x16139], [0x16d40, 0x16d79], [0x16ea0, 0x16eb8], [0x16ebb, 0x16ed3], [0x16ff2, 0x16ff6],
  [0x187f8, 0x187ff], [0x18cff, 0x18cff], [0x18d09, 0x18d1e], [0x18d80, 0x18df2], [0x1cc00, 0x1ccfc],
  [0x1cd00, 0x1ceb3], [0x1ceba, 0x1ced0], [0x1cee0, 0x1cef0], [0x1e5d0, 0x1e5fa], [0x1e5ff, 0x1e5ff],
  [0x1e6c0, 0x1e6de], [0x1e6e0, 0x1e6f5], [0x1e6fe, 0x1e6ff], [0x1f6d8, 0x1f6d8], [0x1f777, 0x1f77a],
  [0x1f8b2, 0x1f8bb], [0x1f8c0, 0x1f8c1], [0x1f8d0, 0x1f8d8], [0x1fa54, 0x1fa57], [0x1fa89, 0x1fa8a],
  [0x1fa8e, 0x1fa8f], [0x1fabe, 0x1fabe], [0x1fac6, 0x1fac6], [0x1fac8, 0x1fac8], [0x1facd, 0x1facd],
  [0x1fadc, 0x1fadc], [0x1fadf, 0x1fadf], [0x1fae9, 0x1faea], [0x1faef, 0x1faef], [0x1fbcb, 0x1fbef],
  [0x1fbfa, 0x1fbfa], [0x2b73a, 0x2b73f], [0x2cea2, 0x2cead], [0x323b0, 0x33479],
];

function assignedAfterUnicode15_1(codepoint: number): boolean {
  let low = 0;
  let high = ASSIGNED_AFTER_UNICODE_15_1.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const [first, last] = ASSIGNED_AFTER_UNICODE_15_1[middle]!;
    if (codepoint < first) high = middle - 1;
    else if (codepoint > last) low = middle + 1;
    else return true;
  }
  return false;
}

const WHITE_SPACE = /\p{White_Space}/u;
const LETTER_CHAR = /\p{L}/u;
const NUMBER_CHAR = /\p{N}/u;

function classify(codepoint: number): CodepointClass {
  if (assignedAfterUnicode15_1(codepoint)) return OTHER;
  const char = String.fromCodePoint(codepoint);
  if (WHITE_SPACE.test(char)) return WHITESPACE;
  if (LETTER_CHAR.test(char)) return LETTER;
  if (NUMBER_CHAR.test(char)) return NUMBER;
  return OTHER;
}

/** Filled on first use of each codepoint: class + 1, so 0 means "not classified yet". */
const classPlusOne = new Uint8Array(0x110000);

export function codepointClass(codepoint: number): CodepointClass {
  let stored = classPlusOne[codepoint]!;
  if (stored === 0) stored = classPlusOne[codepoint] = classify(codepoint) + 1;
  return (stored - 1) as CodepointClass;
}
