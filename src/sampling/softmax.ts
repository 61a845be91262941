/**
 * Numerically stable softmax helpers over a logit vector, accumulated in double precision so a
 * 150k-entry vocabulary does not lose the small probabilities to rounding.
 */

/** log Σ exp(logits[i]). Throws when every logit is -Infinity or any is NaN or +Infinity. */
export function logSumExp(logits: ArrayLike<number>): number {
  if (logits.length === 0) throw new RangeError("logSumExp needs at least one logit");
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const value = logits[i]!;
    if (Number.isNaN(value) || value === Infinity) throw new RangeError(`logit ${i} is ${value}`);
    if (value > max) max = value;
  }
  if (max === -Infinity) throw new RangeError("every logit is -Infinity: the distribution is empty");
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum);
}

/** Log-probabilities: logits[i] - log Σ exp(logits). */
export function logSoftmax(logits: ArrayLike<number>, out = new Float32Array(logits.length)): Float32Array {
  const normalizer = logSumExp(logits);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - normalizer;
  return out;
}

/** Probabilities: exp(logits[i]) / Σ exp(logits). */
export function softmax(logits: ArrayLike<number>, out = new Float32Array(logits.length)): Float32Array {
  const normalizer = logSumExp(logits);
  for (let i = 0; i < logits.length; i++) out[i] = Math.exp(logits[i]! - normalizer);
  return out;
}
