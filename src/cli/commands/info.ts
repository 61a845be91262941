import { createKernels, KernelChoice } from "../../engine/kernels.js";
import { GgufFile } from "../../gguf/reader.js";
import { UsageError, helpHint, parseCommand, parseInteger, parseSizeOption } from "../args.js";
import { buildReport, formatReport } from "../model-report.js";
import { resolveModelPath } from "../open-model.js";

export const INFO_HELP = `smallthinker info [-m MODEL] [--memory SIZE] [--json]

Describes a GGUF model without loading its weights, whether or not this engine can run it: its
files and metadata (long arrays as their length and first values), its tensors by role and type
(count and bytes), the configuration the engine reads from it, the memory plan by default and at
--memory, and whether it runs with these kernels, and if not every reason why.

  -m, --model M         a GGUF file (a split model's first part), or hf:OWNER/NAME[:QUANT];
                        default: the built-in demo model
  --memory SIZE         also plan for this budget (e.g. 1GiB)
  -c, --ctx N           context size the plans are for (default 4096, at most the model's)
  -b, --batch N         prompt tokens per batch the plans are for (default 256)
  --kv-type T           f16 or f32 KV cache (default f16)
  --kernels K           the kernels to check and plan for: auto, wasm or reference (default auto)
  -t, --threads N       their threads (each has scratch memory in the plan)
  --json                print the report as JSON
  -h, --help            this help`;

export const INFO_OPTIONS = {
  model: { type: "string", short: "m" },
  memory: { type: "string" },
  ctx: { type: "string", short: "c" },
  batch: { type: "string", short: "b" },
  "kv-type": { type: "string" },
  kernels: { type: "string" },
  threads: { type: "string", short: "t" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** JSON with 64-bit integers (bigint metadata values) as decimal strings. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2);
}

export async function infoCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("info", { args: argv, allowPositionals: true, options: INFO_OPTIONS });
  if (values.help) {
    console.log(INFO_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker info: unexpected argument "${positionals[0]}"\n${helpHint("info")}`);
  const kernelChoice = values.kernels ?? "auto";
  if (!["auto", "wasm", "reference"].includes(kernelChoice)) throw new UsageError(`--kernels: expected auto, wasm or reference, got "${kernelChoice}"`);
  const kvType = values["kv-type"] ?? "f16";
  if (kvType !== "f16" && kvType !== "f32") throw new UsageError(`--kv-type: expected f16 or f32, got "${kvType}"`);
  const options = {
    contextSize: parseInteger(values.ctx, "--ctx", 16, 1 << 24),
    batchSize: parseInteger(values.batch, "--batch", 1, 4096),
    kvType: kvType as "f16" | "f32",
    memory: values.memory === undefined ? undefined : parseSizeOption(values.memory, "--memory"),
  };
  const threads = parseInteger(values.threads, "--threads", 1, 256);
  const path = await resolveModelPath(values.model, (line) => console.error(line));
  // Without the data check: a truncated file or a header alone is described too, and says so.
  const file = GgufFile.open(path, { checkData: false });
  try {
    const kernels = await createKernels(kernelChoice as KernelChoice, threads);
    try {
      const report = buildReport(file, kernels, options);
      console.log(values.json ? toJson(report) : formatReport(report));
    } finally {
      await kernels.dispose();
    }
  } finally {
    file.close();
  }
}
