import { createInterface } from "node:readline";
import { ChatMessage } from "../../chat/index.js";
import { UsageError, helpHint, parseCommand } from "../args.js";
import { MODEL_HELP, MODEL_OPTIONS, SAMPLING_HELP, SAMPLING_OPTIONS, loadOptions, samplingOptions } from "../model-options.js";
import { openModel } from "../open-model.js";
import { describeResult } from "./run.js";

export const CHAT_OPTIONS = {
  ...MODEL_OPTIONS,
  ...SAMPLING_OPTIONS,
  system: { type: "string" },
  stats: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const REPL_HELP = `Commands:
  /help     this list
  /reset    forget the conversation (the system message stays)
  /exit     leave (also /quit, Ctrl-D; Ctrl-C stops a reply)
A message that starts with "/" is written with two: //etc/hosts sends "/etc/hosts".`;

export const CHAT_HELP = `smallthinker chat [-m MODEL] [options]

Interactive chat with history, rendered through the model's chat template. Type a message and
press Enter. When the conversation outgrows the context, its oldest turns are dropped (the system
message stays). Piped input is read a line per message, and replies are written without prompts.

${REPL_HELP}

  --system TEXT         system message
  --stats               print speed after each reply
  -h, --help            this help

${MODEL_HELP}

${SAMPLING_HELP}`;

export async function chatCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("chat", { args: argv, allowPositionals: true, options: CHAT_OPTIONS });
  if (values.help) {
    console.log(CHAT_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker chat: unexpected argument "${positionals[0]}"\n${helpHint("chat")}`);
  const { maxTokens, stop, ...sampling } = samplingOptions(values);
  const log = (line: string) => console.error(line);
  const model = await openModel(values.model, loadOptions(values), log);
  const start: ChatMessage[] = values.system !== undefined ? [{ role: "system", content: values.system }] : [];
  let history: ChatMessage[] = [...start];
  const interactive = process.stdin.isTTY === true;
  // prompts go to a terminal only: piped output holds the replies alone
  const input = createInterface({ input: process.stdin, terminal: interactive, output: interactive ? process.stdout : undefined });
  input.setPrompt("> ");
  const controller = { current: undefined as AbortController | undefined };
  // Ctrl-C stops the reply being written; a second Ctrl-C at the prompt leaves.
  input.on("SIGINT", () => {
    if (controller.current) controller.current.abort();
    else input.close();
  });
  // The line iterator buffers lines that arrive while a reply is generating (piped input).
  const lines = input[Symbol.asyncIterator]();
  let toldAboutDropping = false;
  try {
    for (;;) {
      if (interactive) input.prompt();
      const next = await lines.next();
      if (next.done) break; // input closed (Ctrl-D or end of piped input)
      let text = next.value.trim();
      if (text === "") continue;
      if (text.startsWith("/") && !text.startsWith("//")) {
        const command = text.split(/\s+/)[0]!;
        if (command === "/exit" || command === "/quit") break;
        if (command === "/reset") {
          history = [...start];
          log("(conversation cleared)");
        } else if (command === "/help") {
          log(REPL_HELP);
        } else {
          log(`unknown command ${command} (/help lists them; //text sends a message starting with "/")`);
        }
        continue;
      }
      if (text.startsWith("//")) text = text.slice(1);
      history.push({ role: "user", content: text });
      controller.current = new AbortController();
      let generation;
      try {
        generation = model.chat(history, { ...sampling, maxTokens, stop, signal: controller.current.signal, contextOverflow: "drop-oldest" });
      } catch (error) {
        // a message too long for the context even alone: say so, forget it, keep the conversation
        if (!(error instanceof RangeError)) throw error;
        history.pop();
        log(`error: ${error.message}; the message was not sent`);
        controller.current = undefined;
        continue;
      }
      for await (const piece of generation) process.stdout.write(piece);
      process.stdout.write("\n");
      const result = await generation.result;
      controller.current = undefined;
      const dropped = result.droppedMessages ?? 0;
      if (dropped > 0) {
        history.splice(start.length, dropped);
        if (!toldAboutDropping) {
          log(`(the conversation outgrew the ${model.contextSize}-token context: its oldest turns are being left out${start.length > 0 ? ", the system message kept" : ""})`);
          toldAboutDropping = true;
        }
      }
      history.push({ role: "assistant", content: result.text });
      if (values.stats) log(describeResult(result));
    }
  } finally {
    input.close();
    await model.close();
  }
}
