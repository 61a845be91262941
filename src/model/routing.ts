import { Gating } from "./config.js";

const fround = Math.fround;

export interface Route {
  /** Chosen experts, highest score first. */
  experts: number[];
  /** Their weights, summing to 1. */
  weights: number[];
}

/**
 * Expert choice for one token from its router logits, as llama.cpp computes it: score every
 * expert (softmax or sigmoid, f32), take the k best scores, renormalize them to sum 1.
 */
export function route(logits: Float32Array, k: number, gating: Gating): Route {
  const n = logits.length;
  const scores = new Float32Array(n);
  if (gating === "sigmoid") {
    for (let e = 0; e < n; e++) scores[e] = fround(1 / fround(1 + fround(Math.exp(-logits[e]!))));
  } else {
    let max = -Infinity;
    for (let e = 0; e < n; e++) max = Math.max(max, logits[e]!);
    let sum = 0;
    for (let e = 0; e < n; e++) {
      scores[e] = fround(Math.exp(fround(logits[e]! - max)));
      sum += scores[e]!;
    }
    const inv = fround(1 / sum);
    for (let e = 0; e < n; e++) scores[e] = fround(scores[e]! * inv);
  }
  const order = Array.from({ length: n }, (_, e) => e).sort((a, b) => scores[b]! - scores[a]! || a - b);
  const experts = order.slice(0, k);
  let total = 0;
  for (const e of experts) total += scores[e]!;
  const norm = fround(Math.max(fround(total), 6.103515625e-5));
  return { experts, weights: experts.map((e) => fround(scores[e]! / norm)) };
}
