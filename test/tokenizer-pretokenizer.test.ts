import assert from "node:assert/strict";
import { test } from "node:test";
import { qwen2PreTokens } from "../src/tokenizer/pretokenizer.js";

/**
 * Pre-token boundaries llama.cpp's Qwen2 matcher draws, including those where a JS regex with the
 * same pattern would draw others. Several never change token ids with the Qwen2 merges (no merge
 * joins the pieces), so only this level shows them.
 */
const CASES: [string, string[]][] = [
  ["Hello world", ["Hello", " world"]],
  ["  hello", [" ", " hello"]],
  ["hello   ", ["hello", "   "]],
  ["a\n\n b", ["a", "\n\n", " b"]],
  ["x  \n y", ["x", "  \n", " y"]],
  ["\t!", ["\t", "!"]],
  [" !!?\n\nx", [" !!?\n\n", "x"]],
  ["\nabc", ["\n", "abc"]],
  ["\tif", ["\tif"]],
  ["123", ["1", "2", "3"]],
  ["x²", ["x", "²"]],
  ["don't", ["don", "'t"]],
  ["'LLama", ["'LL", "ama"]],
  ["'rEady", ["'rE", "ady"]],
  // Contractions ignore case for ASCII only: U+017F (ſ) does not stand for "s".
  ["'ſt", ["'ſt"]],
  // U+0085 is whitespace to llama.cpp, U+FEFF is not (JS \s says the opposite).
  ["x\u0085\u0085y", ["x", "\u0085", "\u0085y"]],
  ["\ufeff\ufeffx", ["\ufeff\ufeff", "x"]],
  // Characters new in Unicode 16/17 are unassigned to llama.cpp: not letters, not numbers.
  ["\u1c89's", ["\u1c89'", "s"]],
  ["a\ua7cbb", ["a", "\ua7cbb"]],
  ["\u{10d40}\u{10d41}", ["\u{10d40}\u{10d41}"]],
  ["😀👍🏽", ["😀👍🏽"]],
  ["", []],
];

test("Qwen2 pre-tokens are split where llama.cpp splits them", () => {
  for (const [text, pieces] of CASES) assert.deepEqual(qwen2PreTokens(text), pieces, JSON.stringify(text));
});
