import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { GgufFile } from "../src/gguf/reader.js";
import { ggmlTypeName } from "../src/gguf/types.js";
import { readConfig } from "../src/model/config.js";
import { LLAMA_FTYPES } from "../src/bench/llama-direct.js";
import { agreement, engineLogits, oracleLogits, randomTokens } from "./helpers/compare.js";
import { llamaQuantizedModel } from "./helpers/models.js";

// Files made by llama.cpp's own quantizer (llama_model_quantize of the prebuilt libllama), with its
// default per-tensor mix for every file type it writes, from F32 models whose rows are multiples of
// 256 values, tied and untied: our logits against llama.cpp's on the same file. Quantized models
// cannot agree bit for bit: the integer sums do, but float sums in another order make some
// activation's quantization round the other way now and then, so the bounds are statistical.

const POSITIONS = 300;

function describeFile(path: string): { vocab: number; types: string } {
  const file = GgufFile.open(path);
  try {
    const counts = new Map<string, number>();
    for (const t of file.tensors) counts.set(ggmlTypeName(t.type), (counts.get(ggmlTypeName(t.type)) ?? 0) + 1);
    return { vocab: readConfig(file).vocabSize, types: [...counts].map(([name, n]) => `${name}×${n}`).join(" ") };
  } finally {
    file.close();
  }
}

for (const tied of [false, true]) {
  describe(`llama.cpp's quantizer, ${tied ? "tied" : "separate"} output`, () => {
    for (const fileType of LLAMA_FTYPES) {
      test(`${fileType.name}: mean KL ≤ 1e-3 and top-1 ≥ 99 % over ${POSITIONS} positions`, async () => {
        const path = llamaQuantizedModel({ preset: "tiny-k", shape: { tiedOutput: tied } }, fileType);
        const { vocab, types } = describeFile(path);
        const tokens = randomTokens(POSITIONS, vocab, 3);
        const result = agreement(await oracleLogits(path, tokens, vocab), await engineLogits(path, tokens));
        assert.equal(result.positions, POSITIONS);
        const what = `${fileType.name} (${types}): KL ${result.meanKl.toExponential(2)}, top-1 ${result.top1}`;
        assert.ok(result.meanKl <= 1e-3, what);
        assert.ok(result.top1 >= 0.99, what);
      });
    }
  });
}
