import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GgufError } from "../src/gguf/errors.js";
import type { GgufValue } from "../src/gguf/types.js";
import { gv } from "../src/gguf/writer.js";
import { Tokenizer } from "../src/tokenizer/index.js";
import { presetVocab, vocabMetadata } from "./helpers/tokenizer-gguf.js";

const KIND = presetVocab("tiny");

function build(edit: (entries: Map<string, GgufValue>) => void): Tokenizer {
  return Tokenizer.fromGguf(vocabMetadata(KIND, edit));
}

/** The error is a GgufError naming the metadata's source and the key at fault. */
function assertKeyError(edit: (entries: Map<string, GgufValue>) => void, key: string, problem: RegExp): void {
  assert.throws(
    () => build(edit),
    (error: unknown) => {
      assert.ok(error instanceof GgufError, `expected a GgufError, got ${String(error)}`);
      assert.equal(error.field, key);
      assert.match(error.message, /^synthetic 1000 vocabulary: /);
      assert.match(error.message, problem);
      return true;
    },
  );
}

describe("bad tokenizer metadata is refused with an error naming the key", () => {
  test("the unedited metadata is accepted", () => {
    assert.equal(build(() => {}).vocabSize, 1261);
  });

  test("tokenizer model", () => {
    assertKeyError((e) => e.delete("tokenizer.ggml.model"), "tokenizer.ggml.model", /missing/);
    assertKeyError((e) => e.set("tokenizer.ggml.model", gv.str("llama")), "tokenizer.ggml.model", /unsupported tokenizer model "llama".*gpt2/);
    assertKeyError((e) => e.set("tokenizer.ggml.model", gv.u32(2)), "tokenizer.ggml.model", /expected a string/);
  });

  test("pre-tokenizer", () => {
    assertKeyError((e) => e.delete("tokenizer.ggml.pre"), "tokenizer.ggml.pre", /missing.*qwen2/);
    assertKeyError((e) => e.set("tokenizer.ggml.pre", gv.str("llama-bpe")), "tokenizer.ggml.pre", /unsupported pre-tokenizer "llama-bpe".*qwen2/);
  });

  test("token list", () => {
    assertKeyError((e) => e.delete("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens", /missing/);
    assertKeyError((e) => e.set("tokenizer.ggml.tokens", gv.i32s([1, 2])), "tokenizer.ggml.tokens", /expected an array of strings/);
    assertKeyError((e) => e.set("tokenizer.ggml.tokens", gv.strings([])), "tokenizer.ggml.tokens", /empty/);
    assertKeyError(
      (e) => e.set("tokenizer.ggml.tokens", gv.strings(["a", "b", "a", ...Array.from({ length: 1258 }, (_, i) => `t${i}`)])),
      "tokenizer.ggml.tokens",
      /tokens 0 and 2 are both "a"/,
    );
  });

  test("token types", () => {
    assertKeyError((e) => e.set("tokenizer.ggml.token_type", gv.i32s([1, 1, 1])), "tokenizer.ggml.token_type", /3 entries for 1261 tokens/);
    assertKeyError((e) => e.set("tokenizer.ggml.token_type", gv.strings(["NORMAL"])), "tokenizer.ggml.token_type", /expected an array of numbers/);
    assertKeyError(
      (e) => e.set("tokenizer.ggml.token_type", gv.f32s(Array.from({ length: 1261 }, () => 1.5))),
      "tokenizer.ggml.token_type",
      /entry 0 is 1.5, not an integer/,
    );
  });

  test("merges", () => {
    assertKeyError((e) => e.delete("tokenizer.ggml.merges"), "tokenizer.ggml.merges", /missing/);
    assertKeyError((e) => e.set("tokenizer.ggml.merges", gv.u32(0)), "tokenizer.ggml.merges", /expected an array of strings/);
  });

  test("special token ids and flags", () => {
    assertKeyError((e) => e.set("tokenizer.ggml.bos_token_id", gv.u32(1261)), "tokenizer.ggml.bos_token_id", /token id 1261 is outside the vocabulary \(0\.\.1260\)/);
    assertKeyError((e) => e.set("tokenizer.ggml.eos_token_id", gv.str("<|im_end|>")), "tokenizer.ggml.eos_token_id", /expected an integer/);
    assertKeyError((e) => e.set("tokenizer.ggml.fim_sep_token_id", gv.i32(-1)), "tokenizer.ggml.fim_sep_token_id", /token id -1 is outside/);
    assertKeyError((e) => e.set("tokenizer.ggml.add_bos_token", gv.str("yes")), "tokenizer.ggml.add_bos_token", /expected a bool/);
    assertKeyError((e) => e.set("tokenizer.ggml.add_space_prefix", gv.bool(true)), "tokenizer.ggml.add_space_prefix", /not supported/);
  });
});
