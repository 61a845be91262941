import { byteOfChar } from "./byte-level.js";
import { HIDDEN_UNLESS_RENDERED, TokenAttribute } from "./token-attributes.js";

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/**
 * A normal token's bytes from its byte-level spelling. A character outside the byte alphabet cannot
 * come from a real vocabulary; llama.cpp writes it as "[UNK_BYTE_0x<its UTF-8 in hex><token text>]".
 */
function byteLevelTokenBytes(text: string): Uint8Array {
  const bytes: number[] = [];
  for (const char of text) {
    const byte = byteOfChar(char.codePointAt(0)!);
    if (byte >= 0) bytes.push(byte);
    else bytes.push(...utf8.encode(`[UNK_BYTE_0x${[...utf8.encode(char)].map(hex2).join("")}${text}]`));
  }
  return Uint8Array.from(bytes);
}

/** A BYTE token such as "<0x0A>": the hex digits after "<0x", parsed as C's strtol does (0 if none). */
function byteTokenByte(text: string): Uint8Array {
  const digits = /^[0-9a-fA-F]*/.exec(text.slice(3, 5))![0];
  return Uint8Array.of(digits === "" ? 0 : parseInt(digits, 16));
}

/**
 * What a token detokenizes to in llama.cpp (special tokens rendered), by its attributes: special and
 * user-defined tokens their text, normal tokens the bytes their byte-level spelling stands for, BYTE
 * tokens one byte, and unused or untyped tokens nothing.
 */
export function detokenizedBytes(text: string, attributes: number): Uint8Array {
  if (attributes & (HIDDEN_UNLESS_RENDERED | TokenAttribute.USER_DEFINED)) return utf8.encode(text);
  if (attributes & TokenAttribute.NORMAL) return byteLevelTokenBytes(text);
  if (attributes & TokenAttribute.BYTE) return byteTokenByte(text);
  return EMPTY;
}
