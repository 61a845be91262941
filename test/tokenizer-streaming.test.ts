import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { GgufFile } from "../src/gguf/index.js";
import { Random } from "../src/synth/random.js";
import { StreamingDecoder, Tokenizer } from "../src/tokenizer/index.js";
import { TRICKY_TEXTS, randomTexts } from "./helpers/tokenizer-corpus.js";
import { testModel } from "./helpers/models.js";

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function stream(decoder: StreamingDecoder, ids: readonly number[]): string[] {
  return [...ids.map((id) => decoder.push(id)), decoder.flush()];
}

for (const preset of ["tiny", "demo"] as const) {
  describe(`StreamingDecoder, vocabulary of preset ${preset}`, () => {
    let tokenizer: Tokenizer;

    before(() => {
      const file = GgufFile.open(testModel({ preset }));
      tokenizer = Tokenizer.fromGguf(file.metadata);
      file.close();
    });

    test("token by token, pieces join to the decoded text and never hold part of a character", () => {
      const texts = [...TRICKY_TEXTS, ...randomTexts(300, 11)].filter((text) => !text.includes("\ufffd"));
      const decoder = new StreamingDecoder(tokenizer);
      for (const text of texts) {
        const pieces = stream(decoder, tokenizer.encode(text));
        assert.equal(pieces.join(""), text);
        for (const piece of pieces) {
          assert.ok(!piece.includes("\ufffd") && !LONE_SURROGATE.test(piece), `${JSON.stringify(piece)} from ${JSON.stringify(text)}`);
        }
      }
    });

    test("an emoji spread over byte-level tokens appears whole, with its last byte", () => {
      const decoder = new StreamingDecoder(tokenizer);
      const ids = tokenizer.encode("😀");
      if (preset === "tiny") assert.ok(ids.length > 1, "the small vocabulary spells 😀 with several byte-level tokens");
      assert.deepEqual(stream(decoder, ids), [...ids.slice(1).map(() => ""), "😀", ""]);
      for (const emoji of ["👍🏽", "🧑🏻‍💻", "🇯🇵", "𝟙"]) {
        const pieces = stream(decoder, tokenizer.encode(emoji));
        assert.equal(pieces.join(""), emoji);
        assert.ok(pieces.every((piece) => !LONE_SURROGATE.test(piece) && !piece.includes("\ufffd")), JSON.stringify(pieces));
      }
    });

    test("bytes that never complete a character become U+FFFD at flush, and the decoder starts over", () => {
      const ids = tokenizer.encode("😀");
      const decoder = new StreamingDecoder(tokenizer);
      if (ids.length > 1) {
        assert.equal(decoder.push(ids[0]!), "");
        assert.equal(decoder.flush(), "\ufffd");
      }
      assert.equal(stream(decoder, ids).join(""), "😀");
    });

    test("any id sequence streams to exactly what decode gives, invalid UTF-8 included", () => {
      const rng = new Random(5, 1);
      const decoder = new StreamingDecoder(tokenizer);
      for (let i = 0; i < 300; i++) {
        const ids = Array.from({ length: 1 + Math.floor(rng.uniform() * 8) }, () => Math.floor(rng.uniform() * (rng.uniform() < 0.7 ? 400 : tokenizer.vocabSize)));
        assert.equal(stream(decoder, ids).join(""), tokenizer.decode(ids), `ids ${ids.join(",")}`);
      }
    });

    test("renderSpecial: false leaves control tokens out, as decode does", () => {
      const ids = tokenizer.encode("<|im_start|>assistant\n😀 hi<|im_end|>");
      const pieces = stream(new StreamingDecoder(tokenizer, { renderSpecial: false }), ids);
      assert.equal(pieces.join(""), tokenizer.decode(ids, { renderSpecial: false }));
      assert.equal(pieces.join(""), "assistant\n😀 hi");
    });

    test("an id outside the vocabulary is refused", () => {
      assert.throws(() => new StreamingDecoder(tokenizer).push(tokenizer.vocabSize), RangeError);
    });
  });
}
