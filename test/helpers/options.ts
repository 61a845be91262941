import type { GenerateOptions } from "../../src/engine/generation.js";
import type { Model } from "../../src/engine/model.js";
import type { KvType } from "../../src/kernels/api.js";
import { loadSmallThinker } from "../../src/model/load.js";
import type { SmallThinkerModel } from "../../src/model/model.js";
import { Sampler } from "../../src/sampling/index.js";
import { testKernels } from "./compare.js";

/**
 * One request, spelt three ways: as library options, as an OpenAI-style request body, and as CLI
 * flags. The CLI has no --ignore-eos, so its runs (and the library runs they are compared with)
 * may end at an end-of-generation token.
 */
export interface Spelling {
  library: GenerateOptions;
  api: Record<string, unknown>;
  cli: string[];
}

/**
 * Every option is varied against this base. A high temperature with the filters off spreads the
 * draws over the whole vocabulary, so every filter, penalty and seed changes which tokens come out.
 */
export const BASE: Spelling = {
  library: { seed: 11, temperature: 1.5, topK: 0, topP: 1, minP: 0, maxTokens: 24 },
  api: { seed: 11, temperature: 1.5, top_k: 0, top_p: 1, min_p: 0, max_tokens: 24 },
  cli: ["--seed", "11", "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0", "-n", "24"],
};

export interface OptionCase extends Spelling {
  /** What is varied, as the library names it. */
  name: string;
  /** Not accepted by the server (so only the library and CLI are checked). */
  serverLacks?: boolean;
}

function variant(name: string, library: GenerateOptions, api: Record<string, unknown> | undefined, cli: string[], base: Spelling = BASE): OptionCase {
  return {
    name,
    library: { ...base.library, ...library },
    api: { ...base.api, ...(api ?? {}) },
    cli: [...base.cli, ...cli],
    serverLacks: api === undefined,
  };
}

const PENALIZED: Spelling = {
  library: { ...BASE.library, repeatPenalty: 1.8 },
  api: { ...BASE.api, repeat_penalty: 1.8 },
  cli: [...BASE.cli, "--repeat-penalty", "1.8"],
};

const TOP1: Spelling = {
  library: { ...BASE.library, topK: 1 },
  api: { ...BASE.api, top_k: 1 },
  cli: [...BASE.cli, "--top-k", "1"],
};

/**
 * Each sampling option at a value where it changes the tokens (a later flag or field overrides the
 * base's). The last value in `cli` wins, as util.parseArgs keeps the last of a repeated flag.
 */
export const OPTION_CASES: OptionCase[] = [
  variant("temperature", { temperature: 0.4 }, { temperature: 0.4 }, ["--temp", "0.4"]),
  variant("topK", { topK: 3 }, { top_k: 3 }, ["--top-k", "3"]),
  variant("topP", { topP: 0.3 }, { top_p: 0.3 }, ["--top-p", "0.3"]),
  variant("minP", { minP: 0.2 }, { min_p: 0.2 }, ["--min-p", "0.2"]),
  variant("repeatPenalty", { repeatPenalty: 1.8 }, { repeat_penalty: 1.8 }, ["--repeat-penalty", "1.8"]),
  // against a base that already penalizes: a window of 2 forgets the prompt
  variant("repeatLastN", { repeatLastN: 2 }, undefined, ["--repeat-last-n", "2"], PENALIZED),
  variant("presencePenalty", { presencePenalty: 2 }, { presence_penalty: 2 }, ["--presence-penalty", "2"]),
  variant("frequencyPenalty", { frequencyPenalty: 2 }, { frequency_penalty: 2 }, ["--frequency-penalty", "2"]),
  variant("seed", { seed: 12 }, { seed: 12 }, ["--seed", "12"]),
  variant("typicalP", { typicalP: 0.3 }, { typical_p: 0.3 }, ["--typical-p", "0.3"]),
  // against a base whose filter keeps a single token: min-keep widens it again
  variant("minKeep", { minKeep: 20 }, { min_keep: 20 }, ["--min-keep", "20"], TOP1),
];

/**
 * Computes the tokens options must generate without the engine's generation loop: a forward pass
 * of its own (a separate model instance on the same file, fed one token at a time) whose logits at
 * each step go to a Sampler of exactly these options, with the prompt and the tokens so far as
 * history. Logits do not depend on batching or threads (tested), so this is what generate must draw.
 */
export class Replayer {
  private constructor(private readonly forward: SmallThinkerModel, private readonly isEnd: (token: number) => boolean) {}

  static async open(model: Model, kvType: KvType): Promise<Replayer> {
    const forward = loadSmallThinker(model.path, await testKernels(), { kvType, contextSize: model.contextSize });
    return new Replayer(forward, (token) => model.tokenizer.isEndOfGeneration(token));
  }

  /** The generated tokens, every step's logits (for checks on what was drawn), and how it ended. */
  replay(prompt: readonly number[], options: GenerateOptions): { tokens: number[]; steps: Float32Array[]; finishReason: "stop" | "length" } {
    const { maxTokens, stop, ignoreEos = false, signal, ...sampling } = options;
    if (stop !== undefined || signal !== undefined) throw new Error("replay: stop strings and signals are checked on text, not here");
    if (maxTokens === undefined) throw new Error("replay: give maxTokens");
    const sampler = new Sampler(sampling, this.forward.config.vocabSize);
    const history = [...prompt];
    const tokens: number[] = [];
    const steps: Float32Array[] = [];
    this.forward.kv.truncate(0);
    let logits = this.evaluate(prompt);
    while (tokens.length < maxTokens) {
      const token = sampler.sample(logits, history);
      if (!ignoreEos && this.isEnd(token)) return { tokens, steps, finishReason: "stop" };
      steps.push(logits);
      tokens.push(token);
      history.push(token);
      logits = this.evaluate([token]);
    }
    return { tokens, steps, finishReason: "length" };
  }

  close(): void {
    this.forward.close();
  }

  private evaluate(tokens: readonly number[]): Float32Array {
    let last: Float32Array | undefined;
    this.forward.forward([...tokens], { logits: "last", onLogits: (_, row) => (last = Float32Array.from(row)) });
    return last!;
  }
}

/** Ids ranked by logit, best first (lower id first among equals). */
export function ranked(logits: Float32Array): number[] {
  return Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
}
