import assert from "node:assert/strict";
import { test } from "node:test";
import { GgmlType, tensorByteLength } from "../src/gguf/types.js";
import { decodeTraffic, readModelHeader } from "../src/bench/roofline.js";
import { testModel } from "./helpers/models.js";

const EXPERT = /_exps\.weight$/;

for (const [preset, tied] of [["tiny-swa", true], ["demo", false]] as const) {
  test(`decode traffic of ${preset} (${tied ? "tied" : "untied"} head) counts each tensor's bytes once, the chosen experts alone, the window's KV`, () => {
    const model = readModelHeader(testModel({ preset, type: GgmlType.Q8_0 }));
    const { config, tensors } = model;
    assert.equal(config.tiedOutput, tied);
    const bytes = (name: string) => tensorByteLength(tensors.find((t) => t.name === name)!);
    const sumOf = (pick: (name: string) => boolean) => tensors.filter((t) => pick(t.name)).reduce((s, t) => s + tensorByteLength(t), 0);
    const embedding = bytes("token_embd.weight");
    const experts = (part: string) => sumOf((n) => n.endsWith(`ffn_${part}_exps.weight`));
    const chosen = config.expertsUsed / config.experts;

    const dense = decodeTraffic(tensors, config, { context: 1, activeShare: 1, kvElementBytes: 2 });
    // Everything but the embedding matrix and the unchosen experts, plus one embedding row
    const everything = sumOf(() => true);
    const expected = everything - embedding + embedding / config.vocabSize - (1 - chosen) * sumOf((n) => EXPERT.test(n)) + (tied ? embedding : 0);
    assert.ok(Math.abs(dense.dense + dense.experts + dense.head - expected) < 1e-6 * expected, `${dense.dense + dense.experts + dense.head} vs ${expected}`);
    assert.equal(dense.head, tied ? embedding : bytes("output.weight"));

    const sparse = decodeTraffic(tensors, config, { context: 1, activeShare: 0.25, kvElementBytes: 2 });
    assert.ok(Math.abs(dense.experts - sparse.experts - 0.75 * chosen * (experts("up") + experts("down"))) < 1e-6 * dense.experts);
    assert.equal(sparse.dense, dense.dense);

    const row = 2 * config.kvHeads * config.headDim * 2;
    assert.equal(dense.kv, config.layers * row);
    const long = decodeTraffic(tensors, config, { context: 5000, activeShare: 1, kvElementBytes: 2 });
    const windows = config.layerPlan.map((l) => Math.min(5000, l.window));
    assert.equal(long.kv, windows.reduce((s, w) => s + w * row, 0));
    if (config.slidingWindow !== null) assert.ok(windows.includes(config.slidingWindow) && windows.includes(5000), "both kinds of layer");
    assert.equal(long.total, long.dense + long.experts + long.head + long.kv);
  });
}
