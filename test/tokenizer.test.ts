import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { GgufFile } from "../src/gguf/index.js";
import type { GgufMetadata } from "../src/gguf/metadata.js";
import type { GgufValue } from "../src/gguf/types.js";
import { gv } from "../src/gguf/writer.js";
import { Tokenizer } from "../src/tokenizer/index.js";
import { randomTexts } from "./helpers/tokenizer-corpus.js";
import { testModel } from "./helpers/models.js";
import { vocabMetadata } from "./helpers/tokenizer-gguf.js";

const utf8 = new TextEncoder();

describe("Tokenizer on the real Qwen2 vocabulary", () => {
  let metadata: GgufMetadata;
  let tokenizer: Tokenizer;

  before(() => {
    const file = GgufFile.open(testModel({ preset: "demo" }));
    metadata = file.metadata;
    file.close();
    tokenizer = Tokenizer.fromGguf(metadata);
  });

  test("reports the vocabulary's size and special tokens", () => {
    assert.equal(tokenizer.vocabSize, 151936);
    assert.equal(tokenizer.tokenText(tokenizer.bosId!), "<|endoftext|>");
    assert.equal(tokenizer.tokenText(tokenizer.eosId!), "<|im_end|>");
    assert.ok(tokenizer.isEndOfGeneration(tokenizer.eosId!));
    assert.ok(tokenizer.isEndOfGeneration(tokenizer.bosId!), "<|endoftext|> ends generation too");
    assert.ok(!tokenizer.isEndOfGeneration(tokenizer.encode("<|im_start|>")[0]!));
    assert.ok(!tokenizer.isEndOfGeneration(tokenizer.encode("hello")[0]!));
  });

  test("tokenText is the stored byte-level spelling, tokenBytes what it stands for", () => {
    const [the] = tokenizer.encode(" the");
    assert.equal(tokenizer.tokenText(the!), "Ġthe");
    assert.deepEqual(tokenizer.tokenBytes(the!), utf8.encode(" the"));
    const emojiBytes = tokenizer.encode("😀").flatMap((id) => [...tokenizer.tokenBytes(id)]);
    assert.deepEqual(emojiBytes, [...utf8.encode("😀")]);
  });

  test("special tokens stand for their text unless rendering is off; padding stands for nothing", () => {
    const imEnd = tokenizer.eosId!;
    assert.deepEqual(tokenizer.tokenBytes(imEnd), utf8.encode("<|im_end|>"));
    assert.equal(tokenizer.tokenBytes(imEnd, { renderSpecial: false }).length, 0);
    const think = tokenizer.encode("<think>", { parseSpecial: false });
    assert.equal(think.length, 1, "<think> is USER_DEFINED: matched even as plain text");
    assert.equal(tokenizer.decode(think, { renderSpecial: false }), "<think>");
    assert.equal(tokenizer.tokenText(151700), "[PAD151700]");
    assert.equal(tokenizer.decode([151700]), "");
  });

  test("parseSpecial decides whether control tokens written in the text are recognised", () => {
    const text = "<|im_start|>user\nhi<|im_end|>";
    const parsed = tokenizer.encode(text);
    const plain = tokenizer.encode(text, { parseSpecial: false });
    assert.equal(parsed[0], tokenizer.encode("<|im_start|>")[0]);
    assert.ok(!plain.includes(tokenizer.eosId!));
    assert.ok(plain.length > parsed.length);
    assert.equal(tokenizer.decode(plain), text);
    assert.equal(tokenizer.decode(parsed, { renderSpecial: false }), "user\nhi");
  });

  test("addBos and addEos wrap the ids; by default the metadata (false) decides", () => {
    const ids = tokenizer.encode("hi");
    assert.deepEqual(tokenizer.encode("hi", { addBos: true, addEos: true }), [tokenizer.bosId!, ...ids, tokenizer.eosId!]);
    assert.deepEqual(tokenizer.encode(""), []);
  });

  test("bad arguments are refused clearly", () => {
    assert.throws(() => tokenizer.decode([0, -1]), /token id -1 is outside the vocabulary \(0\.\.151935\)/);
    assert.throws(() => tokenizer.decode([1.5]), RangeError);
    assert.throws(() => tokenizer.tokenBytes(151936), /token id 151936 is outside/);
    assert.throws(() => tokenizer.tokenText(Number.NaN), RangeError);
    assert.throws(() => tokenizer.encode(42 as unknown as string), /encode: expected a string, got number/);
  });

  // Construction and encoding speed are measured by bench/latency.ts, not asserted here.
  test("a freshly built tokenizer (empty piece cache) round-trips 10 KB of varied text", () => {
    const text = randomTexts(400, 5).join("\n").slice(0, 10_000);
    for (let i = 0; i < 2; i++) {
      const fresh = Tokenizer.fromGguf(metadata);
      const ids = fresh.encode(text);
      assert.deepEqual(ids, tokenizer.encode(text), "the same ids as a tokenizer that has seen other text");
      assert.equal(fresh.decode(ids), text);
    }
  });
});

describe("Tokenizer on a hand-made vocabulary", () => {
  function handMade(edit: (entries: Map<string, GgufValue>) => void = () => {}): Tokenizer {
    return Tokenizer.fromGguf(
      vocabMetadata(0, (entries) => {
        entries.set("tokenizer.ggml.tokens", gv.strings(["a", "b", "c", "ab", "abc", "<|im_end|>"]));
        entries.set("tokenizer.ggml.token_type", gv.i32s([1, 1, 1, 1, 1, 3]));
        entries.set("tokenizer.ggml.merges", gv.strings(["a b", "ab c"]));
        entries.delete("tokenizer.ggml.bos_token_id");
        entries.set("tokenizer.ggml.eos_token_id", gv.u32(5));
        entries.delete("tokenizer.ggml.padding_token_id");
        edit(entries);
      }),
    );
  }

  test("merges by rank", () => {
    const tokenizer = handMade();
    assert.deepEqual(tokenizer.encode("abc"), [4]);
    assert.deepEqual(tokenizer.encode("ababcab"), [3, 4, 3]);
  });

  test("a vocabulary too small for a default BOS has none, and adding one fails clearly", () => {
    const tokenizer = handMade();
    assert.equal(tokenizer.bosId, null);
    assert.throws(() => tokenizer.encode("a", { addBos: true }), /no BOS token to add/);
  });

  test("tokenizer.ggml.add_bos_token and add_eos_token set the defaults", () => {
    const tokenizer = handMade((entries) => {
      entries.set("tokenizer.ggml.bos_token_id", gv.u32(0));
      entries.set("tokenizer.ggml.add_bos_token", gv.bool(true));
      entries.set("tokenizer.ggml.add_eos_token", gv.bool(true));
    });
    assert.deepEqual(tokenizer.encode("c"), [0, 2, 5]);
    assert.deepEqual(tokenizer.encode("c", { addBos: false, addEos: false }), [2]);
  });
});
