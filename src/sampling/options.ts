import { randomInt } from "node:crypto";

/**
 * How the next token is chosen from the logits. Every field is optional; a missing field takes its
 * value from DEFAULT_SAMPLING_OPTIONS. The stages run in llama.cpp's default order:
 * penalties → top-k → typical → top-p → min-p → temperature → seeded draw.
 */
export interface SamplingOptions {
  /** Divides the logits before the draw; 0 or less means greedy (argmax, ties → lowest id). */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 disables. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 disables. */
  topP?: number;
  /** Drop tokens less likely than minP × the most likely token's probability; 0 disables. */
  minP?: number;
  /**
   * Locally typical sampling (Meister et al. 2022, llama.cpp's typical_p): keep the tokens whose
   * surprisal is closest to the distribution's entropy, until their probability reaches typicalP;
   * 1 disables.
   */
  typicalP?: number;
  /** Typical, top-p and min-p each keep at least this many tokens (llama.cpp's min_keep); 0 or 1: at least one. */
  minKeep?: number;
  /** llama.cpp repetition penalty: positive logits are divided by it, negative ones multiplied; 1 disables. */
  repeatPenalty?: number;
  /** How many of the most recent history tokens the penalties look at; -1 means the whole history, 0 disables penalties. */
  repeatLastN?: number;
  /** OpenAI presence penalty: subtracted once from every token seen in the window; 0 disables. */
  presencePenalty?: number;
  /** OpenAI frequency penalty: subtracted once per occurrence in the window; 0 disables. */
  frequencyPenalty?: number;
  /** Non-negative integer; the same seed and the same logits give the same tokens. Random when omitted. */
  seed?: number;
}

export type ResolvedSamplingOptions = Readonly<Required<SamplingOptions>>;

/**
 * CLI defaults, the same as llama.cpp's: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05 — varied
 * enough for chat while min-p keeps the long tail of a 150k vocabulary out of reach. Penalties are
 * off, as in llama.cpp: they tend to hurt code and structured output, where repeats are correct.
 */
export const DEFAULT_SAMPLING_OPTIONS: Readonly<Omit<Required<SamplingOptions>, "seed">> = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  typicalP: 1,
  minKeep: 0,
  repeatPenalty: 1,
  repeatLastN: 64,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

/** Fills in defaults and rejects values that would make sampling meaningless, naming the option. */
export function resolveSamplingOptions(options: SamplingOptions): ResolvedSamplingOptions {
  const resolved = { ...DEFAULT_SAMPLING_OPTIONS, seed: randomInt(2 ** 32) };
  for (const [name, value] of Object.entries(options)) {
    // a misspelt option (top_k from an OpenAI-style request) would otherwise be ignored silently
    if (!Object.hasOwn(resolved, name)) throw new RangeError(`unknown sampling option ${name}`);
    if (value !== undefined) (resolved as Record<string, unknown>)[name] = value;
  }
  requireNumber("temperature", resolved.temperature, Number.isFinite(resolved.temperature), "a finite number");
  requireNumber("topK", resolved.topK, Number.isInteger(resolved.topK) && resolved.topK >= 0, "an integer >= 0");
  requireNumber("topP", resolved.topP, resolved.topP > 0 && resolved.topP <= 1, "a number in (0, 1]");
  requireNumber("minP", resolved.minP, resolved.minP >= 0 && resolved.minP <= 1, "a number in [0, 1]");
  requireNumber("typicalP", resolved.typicalP, resolved.typicalP > 0 && resolved.typicalP <= 1, "a number in (0, 1]");
  requireNumber("minKeep", resolved.minKeep, Number.isSafeInteger(resolved.minKeep) && resolved.minKeep >= 0, "an integer >= 0");
  // Beyond these bounds a penalized logit can overflow to ±Infinity.
  requireNumber("repeatPenalty", resolved.repeatPenalty, resolved.repeatPenalty >= 0.01 && resolved.repeatPenalty <= 100, "a number in [0.01, 100]");
  requireNumber("repeatLastN", resolved.repeatLastN, Number.isInteger(resolved.repeatLastN) && resolved.repeatLastN >= -1, "an integer >= -1");
  requireNumber("presencePenalty", resolved.presencePenalty, Number.isFinite(resolved.presencePenalty), "a finite number");
  requireNumber("frequencyPenalty", resolved.frequencyPenalty, Number.isFinite(resolved.frequencyPenalty), "a finite number");
  requireNumber("seed", resolved.seed, Number.isSafeInteger(resolved.seed) && resolved.seed >= 0, "a non-negative safe integer");
  return resolved;
}

function requireNumber(name: string, value: unknown, valid: boolean, expected: string): void {
  if (typeof value !== "number" || !valid) {
    throw new RangeError(`sampling option ${name} must be ${expected}, got ${describe(value)}`);
  }
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}
