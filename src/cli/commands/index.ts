import { BENCH_HELP, BENCH_OPTIONS, benchCommand } from "./bench.js";
import { CHAT_HELP, CHAT_OPTIONS, chatCommand } from "./chat.js";
import { INFO_HELP, INFO_OPTIONS, infoCommand } from "./info.js";
import { LOGITS_HELP, LOGITS_OPTIONS, logitsCommand } from "./logits.js";
import { MODELS_HELP, MODELS_OPTIONS, modelsCommand } from "./models.js";
import { PULL_HELP, PULL_OPTIONS, pullCommand } from "./pull.js";
import { RUN_HELP, RUN_OPTIONS, runCommand } from "./run.js";
import { SERVE_HELP, serveCommand } from "./serve.js";
import { STATS_HELP, STATS_OPTIONS, statsCommand } from "./stats.js";
import { SYNTH_HELP, SYNTH_OPTIONS, synthCommand } from "./synth.js";

export type Command = (argv: string[]) => Promise<void>;

export interface CommandSpec {
  run: Command;
  help: string;
  /** The options its parser takes (serve keeps its table to itself). */
  options?: Record<string, { type: "string" | "boolean"; short?: string }>;
}

export const COMMANDS: Record<string, CommandSpec> = {
  run: { run: runCommand, help: RUN_HELP, options: RUN_OPTIONS },
  chat: { run: chatCommand, help: CHAT_HELP, options: CHAT_OPTIONS },
  serve: { run: serveCommand, help: SERVE_HELP },
  pull: { run: pullCommand, help: PULL_HELP, options: PULL_OPTIONS },
  models: { run: modelsCommand, help: MODELS_HELP, options: MODELS_OPTIONS },
  info: { run: infoCommand, help: INFO_HELP, options: INFO_OPTIONS },
  bench: { run: benchCommand, help: BENCH_HELP, options: BENCH_OPTIONS },
  logits: { run: logitsCommand, help: LOGITS_HELP, options: LOGITS_OPTIONS },
  stats: { run: statsCommand, help: STATS_HELP, options: STATS_OPTIONS },
  synth: { run: synthCommand, help: SYNTH_HELP, options: SYNTH_OPTIONS },
};

export const HELP = `smallthinker — run SmallThinker MoE models on CPUs within a memory budget

Usage: smallthinker COMMAND [options]     (smallthinker --version, smallthinker COMMAND --help)

Commands:
  run       stream a completion (the default command; with no model, the demo model)
  chat      interactive chat with history
  serve     OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions)
  pull      download a model from the Hugging Face hub (-m hf:OWNER/NAME[:QUANT] does it too)
  models    list the models in the Hugging Face cache
  info      describe a GGUF model: metadata, tensors, configuration, memory plan, whether it runs
  bench     measure speed and memory beside llama.cpp on the same model
  logits    write every position's logits to a file, for comparing engines
  stats     measure routing skew and ReGLU sparsity
  synth     write a synthetic SmallThinker GGUF (random weights)

${RUN_HELP}`;
