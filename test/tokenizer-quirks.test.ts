import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import type { LlamaModel, Token } from "node-llama-cpp";
import { GgufFile } from "../src/gguf/index.js";
import type { GgufValue } from "../src/gguf/types.js";
import { gv } from "../src/gguf/writer.js";
import { Tokenizer } from "../src/tokenizer/index.js";
import { getOracle, needsOracle } from "./helpers/oracle.js";
import { editedVocabGguf, presetVocab, vocabMetadata } from "./helpers/tokenizer-gguf.js";

/**
 * llama.cpp's rules for unusual vocabularies, checked against llama.cpp itself on edited copies of
 * the small vocabulary: token types, roles recognised by text, end-of-generation workarounds,
 * special-token matching order and merge results missing from the vocabulary.
 */

const TYPE = { UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 };
const KIND = presetVocab("tiny");
const BASE_TOKENS = vocabMetadata(KIND).getStringArray("tokenizer.ggml.tokens");

function tokensOf(entries: Map<string, GgufValue>): string[] {
  return [...(entries.get("tokenizer.ggml.tokens")!.value as string[])];
}

function typesOf(entries: Map<string, GgufValue>): number[] {
  return [...(entries.get("tokenizer.ggml.token_type")!.value as number[])];
}

function appendTokens(entries: Map<string, GgufValue>, added: [string, number][]): void {
  entries.set("tokenizer.ggml.tokens", gv.strings([...tokensOf(entries), ...added.map(([text]) => text)]));
  entries.set("tokenizer.ggml.token_type", gv.i32s([...typesOf(entries), ...added.map(([, type]) => type)]));
}

const oracles: LlamaModel[] = [];
after(async () => {
  for (const model of oracles) await model.dispose();
});

async function pair(path: string): Promise<{ tokenizer: Tokenizer; oracle: LlamaModel }> {
  const file = GgufFile.open(path);
  const tokenizer = Tokenizer.fromGguf(file.metadata);
  file.close();
  const oracle = await (await getOracle()).loadModel({ modelPath: path, vocabOnly: true });
  oracles.push(oracle);
  return { tokenizer, oracle };
}

function endOfGenerationIds(size: number, isEnd: (id: number) => boolean): number[] {
  return Array.from({ length: size }, (_, id) => id).filter(isEnd);
}

describe("unusual token types and roles, as llama.cpp reads them", needsOracle, async () => {
  const think = BASE_TOKENS.indexOf("<think>");
  const added: [string, number][] = [
    ["<|return|>", TYPE.CONTROL], ["<|call|>", TYPE.CONTROL], ["<|end|>", TYPE.CONTROL],
    ["<|fim_pad|>", TYPE.NORMAL], ["</s>", TYPE.NORMAL], ["<|tool_response>", TYPE.NORMAL],
    ["<|channel|>", TYPE.CONTROL], ["qxq", TYPE.USER_DEFINED], ["xqzz", TYPE.USER_DEFINED],
    ["x y", TYPE.NORMAL], ["<0x41>", TYPE.BYTE], ["[PAD9]", TYPE.UNUSED], ["zzz_undefined", TYPE.UNDEFINED],
    ["<unk>", TYPE.UNKNOWN], ["", TYPE.NORMAL], ["<|unused_7|>", TYPE.CONTROL],
  ];
  const idOf = (text: string) => BASE_TOKENS.length + added.findIndex(([t]) => t === text);
  const path = editedVocabGguf(KIND, (entries) => {
    const types = typesOf(entries);
    types[BASE_TOKENS.indexOf("<|im_end|>")] = TYPE.NORMAL;
    entries.set("tokenizer.ggml.token_type", gv.i32s(types));
    appendTokens(entries, added);
    entries.set("tokenizer.ggml.eot_token_id", gv.u32(think));
    entries.set("tokenizer.ggml.fim_sep_token_id", gv.u32(5));
  });
  const { tokenizer, oracle } = await pair(path);
  const texts = [
    "qxqzz", "qxqxqzzqxq", "xqzzqxq", "<|end|><|return|>", "<|channel|>x", "<unk>", "</s>", "<|fim_pad|>", "<|im_end|>",
    "x y", "<0x41>", "[PAD9]", "zzz_undefined", "<|unused_7|>", "<|tool_response>", "a<|call|>b",
  ];

  test("end-of-generation set: text rules, metadata EOT and FIM ids, <|end|> and </s> workarounds", () => {
    const ours = endOfGenerationIds(tokenizer.vocabSize, (id) => tokenizer.isEndOfGeneration(id));
    assert.deepEqual(ours, endOfGenerationIds(tokenizer.vocabSize, (id) => oracle.isEogToken(id as Token)));
    assert.ok(ours.includes(think) && ours.includes(5) && ours.includes(idOf("<|fim_pad|>")));
    assert.ok(!ours.includes(idOf("<|end|>")) && !ours.includes(idOf("</s>")));
  });

  test("each token decodes as llama.cpp renders it, with and without special tokens", () => {
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      for (const renderSpecial of [true, false]) {
        assert.equal(tokenizer.decode([id], { renderSpecial }), oracle.detokenize([id as Token], renderSpecial), `token ${id}`);
      }
    }
    assert.equal(tokenizer.decode([idOf("x y")]), "x[UNK_BYTE_0x20x y]y");
    assert.equal(tokenizer.decode([idOf("<0x41>")]), "A");
    assert.equal(tokenizer.decode([idOf("<|end|>")], { renderSpecial: false }), "<|end|>");
  });

  test("special tokens are matched longest first, user-defined ones even without parseSpecial", () => {
    for (const text of texts) {
      assert.deepEqual(tokenizer.encode(text), oracle.tokenize(text, true), JSON.stringify(text));
      assert.deepEqual(tokenizer.encode(text, { parseSpecial: false }), oracle.tokenize(text, false), `${JSON.stringify(text)} unparsed`);
    }
    const [short, long] = [idOf("qxq"), idOf("xqzz")];
    assert.deepEqual(tokenizer.encode("qxqzz").slice(-1), [long], "the longer token wins though the shorter starts first");
    assert.deepEqual(tokenizer.encode("qxq qxq", { parseSpecial: false }).filter((id) => id === short), [short, short]);
  });

  test("an empty token text is renamed as llama.cpp does", () => {
    const empty = idOf("");
    assert.equal(tokenizer.tokenText(empty), `[EMPTY_${empty}]`);
  });
});

describe("a vocabulary without BOS/EOS ids gets llama.cpp's default (11)", needsOracle, async () => {
  const path = editedVocabGguf(KIND, (entries) => {
    entries.delete("tokenizer.ggml.bos_token_id");
    entries.delete("tokenizer.ggml.eos_token_id");
  });
  const { tokenizer, oracle } = await pair(path);

  // node-llama-cpp reports BOS/EOS only when they are CONTROL tokens, which 11 (",") is not;
  // llama.cpp's EOS shows in its end-of-generation set.
  test("BOS, EOS and end of generation", () => {
    assert.equal(tokenizer.bosId, 11);
    assert.equal(tokenizer.eosId, 11);
    const ours = endOfGenerationIds(tokenizer.vocabSize, (id) => tokenizer.isEndOfGeneration(id));
    assert.deepEqual(ours, endOfGenerationIds(tokenizer.vocabSize, (id) => oracle.isEogToken(id as Token)));
    assert.deepEqual(tokenizer.encode("hi", { addBos: true }).slice(0, 1), [11]);
  });
});

describe("merge results missing from the vocabulary", needsOracle, async () => {
  const path = editedVocabGguf(KIND, (entries) => {
    const tokens = tokensOf(entries);
    tokens[tokens.indexOf("in")] = "[was in]";
    tokens[tokens.indexOf("ĠĠ")] = "[was two spaces]";
    entries.set("tokenizer.ggml.tokens", gv.strings(tokens));
  });
  const { tokenizer, oracle } = await pair(path);

  test("fall back to single ASCII characters and drop other bytes, as llama.cpp", () => {
    for (const text of ["in", "ing", "thin in", "x  ", "  ", "x    y", "\n\n  \n"]) {
      assert.deepEqual(tokenizer.encode(text), oracle.tokenize(text, true), JSON.stringify(text));
    }
    assert.equal(tokenizer.decode(tokenizer.encode("in")), "in");
    assert.equal(tokenizer.decode(tokenizer.encode("x  ")), "x", "llama.cpp loses the unspellable double space");
  });
});
