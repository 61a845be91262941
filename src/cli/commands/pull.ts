import { UsageError, formatBytes, helpHint, parseCommand } from "../args.js";
import { listRepositoryModels } from "../../hub/index.js";
import { pullWithProgress } from "../open-model.js";

export const PULL_OPTIONS = { list: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const PULL_HELP = `smallthinker pull OWNER/NAME[:QUANT] [--list]

Downloads a GGUF model from the Hugging Face hub into its cache, so that -m hf:OWNER/NAME[:QUANT]
runs it (any command takes that and pulls on first use). QUANT picks the file by the quantization
in its name, case-insensitively (Q4_0, q8_0, Q4_K_M…); without it: Q4_0, else Q4_K_M, else the
smallest. A model split in parts (-00001-of-0000N.gguf) is downloaded whole.

Downloads resume where an interrupted one stopped and are checked against the hub's SHA-256 before
use. The cache is the one other Hugging Face tools share: $HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub. HF_TOKEN is sent for private or gated repositories, HF_ENDPOINT names
another hub, HF_HUB_OFFLINE=1 uses the cache only (as happens when the hub cannot be reached).

Official models:
  PowerInfer/SmallThinker-4BA0.6B-Instruct-GGUF
  PowerInfer/SmallThinker-21BA3B-Instruct-GGUF
  PowerInfer/SmallThinker-4BA0.6B-Instruct-INT4-QAT

  --list                list the repository's GGUF models (quantization, file, size) and exit
  -h, --help            this help`;

export async function pullCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("pull", { args: argv, allowPositionals: true, options: PULL_OPTIONS });
  if (values.help) {
    console.log(PULL_HELP);
    return;
  }
  if (positionals.length !== 1) {
    throw new UsageError(`smallthinker pull: ${positionals.length === 0 ? "name the model: OWNER/NAME[:QUANT]" : `one model at a time (got ${positionals.length})`}\n${helpHint("pull")}`);
  }
  if (values.list) {
    const { repo, commit, models } = await listRepositoryModels(positionals[0]!);
    console.error(`${repo} at commit ${commit.slice(0, 8)}:`);
    for (const model of models) console.log(`${(model.quant ?? "?").padEnd(8)} ${formatBytes(model.size).padStart(10)}  ${model.name}${model.parts.length > 1 ? ` and ${model.parts.length - 1} more part${model.parts.length > 2 ? "s" : ""}` : ""}`);
    return;
  }
  const pulled = await pullWithProgress(positionals[0]!, (line) => console.error(line));
  const source = pulled.fromCache ? "cached" : "ready";
  console.error(`${pulled.repo}${pulled.quant ? ` ${pulled.quant}` : ""} (${formatBytes(pulled.size)}, commit ${pulled.commit.slice(0, 8)}) ${source}:`);
  for (const path of pulled.paths) console.log(path);
}
