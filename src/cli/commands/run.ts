import { parseArgs } from "node:util";
import { formatPlan, loadModel, Model } from "../../engine/model.js";
import { GenerationResult } from "../../engine/generation.js";
import { UsageError, parseCommand } from "../args.js";
import { demoModelPath } from "../demo.js";
import { MODEL_HELP, MODEL_OPTIONS, SAMPLING_HELP, SAMPLING_OPTIONS, loadOptions, samplingOptions } from "../model-options.js";

export const RUN_HELP = `smallthinker run [-m FILE] [-p PROMPT] [options]

Streams a completion of PROMPT. With no model, runs the built-in demo model (random weights).

  -p, --prompt TEXT     the prompt (default "Once upon a time")
  --chat                wrap the prompt as a user message in the model's chat template
  --system TEXT         system message (with --chat)
  --quiet               print only the generated text

${MODEL_HELP}

${SAMPLING_HELP}`;

/** Opens the model a command asked for, or the demo model with a plain warning. */
export async function openModel(path: string | undefined, options: ReturnType<typeof loadOptions>, log: (line: string) => void): Promise<Model> {
  const resolved = path ?? demoModelPath(log);
  const model = await loadModel(resolved, { ...options, onPlan: options.memory !== undefined ? (plan) => log(formatPlan(plan)) : undefined });
  if (model.info.synthetic) {
    log(`Model ${resolved}: RANDOM WEIGHTS (a synthetic SmallThinker-architecture model, not trained) — its text is meaningless.`);
  }
  const c = model.config;
  log(`${c.layers} layers, hidden ${c.hidden}, ${c.experts} experts (top-${c.expertsUsed}), vocabulary ${c.vocabSize}; kernels ${model.kernels.name} × ${model.kernels.threads} threads; context ${model.contextSize}`);
  return model;
}

export function describeResult(result: GenerationResult): string {
  const { timings } = result;
  const evaluated = result.promptTokens - result.cachedPromptTokens;
  const promptRate = timings.promptMs > 0 ? (evaluated / timings.promptMs) * 1000 : 0;
  const decodeRate = timings.generateMs > 0 ? (result.completionTokens / timings.generateMs) * 1000 : 0;
  return (
    `prompt ${result.promptTokens} tokens (${result.cachedPromptTokens} cached) in ${timings.promptMs.toFixed(0)} ms (${promptRate.toFixed(1)} tok/s); ` +
    `generated ${result.completionTokens} tokens in ${timings.generateMs.toFixed(0)} ms (${decodeRate.toFixed(1)} tok/s); finish: ${result.finishReason}`
  );
}

export async function runCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("run", () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      options: { ...MODEL_OPTIONS, ...SAMPLING_OPTIONS, prompt: { type: "string", short: "p" }, chat: { type: "boolean" }, system: { type: "string" }, quiet: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    }),
  );
  if (values.help) {
    console.log(RUN_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker run: unexpected argument "${positionals[0]}" (use -p for the prompt)\n\n${RUN_HELP}`);
  const log = values.quiet ? () => {} : (line: string) => console.error(line);
  const { maxTokens, stop, ...sampling } = samplingOptions(values);
  const model = await openModel(values.model, loadOptions(values), log);
  try {
    const prompt = values.prompt ?? "Once upon a time";
    const generation = values.chat
      ? model.chat([...(values.system ? [{ role: "system" as const, content: values.system }] : []), { role: "user", content: prompt }], { ...sampling, maxTokens, stop })
      : model.generate(prompt, { ...sampling, maxTokens, stop });
    if (!values.chat) process.stdout.write(prompt);
    for await (const piece of generation) process.stdout.write(piece);
    process.stdout.write("\n");
    log(describeResult(await generation.result));
  } finally {
    await model.close();
  }
}
