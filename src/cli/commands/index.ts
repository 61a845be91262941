import { benchCommand } from "./bench.js";
import { chatCommand } from "./chat.js";
import { logitsCommand } from "./logits.js";
import { RUN_HELP, runCommand } from "./run.js";
import { serveCommand } from "./serve.js";
import { statsCommand } from "./stats.js";
import { synthCommand } from "./synth.js";

export type Command = (argv: string[]) => Promise<void>;

export const COMMANDS: Record<string, Command> = {
  run: runCommand,
  chat: chatCommand,
  bench: benchCommand,
  serve: serveCommand,
  logits: logitsCommand,
  stats: statsCommand,
  synth: synthCommand,
};

export const HELP = `smallthinker — run SmallThinker MoE models on CPUs within a memory budget

Commands (each takes --help):
  run       stream a completion (the default; with no model, the demo model)
  chat      interactive chat with history
  serve     OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions)
  bench     measure speed and memory beside llama.cpp on the same model
  logits    write every position's logits to a file, for comparing engines
  stats     measure routing skew and ReGLU sparsity
  synth     write a synthetic SmallThinker GGUF (random weights)

${RUN_HELP}`;
