/**
 * GPT-2's byte-level alphabet: every byte is stored in vocabulary and merge texts as one printable
 * character. Printable Latin-1 bytes stand for themselves; the rest (controls, space, 0x7F–0xA0,
 * soft hyphen) are shifted to U+0100 onwards, in byte order.
 */

function isPrintableByte(byte: number): boolean {
  return (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
}

const BYTE_TO_CHAR: readonly string[] = (() => {
  const chars: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    chars.push(String.fromCharCode(isPrintableByte(byte) ? byte : 256 + shifted++));
  }
  return chars;
})();

/** Indexed by a character's code; -1 for characters outside the alphabet. */
const CHAR_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(256 + 68).fill(-1);
  BYTE_TO_CHAR.forEach((char, byte) => (table[char.charCodeAt(0)] = byte));
  return table;
})();

const utf8 = new TextEncoder();

/** The byte-level spelling of a piece of text: one alphabet character per UTF-8 byte. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const byte of utf8.encode(text)) out += BYTE_TO_CHAR[byte];
  return out;
}

/** The byte a byte-level character stands for, or -1 if the character is not in the alphabet. */
export function byteOfChar(codepoint: number): number {
  return codepoint < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[codepoint]! : -1;
}
