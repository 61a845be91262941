import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgmlType } from "../src/gguf/types.js";
import { gv } from "../src/gguf/writer.js";
import type { ModelReport } from "../src/cli/model-report.js";
import { ggmlBase } from "./helpers/ggml-ffi.js";
import { testModel } from "./helpers/models.js";
import { patchTensorTypes, rewriteGguf } from "./helpers/rewrite.js";

const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "st-info-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const ggml = ggmlBase();
const skipGgml = typeof ggml === "string" ? ggml : false;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function report(args: string[]): Promise<ModelReport> {
  const { code, stdout, stderr } = await run(["info", "--json", ...args]);
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout) as ModelReport;
}

const roleTypes = (r: ModelReport, role: string) => r.tensors.byRole.find((entry) => entry.role === role)?.types.map((t) => [t.type, t.count]);

test("a synthetic model runs: its metadata, tensors by role, configuration and plan", async () => {
  const path = testModel({ preset: "tiny" });
  const { code, stdout, stderr } = await run(["info", "-m", path]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^metadata: \d+ keys$/m);
  assert.match(stdout, /^ {2}tokenizer\.ggml\.tokens +array of STRING 1261 values: \["!", "\\"", "#", /m);
  assert.match(stdout, /^ {2}expert gate +F32 +2 +\d/m);
  assert.match(stdout, /^ {2}layers 2, hidden 64, vocabulary 1261, context 8192$/m);
  assert.match(stdout, /^ {2}output head: tied to the token embeddings$/m);
  assert.match(stdout, /^memory plan \(no budget: every expert resident\):$/m);
  assert.match(stdout, /^runs: yes, with the wasm-\S+ kernels$/m);
  const json = await report(["-m", path]);
  assert.equal(json.runnable, true);
  assert.equal(json.tensors.count, 2 * 10 + 2);
  assert.deepEqual(roleTypes(json, "token embeddings"), [["F32", 1]]);
  assert.deepEqual(roleTypes(json, "norms"), [["F32", 5]]);
  assert.equal(json.plans.length, 1);
});

test("PowerInfer's layout, split, with a predictor of shape {N, 1}: all of it said, and it runs", async () => {
  const path = testModel({ preset: "tiny-swa", shape: { downLayout: "transposed", tiedOutput: true, expertFfn: 96 }, file: { layout: "powerinfer", name: "4b_v7", predictor: { rank: 32, dims: 2 }, split: 3 } });
  const json = await report(["-m", path]);
  assert.equal(json.files.length, 3);
  assert.equal(json.files.reduce((sum, f) => sum + f.tensors, 0), json.tensors.count);
  assert.equal(json.runnable, true, json.problems.join("; "));
  assert.deepEqual(json.predictor, { tensor: "lm_head_profiler.weight", dims: [32 * (64 + 1261), 1], type: "F32", rank: 32 });
  assert.deepEqual(roleTypes(json, "LM-head predictor"), [["F32", 1]]);
  assert.ok(!("error" in json.config));
  if (!("error" in json.config)) {
    assert.deepEqual([json.config.downLayout, json.config.gatingKey, json.config.gating, json.config.tiedOutput], ["transposed", null, "sigmoid", true]);
    assert.deepEqual(json.config.layerPlan, ["NoPE + global attention: 2 layers (0, 4)", "RoPE + sliding window 4096: 6 layers (1-3, 5-7)"]);
  }
  const { stdout } = await run(["info", "-m", path]);
  assert.match(stdout, /split in 3 parts/);
  assert.match(stdout, /sigmoid gating \(expert_gating_func absent: the HF model's default\)/);
  assert.match(stdout, /LM-head predictor: lm_head_profiler\.weight \{42400, 1\} F32, rank 32; ignored/);
});

test("the real 4B's header, without weights: described, planned at the default and at --memory, and said not to run for want of data", async () => {
  const path = testModel({ preset: "4b", type: GgmlType.Q4_0, shape: { downLayout: "transposed", tiedOutput: true }, file: { layout: "powerinfer", name: "4b_v7", predictor: { rank: 256, dims: 1 }, headerOnly: true } });
  const json = await report(["-m", path, "--memory", "1GiB"]);
  assert.equal(json.tensors.count, 323);
  assert.deepEqual(json.metadata.find((m) => m.key === "tokenizer.ggml.tokens")?.value, { length: 151936, first: ["!", '"', "#", "$", "%", "&", "'", "("] });
  assert.equal(json.runnable, false);
  assert.deepEqual(json.problems, [`the data of 323 of 323 tensors lies beyond the end of its file (token_embd.weight, blk.0.attn_norm.weight, blk.0.attn_q.weight, …): a truncated file, or a header without weights`]);
  const [all, budgeted] = json.plans;
  assert.ok(all!.plan!.allResident && all!.plan!.cachedExperts === 1024);
  assert.ok(budgeted!.budget === 2 ** 30 && budgeted!.plan!.total <= 2 ** 30 && budgeted!.plan!.cachedExperts < 1024, JSON.stringify(budgeted));
});

test("a budget below the minimum: the plan says so, and the model does not run within it", async () => {
  const path = testModel({ preset: "tiny" });
  const { code, stdout } = await run(["info", "-m", path, "--memory", "10MiB"]);
  assert.equal(code, 0);
  assert.match(stdout, /^memory plan for a budget of 10\.0 MiB: a memory budget of 10\.0 MiB is too small .* it needs at least/m);
  assert.match(stdout, /^runs: no, with the wasm-\S+ kernels:\n {2}- a memory budget of 10\.0 MiB is too small/m);
});

test("a file with a type id this ggml does not know: described, with its histogram and configuration, and why it cannot run", async () => {
  const path = join(dir, "unknown.gguf");
  patchTensorTypes(testModel({ preset: "tiny" }), path, { "blk.0.attn_v.weight": 57, "blk.1.attn_v.weight": 57, "blk.1.ffn_up_exps.weight": 57 });
  const { code, stdout, stderr } = await run(["info", "-m", path]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^ {2}attention v +57 \(unknown\) +2 +\?$/m);
  assert.match(stdout, /^ {2}expert up +F32 +1 +[\d.]+ KiB\n {4,}57 \(unknown\) +1 +\?$/m);
  assert.match(stdout, /^ {2}layers 2, hidden 64/m);
  assert.match(stdout, /^memory plan: none/m);
  assert.match(stdout, /^runs: no, with the wasm-\S+ kernels:\n {2}- .*: tensor types: cannot run 3 tensors of type 57 \(unknown\): 57 \(unknown\) in blk\.0\.attn_v\.weight, blk\.1\.attn_v\.weight, blk\.1\.ffn_up_exps\.weight: a type id this version of ggml does not define$/m);
  const json = await report(["-m", path]);
  assert.deepEqual(json.unsupported.map((u) => [u.type, u.tensors.length]), [[57, 3]]);
});

test("several unsupported types are all named, with counts, for the kernels asked about", { skip: skipGgml }, async () => {
  const nvfp4 = join(dir, "nvfp4.gguf");
  const base = typeof ggml === "string" ? undefined : ggml;
  rewriteGguf(testModel({ preset: "tiny" }), nvfp4, {
    retype: { types: { "blk.0.ffn_gate_exps.weight": GgmlType.NVFP4, "blk.0.ffn_up_exps.weight": GgmlType.NVFP4 }, quantize: (type, values, rows, perRow) => base!.quantizeChunk(type, values, rows, perRow) },
  });
  const path = join(dir, "several.gguf");
  patchTensorTypes(nvfp4, path, { "blk.1.attn_q.weight": 57 });
  const wasm = await report(["-m", path]);
  assert.deepEqual(wasm.unsupported.map((u) => [u.typeName, u.tensors]), [
    ["NVFP4", ["blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight"]],
    ["57 (unknown)", ["blk.1.attn_q.weight"]],
  ]);
  assert.match(wasm.problems[0]!, /cannot run 2 tensors of type NVFP4 and 1 of 57 \(unknown\): /);
  const reference = await report(["-m", path, "--kernels", "reference"]);
  assert.equal(reference.kernels, "reference");
  assert.deepEqual(reference.unsupported.map((u) => u.typeName), ["57 (unknown)"]);
});

test("another architecture is described and not understood; a file that is no GGUF is one line of error", async () => {
  const llama = join(dir, "llama.gguf");
  rewriteGguf(testModel({ preset: "tiny" }), llama, { setKeys: [["general.architecture", gv.str("llama")]] });
  const { code, stdout } = await run(["info", "-m", llama]);
  assert.equal(code, 0);
  assert.match(stdout, /^ {2}general\.architecture +STRING +"llama"$/m);
  assert.match(stdout, /^ {2}not understood: .*general\.architecture: expected "smallthinker", got "llama"/m);
  assert.match(stdout, /^runs: no/m);
  const text = join(dir, "notes.gguf");
  writeFileSync(text, "these are not weights\n");
  const broken = await run(["info", "-m", text]);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /^error: .*notes\.gguf: magic \(at byte 0\): expected "GGUF", got "thes": not a GGUF file\n$/);
});
