import { formatActivity, measureActivity } from "../../engine/activity.js";
import { UsageError, helpHint, parseCommand, parseInteger } from "../args.js";
import { MODEL_HELP, MODEL_OPTIONS, loadOptions } from "../model-options.js";
import { openModel } from "./run.js";

export const STATS_HELP = `smallthinker stats [-m MODEL] [--tokens N] [--text TEXT] [--json]

Measures a model's routing skew (how often each expert is chosen) and ReGLU activation sparsity
(share of gate outputs ≤ 0) by running text through it, and prints what a synthetic file claims.

  --tokens N            tokens to evaluate (default 512)
  --text TEXT           text to evaluate (default: a built-in mix of prose, code, numbers, CJK)
  --json                print the full report as JSON
  -h, --help            this help

${MODEL_HELP}`;

export const STATS_OPTIONS = { ...MODEL_OPTIONS, tokens: { type: "string" }, text: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function statsCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("stats", { args: argv, allowPositionals: true, options: STATS_OPTIONS });
  if (values.help) {
    console.log(STATS_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker stats: unexpected argument "${positionals[0]}"\n${helpHint("stats")}`);
  const count = parseInteger(values.tokens, "--tokens", 1, 1 << 20) ?? 512;
  const model = await openModel(values.model, loadOptions(values), (line) => console.error(line));
  try {
    const report = await measureActivity(model, count, values.text);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatActivity(report));
  } finally {
    await model.close();
  }
}
