import { test } from "node:test";
import assert from "node:assert/strict";
import { GgmlType } from "../src/gguf/types.js";
import { loadModel } from "../src/engine/model.js";
import { COLD_FREQUENCY, measureActivity } from "../src/engine/activity.js";
import { testModel } from "./helpers/models.js";

async function measure(spec: Parameters<typeof testModel>[0], tokens = 384) {
  const model = await loadModel(testModel(spec), { contextSize: 512 });
  try {
    return await measureActivity(model, tokens);
  } finally {
    await model.close();
  }
}

const shape = { layers: 4, hidden: 128, expertFfn: 128, experts: 16, expertsUsed: 2, vocab: 4000 };

test("a skewed, sparse synthetic model measures as its file claims", async () => {
  const report = await measure({ preset: "tiny", type: GgmlType.Q8_0, shape, routing: { hotFraction: 0.25, hotFrequency: 0.4 }, sparsity: 0.7 });
  const { claims } = report;
  assert.equal(claims.hotFraction, 0.25);
  assert.equal(claims.sparsity, Math.fround(0.7));
  for (let l = 0; l < report.frequencies.length; l++) {
    const hot = new Set(claims.hotExperts![l]);
    assert.equal(hot.size, 4);
    const hotMean = [...hot].reduce((sum, e) => sum + report.frequencies[l]![e]!, 0) / hot.size;
    assert.ok(Math.abs(hotMean - 0.4) <= 0.1, `layer ${l}: hot experts chosen ${hotMean.toFixed(3)} of tokens, claimed 0.4`);
    for (let e = 0; e < 16; e++) {
      if (!hot.has(e)) assert.ok(report.frequencies[l]![e]! < COLD_FREQUENCY, `layer ${l} expert ${e}: ${report.frequencies[l]![e]}`);
    }
  }
  assert.ok(Math.abs(report.sparsity - 0.7) <= 0.05, `measured sparsity ${report.sparsity.toFixed(3)}, claimed 0.7`);
});

test("without skew or sparsity knobs routing is even and about half the gates are off", async () => {
  const report = await measure({ preset: "tiny", type: GgmlType.Q8_0, shape, routing: null, sparsity: null });
  assert.equal(report.claims.hotFraction, undefined);
  assert.ok(report.hotShare === 0, `hot share ${report.hotShare}`);
  assert.ok(Math.abs(report.sparsity - 0.5) <= 0.06, `measured sparsity ${report.sparsity.toFixed(3)}`);
});
