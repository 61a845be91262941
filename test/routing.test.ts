import { test } from "node:test";
import assert from "node:assert/strict";
import { route } from "../src/model/routing.js";

// Expert choice for one token, exactly: llama.cpp's f32 order of operations (ggml_soft_max: exp of
// x − max in f32, the sum accumulated in double, scaled by f32(1/sum); then the top-k renormalized
// by their f32 sum, clamped at 2^-14), ties to the lower expert id (written for the survivors of
// mutation testing, test/mutation-survivors.md).

const f = Math.fround;

function reference(logits: number[], k: number, gating: "softmax" | "sigmoid"): { experts: number[]; weights: number[] } {
  let scores: number[];
  if (gating === "sigmoid") {
    scores = logits.map((l) => f(1 / f(1 + f(Math.exp(-f(l))))));
  } else {
    const max = Math.max(...logits.map(f));
    const exps = logits.map((l) => f(Math.exp(f(f(l) - max))));
    const inv = f(1 / exps.reduce((a, b) => a + b, 0));
    scores = exps.map((e) => f(e * inv));
  }
  const experts = scores.map((_, e) => e).sort((a, b) => scores[b]! - scores[a]! || a - b).slice(0, k);
  const norm = f(Math.max(f(experts.reduce((sum, e) => sum + scores[e]!, 0)), 6.103515625e-5));
  return { experts, weights: experts.map((e) => f(scores[e]! / norm)) };
}

function randomLogits(count: number, seed: number, spread: number): number[] {
  let s = seed;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return f(((s / 2 ** 32) * 2 - 1) * spread);
  });
}

test("softmax and sigmoid routing give llama.cpp's f32 weights bit for bit", () => {
  for (const gating of ["softmax", "sigmoid"] as const) {
    for (let seed = 1; seed <= 200; seed++) {
      const logits = randomLogits(16, seed, 1 + (seed % 7));
      const k = 1 + (seed % 4);
      assert.deepEqual(route(Float32Array.from(logits), k, gating), reference(logits, k, gating), `${gating}, seed ${seed}`);
    }
  }
});

test("large router logits do not overflow: softmax weights come from their differences", () => {
  const { experts, weights } = route(Float32Array.from([100, 99, 0, -50]), 2, "softmax");
  assert.deepEqual(experts, [0, 1]);
  assert.ok(Math.abs(weights[0]! - 1 / (1 + Math.exp(-1))) < 1e-6 && Math.abs(weights[1]! - 1 / (1 + Math.exp(1))) < 1e-6, `weights ${weights}`);
});

test("tied scores go to the lower expert id", () => {
  for (const gating of ["softmax", "sigmoid"] as const) {
    assert.deepEqual(route(Float32Array.from([0, 1, 1, 0.5]), 1, gating).experts, [1], gating);
    assert.deepEqual(route(Float32Array.from([2, 0, 2, 2]), 2, gating).experts, [0, 2], gating);
  }
});
