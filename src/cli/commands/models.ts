import { listCachedModels } from "../../hub/index.js";
import { UsageError, formatBytes, helpHint, parseCommand } from "../args.js";

export const MODELS_OPTIONS = { json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const MODELS_HELP = `smallthinker models [--json]

Lists the GGUF models in the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub), whichever tool downloaded them: repository, file, size, quantization.
Run one with -m hf:REPOSITORY:QUANT.

  --json                print the list as JSON
  -h, --help            this help`;

export async function modelsCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("models", { args: argv, allowPositionals: true, options: MODELS_OPTIONS });
  if (values.help) {
    console.log(MODELS_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker models: unexpected argument "${positionals[0]}"\n${helpHint("models")}`);
  const { cacheDir, files } = await listCachedModels();
  if (values.json) {
    console.log(JSON.stringify({ cacheDir, models: files }, null, 2));
    return;
  }
  if (files.length === 0) {
    console.error(`No models in ${cacheDir}. Get one with: smallthinker pull PowerInfer/SmallThinker-4BA0.6B-Instruct-GGUF`);
    return;
  }
  const rows = [["REPOSITORY", "FILE", "SIZE", "QUANT", "COMMIT"], ...files.map((f) => [f.repo, f.file, formatBytes(f.size), f.quant ?? "?", `${f.commit.slice(0, 8)}${f.refs.length > 0 ? ` (${f.refs.join(", ")})` : ""}`])];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) console.log(row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  "));
  console.error(`in ${cacheDir}`);
}
