import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { ChatMessage } from "../../chat/index.js";
import { UsageError, parseCommand } from "../args.js";
import { MODEL_HELP, MODEL_OPTIONS, SAMPLING_HELP, SAMPLING_OPTIONS, loadOptions, samplingOptions } from "../model-options.js";
import { describeResult, openModel } from "./run.js";

export const CHAT_HELP = `smallthinker chat [-m FILE] [options]

Interactive chat with history, rendered through the model's chat template.
Type a message and press Enter. Commands: /reset (forget the conversation), /exit (or Ctrl-D).

  --system TEXT         system message
  --stats               print speed after each reply

${MODEL_HELP}

${SAMPLING_HELP}`;

export async function chatCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("chat", () =>
    parseArgs({ args: argv, allowPositionals: true, options: { ...MODEL_OPTIONS, ...SAMPLING_OPTIONS, system: { type: "string" }, stats: { type: "boolean" }, help: { type: "boolean", short: "h" } } }),
  );
  if (values.help) {
    console.log(CHAT_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker chat: unexpected argument "${positionals[0]}"\n\n${CHAT_HELP}`);
  const { maxTokens, stop, ...sampling } = samplingOptions(values);
  const log = (line: string) => console.error(line);
  const model = await openModel(values.model, loadOptions(values), log);
  const start: ChatMessage[] = values.system ? [{ role: "system", content: values.system }] : [];
  let history: ChatMessage[] = [...start];
  const input = createInterface({ input: process.stdin, terminal: process.stdin.isTTY, output: process.stdin.isTTY ? process.stdout : undefined });
  const controller = { current: undefined as AbortController | undefined };
  // Ctrl-C stops the reply being written; a second Ctrl-C at the prompt leaves.
  input.on("SIGINT", () => {
    if (controller.current) controller.current.abort();
    else input.close();
  });
  // The line iterator buffers lines that arrive while a reply is generating (piped input).
  const lines = input[Symbol.asyncIterator]();
  try {
    for (;;) {
      process.stdout.write("> ");
      const next = await lines.next();
      if (next.done) break; // input closed (Ctrl-D or end of piped input)
      const text = next.value.trim();
      if (text === "/exit" || text === "/quit") break;
      if (text === "/reset") {
        history = [...start];
        console.log("(conversation cleared)");
        continue;
      }
      if (text === "") continue;
      history.push({ role: "user", content: text });
      controller.current = new AbortController();
      const generation = model.chat(history, { ...sampling, maxTokens, stop, signal: controller.current.signal });
      for await (const piece of generation) process.stdout.write(piece);
      process.stdout.write("\n");
      const result = await generation.result;
      controller.current = undefined;
      history.push({ role: "assistant", content: result.text });
      if (values.stats) log(describeResult(result));
    }
  } finally {
    input.close();
    await model.close();
  }
}
