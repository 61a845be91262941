import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LlamaModel, Token } from "node-llama-cpp";
import { GgufFile } from "../src/gguf/index.js";
import { Random } from "../src/synth/random.js";
import { Tokenizer } from "../src/tokenizer/index.js";
import { TRICKY_TEXTS, randomTexts } from "./helpers/tokenizer-corpus.js";
import { testModel } from "./helpers/models.js";
import { getOracle, needsOracle } from "./helpers/oracle.js";

const TEXTS = [...TRICKY_TEXTS, ...randomTexts(1100, 20240607)];

/** Each disagreement with the text shown, so a failure says which input broke. */
function mismatches<T>(texts: readonly string[], ours: (text: string) => T, theirs: (text: string) => T): string[] {
  const found: string[] = [];
  for (const text of texts) {
    const [a, b] = [ours(text), theirs(text)];
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      found.push(`${JSON.stringify(text)}\n    ours:     ${JSON.stringify(a)}\n    llama.cpp: ${JSON.stringify(b)}`);
    }
  }
  return found;
}

function assertNone(found: string[], what: string): void {
  assert.equal(found.length, 0, `${found.length} ${what}:\n  ${found.slice(0, 20).join("\n  ")}`);
}

for (const preset of ["tiny", "demo"] as const) {
  describe(`tokenizer vs llama.cpp, vocabulary of preset ${preset}`, needsOracle, () => {
    let tokenizer: Tokenizer;
    let oracle: LlamaModel;

    before(async () => {
      const path = testModel({ preset });
      const file = GgufFile.open(path);
      try {
        tokenizer = Tokenizer.fromGguf(file.metadata);
      } finally {
        file.close();
      }
      oracle = await (await getOracle()).loadModel({ modelPath: path, vocabOnly: true });
    });

    after(async () => {
      await oracle.dispose();
    });

    test(`encodes ${TEXTS.length} texts to the same ids, special tokens parsed`, () => {
      assertNone(mismatches(TEXTS, (t) => tokenizer.encode(t), (t) => oracle.tokenize(t, true)), "texts tokenized differently");
    });

    test("encodes the same texts to the same ids with special tokens as plain text", () => {
      const found = mismatches(TEXTS, (t) => tokenizer.encode(t, { parseSpecial: false }), (t) => oracle.tokenize(t, false));
      assertNone(found, "texts tokenized differently");
    });

    test("decode(encode(text)) gives the text back exactly", () => {
      assertNone(mismatches(TEXTS, (t) => tokenizer.decode(tokenizer.encode(t)), (t) => t), "texts changed by a round trip");
    });

    test("decodes encoded texts as llama.cpp detokenizes them, with and without special tokens", () => {
      const ids = (t: string) => oracle.tokenize(t, true);
      assertNone(mismatches(TEXTS, (t) => tokenizer.decode(ids(t)), (t) => oracle.detokenize(ids(t), true)), "decodings differ");
      const plain = mismatches(TEXTS, (t) => tokenizer.decode(ids(t), { renderSpecial: false }), (t) => oracle.detokenize(ids(t), false));
      assertNone(plain, "decodings without special tokens differ");
    });

    test("decodes random id sequences (split characters, unused and special tokens) as llama.cpp", () => {
      const rng = new Random(99, 3);
      const sequences = Array.from({ length: 600 }, () =>
        Array.from({ length: 1 + Math.floor(rng.uniform() * 6) }, () => {
          const range = rng.uniform() < 0.5 ? 512 : tokenizer.vocabSize;
          return Math.floor(rng.uniform() * range);
        }),
      );
      const keys = sequences.map((ids) => ids.join(","));
      const idsOf = (key: string) => key.split(",").map(Number) as Token[];
      for (const renderSpecial of [true, false]) {
        const found = mismatches(keys, (k) => tokenizer.decode(idsOf(k), { renderSpecial }), (k) => oracle.detokenize(idsOf(k), renderSpecial));
        assertNone(found, `id sequences decoded differently (renderSpecial ${renderSpecial})`);
      }
    });

    test("a lone surrogate is read as U+FFFD, as on its way into llama.cpp", () => {
      for (const text of ["\ud800", "a\udc00b", "x\ud83d"]) {
        assert.deepEqual(tokenizer.encode(text), oracle.tokenize(text, true), JSON.stringify(text));
        assert.equal(tokenizer.decode(tokenizer.encode(text)), text.replace(/[\ud800-\udfff]/g, "\ufffd"));
      }
    });

    test("BOS, EOS and end-of-generation tokens are llama.cpp's", () => {
      assert.equal(tokenizer.bosId, oracle.tokens.bos);
      assert.equal(tokenizer.eosId, oracle.tokens.eos);
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let id = 0; id < tokenizer.vocabSize; id++) {
        if (tokenizer.isEndOfGeneration(id)) ours.push(id);
        if (oracle.isEogToken(id as Token)) theirs.push(id);
      }
      assert.deepEqual(ours, theirs);
      assert.ok(ours.includes(tokenizer.eosId!));
    });
  });
}
