import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufFile } from "../src/gguf/reader.js";
import { GgufError } from "../src/gguf/errors.js";
import { gv } from "../src/gguf/writer.js";
import { readConfig, layerPlan } from "../src/model/config.js";
import { testModel } from "./helpers/models.js";
import { Rewrite, rewriteGguf } from "./helpers/rewrite.js";

const dir = mkdtempSync(join(tmpdir(), "st-config-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function configError(change: Rewrite): GgufError {
  const path = join(dir, `broken-${Math.random().toString(36).slice(2)}.gguf`);
  rewriteGguf(testModel({ preset: "tiny" }), path, change);
  const file = GgufFile.open(path);
  try {
    readConfig(file);
  } catch (error) {
    assert.ok(error instanceof GgufError, `expected a GgufError, got ${error}`);
    assert.ok(error.message.startsWith(path), `message names the file: ${error.message}`);
    return error;
  } finally {
    file.close();
  }
  assert.fail("the broken file was accepted");
}

test("a valid synthetic model reads with the shapes it was made with", () => {
  const file = GgufFile.open(testModel({ preset: "tiny-21b" }));
  const config = readConfig(file);
  file.close();
  assert.equal(config.heads * config.headDim, 112);
  assert.equal(config.hidden, 96);
  assert.equal(config.kvHeads, 1);
  assert.equal(config.tiedOutput, false);
  assert.equal(config.gating, "sigmoid");
});

test("another architecture is refused, naming the key and both values", () => {
  const error = configError({ setKeys: [["general.architecture", gv.str("llama")]] });
  assert.equal(error.field, "general.architecture");
  assert.match(error.message, /expected "smallthinker", got "llama"/);
});

test("a missing hyper-parameter names the key", () => {
  const error = configError({ dropKeys: ["smallthinker.expert_count"] });
  assert.equal(error.field, "smallthinker.expert_count");
  assert.match(error.message, /missing/);
});

test("a wrongly typed hyper-parameter names the key and the expected type", () => {
  const error = configError({ setKeys: [["smallthinker.block_count", gv.str("two")]] });
  assert.equal(error.field, "smallthinker.block_count");
  assert.match(error.message, /expected an integer, got STRING/);
});

test("a missing tensor names the tensor", () => {
  const error = configError({ dropTensors: ["blk.1.ffn_up_exps.weight"] });
  assert.equal(error.field, "tensor blk.1.ffn_up_exps.weight");
  assert.match(error.message, /missing/);
});

test("a tensor of the wrong shape names the tensor, its shape and the expected one", () => {
  const error = configError({ reshape: { "blk.0.attn_k.weight": [64, 64] } });
  assert.equal(error.field, "tensor blk.0.attn_k.weight");
  assert.match(error.message, /shape \{64, 64\} does not match .*expected \{64, 32\}/);
});

test("an invalid gating function value is refused", () => {
  const error = configError({ setKeys: [["smallthinker.expert_gating_func", gv.u32(7)]] });
  assert.equal(error.field, "smallthinker.expert_gating_func");
});

test("layer plan follows llama.cpp: NoPE + global on il % 4 == 0 with a window, RoPE everywhere for 4 layers or no window", () => {
  assert.deepEqual(layerPlan(8, 4096).map((p) => [p.rope, p.window]), [
    [false, Infinity], [true, 4096], [true, 4096], [true, 4096],
    [false, Infinity], [true, 4096], [true, 4096], [true, 4096],
  ]);
  assert.deepEqual(layerPlan(4, 4096).map((p) => [p.rope, p.window]), [
    [true, Infinity], [true, 4096], [true, 4096], [true, 4096],
  ]);
  assert.ok(layerPlan(6, null).every((p) => p.rope && p.window === Infinity));
});
