import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufError } from "../src/gguf/errors.js";
import { GgufFile } from "../src/gguf/reader.js";
import { GgmlType } from "../src/gguf/types.js";
import { Kernels } from "../src/kernels/api.js";
import { ReferenceKernels } from "../src/kernels/reference.js";
import { readConfig } from "../src/model/config.js";
import { loadSmallThinker } from "../src/model/load.js";
import { unsupportedTensors } from "../src/model/support.js";
import { agreement, oracleLogits, randomTokens, testKernels } from "./helpers/compare.js";
import { ggmlBase } from "./helpers/ggml-ffi.js";
import { testModel } from "./helpers/models.js";
import { patchTensorTypes, rewriteGguf } from "./helpers/rewrite.js";

const dir = mkdtempSync(join(tmpdir(), "st-support-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const ggml = ggmlBase();
const skipGgml = typeof ggml === "string" ? ggml : false;
const quantizeWithGgml = (type: GgmlType, values: Float32Array, rows: number, perRow: number) => {
  if (typeof ggml === "string") throw new Error(ggml);
  return ggml.quantizeChunk(type, values, rows, perRow);
};

const tiny = () => testModel({ preset: "tiny", shape: { tiedOutput: false } });
const EXPERT_TENSORS = [0, 1].flatMap((l) => ["gate", "up", "down"].map((m) => `blk.${l}.ffn_${m}_exps.weight`));

/** The load's refusal, checked to be a GgufError naming the file and the key "tensor types". */
function refusal(path: string, kernels: Kernels): string {
  try {
    loadSmallThinker(path, kernels).close();
  } catch (error) {
    assert.ok(error instanceof GgufError, `expected a GgufError, got ${error}`);
    assert.equal(error.field, "tensor types");
    assert.ok(error.message.startsWith(`${path}: tensor types: cannot run `), error.message);
    return error.message;
  }
  assert.fail(`${path} loaded`);
}

test("a file with tensors of a type id this ggml does not know reads as a configuration and is refused naming every such tensor", async () => {
  const path = join(dir, "unknown.gguf");
  patchTensorTypes(tiny(), path, { "blk.0.attn_q.weight": 57, "blk.1.attn_q.weight": 57, "output.weight": 57 });
  const file = GgufFile.open(path);
  try {
    const config = readConfig(file);
    assert.equal(config.layers, 2);
    assert.equal(config.tiedOutput, false);
    assert.deepEqual(unsupportedTensors(file, config, new ReferenceKernels()).map((g) => [g.typeName, g.tensors]), [
      ["57 (unknown)", ["output.weight", "blk.0.attn_q.weight", "blk.1.attn_q.weight"]],
    ]);
  } finally {
    file.close();
  }
  const message = refusal(path, await testKernels());
  assert.match(message, /cannot run 3 tensors of type 57 \(unknown\): 57 \(unknown\) in output\.weight, blk\.0\.attn_q\.weight, blk\.1\.attn_q\.weight: a type id this version of ggml does not define$/);
});

test("several unsupported types are each named with their tensor count, by the kernels' own support", { skip: skipGgml }, async () => {
  const nvfp4 = join(dir, "several-nvfp4.gguf");
  rewriteGguf(tiny(), nvfp4, { retype: { types: { "blk.0.ffn_gate_exps.weight": GgmlType.NVFP4, "blk.0.ffn_up_exps.weight": GgmlType.NVFP4 }, quantize: quantizeWithGgml } });
  const path = join(dir, "several.gguf");
  patchTensorTypes(nvfp4, path, {
    "blk.0.attn_k.weight": 57, "blk.1.attn_k.weight": 57, "blk.1.attn_v.weight": 57,
    "blk.1.ffn_norm.weight": GgmlType.F16,
    "blk.1.ffn_gate_inp.weight": GgmlType.I32,
  });
  const wasm = refusal(path, await testKernels());
  assert.match(wasm, /cannot run 3 tensors of type 57 \(unknown\), 2 of NVFP4, 1 of F16 and 1 of I32: /);
  assert.match(wasm, /57 \(unknown\) in blk\.0\.attn_k\.weight, blk\.1\.attn_k\.weight, blk\.1\.attn_v\.weight: a type id this version of ggml does not define; /);
  assert.match(wasm, /NVFP4 in blk\.0\.ffn_gate_exps\.weight, blk\.0\.ffn_up_exps\.weight: the wasm-\S+ kernels do not implement it, the reference kernels do \(--kernels reference, slow\); /);
  assert.match(wasm, /F16 in blk\.1\.ffn_norm\.weight: norms must be F32; /);
  assert.match(wasm, /I32 in blk\.1\.ffn_gate_inp\.weight: not a weight type: ggml has no product for it$/);
  // The reference kernels implement every type of the format table: NVFP4 is no problem for them.
  const reference = refusal(path, new ReferenceKernels());
  assert.match(reference, /cannot run 3 tensors of type 57 \(unknown\), 1 of F16 and 1 of I32: /);
  assert.doesNotMatch(reference, /NVFP4/);
});

test("NVFP4 experts, which the wasm kernels do not run, run on the reference kernels and agree with llama.cpp", { skip: skipGgml }, async () => {
  const path = join(dir, "nvfp4-experts.gguf");
  rewriteGguf(tiny(), path, { retype: { types: Object.fromEntries(EXPERT_TENSORS.map((name) => [name, GgmlType.NVFP4])), quantize: quantizeWithGgml } });
  assert.match(refusal(path, await testKernels()), /cannot run 6 tensors of type NVFP4: NVFP4 in blk\.0\.ffn_gate_exps\.weight, blk\.0\.ffn_up_exps\.weight, blk\.0\.ffn_down_exps\.weight and 3 more: the wasm-\S+ kernels do not implement it/);
  const tokens = randomTokens(64, 1000, 5);
  const model = loadSmallThinker(path, new ReferenceKernels(), { kvType: "f32", contextSize: 128 });
  const ours: Float32Array[] = [];
  try {
    model.forward(tokens, { logits: "all", onLogits: (i, logits) => (ours[i] = Float32Array.from(logits)) });
  } finally {
    model.close();
  }
  const result = agreement(await oracleLogits(path, tokens, ours[0]!.length), ours);
  assert.equal(result.positions, tokens.length);
  assert.ok(result.meanKl <= 1e-3 && result.top1 >= 0.99, `KL ${result.meanKl}, top-1 ${result.top1}`);
});

test("tensors the engine never reads are not checked: a PowerInfer predictor of a type id this ggml does not know changes nothing", async () => {
  const spec = { preset: "tiny", shape: { downLayout: "transposed" as const, expertFfn: 96 }, file: { layout: "powerinfer" as const, predictor: { rank: 32, dims: 1 as const } } };
  const path = join(dir, "unknown-predictor.gguf");
  patchTensorTypes(testModel(spec), path, { "lm_head_profiler.weight": 57 });
  const tokens = randomTokens(32, 1000, 9);
  const kernels = await testKernels();
  const logits = (file: string) => {
    const model = loadSmallThinker(file, kernels, { kvType: "f32", contextSize: 64 });
    const rows: Float32Array[] = [];
    try {
      model.forward(tokens, { logits: "all", onLogits: (i, row) => (rows[i] = Float32Array.from(row)) });
    } finally {
      model.close();
    }
    return rows;
  };
  assert.deepEqual(logits(path), logits(testModel(spec)));
});
