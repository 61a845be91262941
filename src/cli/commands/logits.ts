import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { UsageError, helpHint, parseCommand } from "../args.js";
import { MODEL_HELP, MODEL_OPTIONS, loadOptions } from "../model-options.js";
import { openModel } from "./run.js";

export const LOGITS_HELP = `smallthinker logits [-m MODEL] (--tokens IDS | --prompt TEXT) --out PREFIX

Evaluates the tokens from an empty context and writes every position's logits:
  PREFIX.f32   raw little-endian float32, [positions][vocabulary]
  PREFIX.json  model, tokens, shape and engine settings

  --tokens IDS          comma-separated token ids
  --prompt TEXT         text to tokenize instead (special tokens parsed)
  -o, --out PREFIX      output path prefix (required)
  -h, --help            this help

${MODEL_HELP}`;

export function parseTokenList(text: string, vocab: number): number[] {
  const ids = text.split(",").map((part) => part.trim()).filter((part) => part !== "");
  return ids.map((part) => {
    const id = Number(part);
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new UsageError(`--tokens: "${part}" is not a token id in 0..${vocab - 1}`);
    return id;
  });
}

export const LOGITS_OPTIONS = { ...MODEL_OPTIONS, tokens: { type: "string" }, prompt: { type: "string" }, out: { type: "string", short: "o" }, help: { type: "boolean", short: "h" } } as const;

export async function logitsCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("logits", { args: argv, allowPositionals: true, options: LOGITS_OPTIONS });
  if (values.help) {
    console.log(LOGITS_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker logits: unexpected argument "${positionals[0]}"\n${helpHint("logits")}`);
  if (!values.out) throw new UsageError(`smallthinker logits: --out PREFIX is required\n\n${LOGITS_HELP}`);
  if ((values.tokens === undefined) === (values.prompt === undefined)) throw new UsageError("smallthinker logits: give exactly one of --tokens and --prompt");
  const options = loadOptions(values);
  // An f32 KV cache unless asked otherwise: the logits are for comparing engines.
  const kvType = values["kv-type"] ? options.kvType : "f32";
  const model = await openModel(values.model, { ...options, kvType }, (line) => console.error(line));
  try {
    const tokens = values.tokens !== undefined ? parseTokenList(values.tokens, model.config.vocabSize) : model.tokenize(values.prompt!);
    if (tokens.length === 0) throw new UsageError("smallthinker logits: no tokens to evaluate");
    if (tokens.length > model.contextSize) throw new UsageError(`smallthinker logits: ${tokens.length} tokens exceed the context size ${model.contextSize} (raise --ctx)`);
    const fd = openSync(`${values.out}.f32`, "w");
    try {
      await model.logits(tokens, (_, row) => {
        const bytes = new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
        writeSync(fd, Buffer.from(bytes));
      });
    } finally {
      closeSync(fd);
    }
    writeFileSync(
      `${values.out}.json`,
      JSON.stringify({
        model: model.path,
        tokens,
        positions: tokens.length,
        vocabulary: model.config.vocabSize,
        dtype: "float32",
        layout: "[positions][vocabulary], little-endian",
        engine: { name: "smallthinker", kernels: model.kernels.name, threads: model.kernels.threads, kvType },
      }, null, 2) + "\n",
    );
    console.error(`wrote ${values.out}.f32 (${tokens.length} × ${model.config.vocabSize} float32) and ${values.out}.json`);
  } finally {
    await model.close();
  }
}
