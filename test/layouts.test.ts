import { test } from "node:test";
import assert from "node:assert/strict";
import { GgufFile } from "../src/gguf/reader.js";
import { GgmlType, GgufValueType, ggmlTypeName } from "../src/gguf/types.js";
import { readConfig } from "../src/model/config.js";
import { PREDICTOR_TENSOR, predictorRank } from "../src/model/tensors.js";
import { agreement, engineLogits, oracleLogits, randomTokens } from "./helpers/compare.js";
import { ggmlBase } from "./helpers/ggml-ffi.js";
import { getOracle } from "./helpers/oracle.js";
import { TestModelSpec, testModel } from "./helpers/models.js";

// The layouts published SmallThinker GGUFs have (reference/smallthinker-spec.md §3), written by our
// generator: on the real 4B and 21B shapes as headers alone (the files would be 2–12 GB; a header is
// all that says what a file is), and on small shapes with the same names and keys, whole, for the
// forward pass.

const ggml = ggmlBase();
const skipGgml = typeof ggml === "string" ? ggml : false;

/**
 * The keys of a 4B file from PowerInfer's converter, in its order: 30, as the dump of the published
 * SmallThinker-4B-A0.6B-Instruct.Q4_0.powerinfer.gguf counts (PowerInfer issue #263, which shows
 * the first four); llama.cpp's converter adds expert_gating_func (31, as its published file).
 */
const POWERINFER_KEYS = [
  "general.architecture", "general.type", "general.name", "general.finetune", "general.size_label",
  "smallthinker.block_count", "smallthinker.context_length", "smallthinker.embedding_length",
  "smallthinker.attention.head_count", "smallthinker.attention.head_count_kv", "smallthinker.rope.freq_base",
  "smallthinker.attention.layer_norm_rms_epsilon", "smallthinker.attention.key_length", "smallthinker.attention.value_length",
  "general.file_type", "smallthinker.expert_count", "smallthinker.expert_used_count",
  "smallthinker.expert_feed_forward_length", "smallthinker.feed_forward_length", "general.quantization_version",
  "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
  "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token",
  "tokenizer.chat_template",
];
const LLAMA_KEYS = [...POWERINFER_KEYS.slice(0, 19), "smallthinker.expert_gating_func", ...POWERINFER_KEYS.slice(19)];

/** Keys a real file has: all but the synth.* ones that mark our files as random weights. */
function realKeys(file: GgufFile): string[] {
  return [...file.metadata.keys()].filter((key) => !key.startsWith("synth."));
}

function withHeader<T>(spec: TestModelSpec, use: (file: GgufFile) => T): T {
  const file = GgufFile.open(testModel(spec), { checkData: false });
  try {
    return use(file);
  } finally {
    file.close();
  }
}

const typesOf = (file: GgufFile, role: RegExp) => new Set(file.tensors.filter((t) => role.test(t.name)).map((t) => ggmlTypeName(t.type)));

for (const dims of [1, 2] as const) {
  test(`PowerInfer's 4B (real shape, header): 323 tensors, 30 keys, no gating key, transposed down, every matrix Q4_0, a {N${dims === 2 ? ", 1" : ""}} predictor`, () => {
    const rank = 256;
    withHeader({ preset: "4b", type: GgmlType.Q4_0, shape: { downLayout: "transposed", tiedOutput: true }, file: { layout: "powerinfer", name: "4b_v7", predictor: { rank, dims }, headerOnly: true } }, (file) => {
      assert.equal(file.tensors.length, 323);
      assert.deepEqual(realKeys(file), POWERINFER_KEYS);
      assert.equal(file.metadata.getString("general.name"), "4b_v7");
      assert.equal(file.metadata.getString("general.finetune"), "4b_v7");
      assert.equal(file.metadata.getString("tokenizer.ggml.pre"), "qwen2");
      assert.equal(file.metadata.getStringArray("tokenizer.ggml.tokens").length, 151936);
      assert.ok(!file.tensorsByName.has("output.weight"));
      assert.deepEqual(typesOf(file, /^(token_embd|blk\.\d+\.(attn_[qkv]|attn_output|ffn_(gate|up|down)_exps))\.weight$/), new Set(["Q4_0"]));
      assert.deepEqual(typesOf(file, /_norm\.weight$|ffn_gate_inp/), new Set(["F32"]));
      assert.deepEqual(file.tensor("blk.31.ffn_down_exps.weight").dims, [1536, 768, 32]);
      const predictor = file.tensor(PREDICTOR_TENSOR);
      const values = rank * (1536 + 151936);
      assert.deepEqual(predictor.dims, dims === 1 ? [values] : [values, 1]);
      assert.equal(predictor.type, GgmlType.Q4_0);
      const config = readConfig(file);
      assert.equal(predictorRank(predictor, config), rank);
      assert.deepEqual([config.gating, config.downLayout, config.tiedOutput, config.slidingWindow], ["sigmoid", "transposed", true, null]);
    });
  });
}

test("llama.cpp's 4B (real shape, header): 323 tensors with output.weight, 31 keys, expert_gating_func 2, qwen2 pre-tokenizer", () => {
  withHeader({ preset: "4b", type: GgmlType.Q4_0, file: { layout: "llama.cpp", name: "4b_v7", headerOnly: true } }, (file) => {
    assert.equal(file.tensors.length, 323);
    assert.deepEqual(realKeys(file), LLAMA_KEYS);
    assert.deepEqual(file.metadata.get("smallthinker.expert_gating_func"), { type: GgufValueType.UINT32, value: 2 });
    assert.equal(file.metadata.getString("tokenizer.ggml.pre"), "qwen2");
    assert.deepEqual(file.tensor("output.weight").dims, [1536, 151936]);
    assert.deepEqual(file.tensor("blk.0.ffn_down_exps.weight").dims, [768, 1536, 32]);
    assert.ok(!file.tensorsByName.has(PREDICTOR_TENSOR));
    // gguf-py's size label over these tensors: 32 experts, 758 M parameters with one expert per layer.
    assert.equal(file.metadata.getString("general.size_label"), "32x758M");
    const config = readConfig(file);
    assert.deepEqual([config.layers, config.hidden, config.gating, config.downLayout, config.tiedOutput], [32, 1536, "sigmoid", "upstream", false]);
  });
});

test("llama.cpp's 21B (real shape, header): 52 layers, sliding window 4096 on 39 of them, size label 64x2.2B, query width 3584 ≠ hidden 2560", () => {
  withHeader({ preset: "21b", type: GgmlType.Q4_0, file: { layout: "llama.cpp", name: "21b", headerOnly: true } }, (file) => {
    assert.equal(file.tensors.length, 52 * 10 + 3);
    assert.deepEqual(realKeys(file), [...LLAMA_KEYS.slice(0, 20), "smallthinker.attention.sliding_window", ...LLAMA_KEYS.slice(20)]);
    // The community 21B files' label, which the parameter count of the real shape must reproduce.
    assert.equal(file.metadata.getString("general.size_label"), "64x2.2B");
    assert.equal(file.metadata.getInteger("smallthinker.attention.sliding_window"), 4096);
    assert.deepEqual(file.tensor("blk.0.attn_q.weight").dims, [2560, 3584]);
    assert.deepEqual(file.tensor("blk.0.attn_output.weight").dims, [3584, 2560]);
    const config = readConfig(file);
    assert.deepEqual([config.layers, config.heads * config.headDim, config.hidden, config.experts, config.expertsUsed], [52, 3584, 2560, 64, 6]);
    const nope = config.layerPlan.flatMap((layer, i) => (layer.rope ? [] : [i]));
    assert.deepEqual(nope, Array.from({ length: 13 }, (_, i) => 4 * i));
    assert.ok(config.layerPlan.every((layer) => (layer.rope ? layer.window === 4096 : layer.window === Infinity)));
  });
});

test("ggml's own reader reads the real-shape headers of every layout as we do", { skip: skipGgml }, () => {
  const base = typeof ggml === "string" ? undefined : ggml;
  const specs: TestModelSpec[] = [
    { preset: "4b", type: GgmlType.Q4_0, shape: { downLayout: "transposed", tiedOutput: true }, file: { layout: "powerinfer", name: "4b_v7", predictor: { rank: 256, dims: 1 }, headerOnly: true } },
    { preset: "21b", type: GgmlType.Q4_0, file: { layout: "llama.cpp", name: "21b", headerOnly: true } },
  ];
  for (const spec of specs) {
    withHeader(spec, (file) => {
      const seen = base!.readGguf(file.path);
      assert.ok(seen, `ggml rejected ${file.path}`);
      assert.equal(seen.dataOffset, file.dataOffset);
      assert.deepEqual([...seen.kv.keys()], [...file.metadata.keys()]);
      assert.deepEqual(
        seen.tensors,
        file.tensors.map((t) => ({ name: t.name, type: t.type, ne: [0, 1, 2, 3].map((d) => t.dims[d] ?? 1), offset: t.relativeOffset, size: t.byteLength })),
      );
    });
  }
});

/** Small shapes, whole files: the same names and keys as the real ones. */
const tinyPowerInfer = (predictor: { rank: number; dims: 1 | 2 } | undefined) =>
  testModel({ preset: "tiny", shape: { downLayout: "transposed", tiedOutput: true, expertFfn: 96 }, file: { layout: "powerinfer", name: "4b_v7", predictor } });
const tinyLlama = () => testModel({ preset: "tiny", shape: { tiedOutput: true, expertFfn: 96 }, file: { layout: "llama.cpp", name: "4b_v7" } });

test("llama.cpp's layout, small: its keys change nothing, our logits agree with llama.cpp's on the 4B-like and 21B-like shapes", async () => {
  for (const path of [tinyLlama(), testModel({ preset: "tiny-21b", shape: { slidingWindow: 4096 }, file: { layout: "llama.cpp", name: "21b" } })]) {
    const tokens = randomTokens(64, 1000);
    const result = agreement(await oracleLogits(path, tokens, 1261), await engineLogits(path, tokens));
    assert.ok(result.maxRelative <= 1e-4, `${path}: max relative difference ${result.maxRelative}`);
  }
});

test("PowerInfer's layout, small: the predictor (either shape) is ignored bit for bit, and the logits are llama.cpp's layout's", async () => {
  const tokens = randomTokens(64, 1000, 3);
  const without = await engineLogits(tinyPowerInfer(undefined), tokens);
  // rank 32: 32 × (64 + 1261) values, whole F32 "blocks"; either stored shape.
  for (const dims of [1, 2] as const) assert.deepEqual(await engineLogits(tinyPowerInfer({ rank: 32, dims }), tokens), without, `predictor {N${dims === 2 ? ", 1" : ""}}`);
  // The same weights in llama.cpp's layout: the down matrices transposed and the gating key present.
  const result = agreement(await engineLogits(tinyLlama(), tokens), without);
  assert.ok(result.maxRelative <= 1e-5, `max relative difference ${result.maxRelative}`);
});

test("upstream llama.cpp refuses each of PowerInfer's differences, the transposed down matrices and the predictor tensor, where this engine runs both", async () => {
  const llama = await getOracle();
  const predictorOnly = testModel({ preset: "tiny", shape: { tiedOutput: true, expertFfn: 96 }, file: { layout: "powerinfer", name: "4b_v7", predictor: { rank: 32, dims: 1 } } });
  for (const path of [predictorOnly, tinyPowerInfer(undefined)]) {
    await assert.rejects(llama.loadModel({ modelPath: path }), Error, path);
    assert.equal((await engineLogits(path, [1, 2, 3])).length, 3);
  }
});
