import { GenerationResult } from "../../engine/generation.js";
import { UsageError, helpHint, parseCommand } from "../args.js";
import { MODEL_HELP, MODEL_OPTIONS, SAMPLING_HELP, SAMPLING_OPTIONS, loadOptions, samplingOptions } from "../model-options.js";
import { openModel, quiet, warn } from "../open-model.js";
import { DEFAULT_PROMPT, readPrompt } from "../prompt.js";

export const RUN_OPTIONS = {
  ...MODEL_OPTIONS,
  ...SAMPLING_OPTIONS,
  prompt: { type: "string", short: "p" },
  file: { type: "string", short: "f" },
  chat: { type: "boolean" },
  system: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export const RUN_HELP = `smallthinker run [-m MODEL] [-p PROMPT | -f FILE] [options]

Streams a completion of the prompt. With no model, runs the built-in demo model (random weights).

  -p, --prompt TEXT     the prompt; "-" reads it from standard input
  -f, --file FILE       read the prompt from FILE ("-": standard input)
                        (neither: piped standard input, else "${DEFAULT_PROMPT}")
  --chat                wrap the prompt as a user message in the model's chat template
  --system TEXT         system message (with --chat)
  --json                print the result as one JSON object (text, token counts, timings,
                        finish reason) instead of streaming the text
  --quiet               print only the generated text
  -h, --help            this help

${MODEL_HELP}

${SAMPLING_HELP}`;

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
  const { values, positionals } = parseCommand("run", { args: argv, allowPositionals: true, options: RUN_OPTIONS });
  if (values.help) {
    console.log(RUN_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker run: unexpected argument "${positionals[0]}" (the prompt goes after -p)\n${helpHint("run")}`);
  const log = values.quiet || values.json ? quiet : (line: string) => console.error(line);
  const { maxTokens, stop, ...sampling } = samplingOptions(values);
  const load = loadOptions(values);
  if (values.system !== undefined && !values.chat) warn("--system has no effect without --chat");
  const prompt = await readPrompt(values);
  const model = await openModel(values.model, load, log);
  try {
    const generation = values.chat
      ? model.chat([...(values.system !== undefined ? [{ role: "system" as const, content: values.system }] : []), { role: "user", content: prompt }], { ...sampling, maxTokens, stop })
      : model.generate(prompt, { ...sampling, maxTokens, stop });
    if (values.json) {
      const result = await generation.complete();
      console.log(JSON.stringify({ model: model.path, prompt, ...result }));
      return;
    }
    if (!values.chat) process.stdout.write(prompt);
    for await (const piece of generation) process.stdout.write(piece);
    process.stdout.write("\n");
    log(describeResult(await generation.result));
  } finally {
    await model.close();
  }
}

// serve, stats and logits open their model through here
export { openModel } from "../open-model.js";
