import { basename } from "node:path";
import { parseArgs } from "node:util";
import { checkAccessOptions, DEFAULT_LIMITS, formatRecord, startServer, type RunningServer } from "../../server/index.js";
import { UsageError, formatBytes, parseCommand, parseInteger, parseSizeOption } from "../args.js";
import { MODEL_HELP, MODEL_OPTIONS, loadOptions } from "../model-options.js";
import { openModel } from "./run.js";

export const SERVE_HELP = `smallthinker serve [-m FILE] [--host H] [--port P] [options]

Serves the model over an OpenAI-compatible HTTP API. With no model, serves the built-in demo
model (random weights).

  POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health

Requests run one at a time, in arrival order; a request that continues the previous one (the next
turn of a chat) reuses its KV cache. A client that disconnects stops its generation. Sampling
parameters a request leaves out take llama.cpp's defaults (temperature 0.8, top_k 40, top_p 0.95,
min_p 0.05); llama-server's top_k, min_p, typical_p, min_keep, repeat_penalty, repeat_last_n,
n_predict, ignore_eos and chat_template_kwargs are accepted as extensions. Message text is always
tokenized as text: special-token text in it ("<|im_start|>") never becomes special tokens.

  --host H              address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --port P              port (default 8080; 0 picks a free one)
  --alias NAME          the model's name in the API (default: the file name without .gguf)
  --strict-model        refuse requests naming another model (404); by default any name means this one
  --api-key KEY         require "Authorization: Bearer KEY" on every route but /health (default: the
                        SMALLTHINKER_API_KEY environment variable, which other users cannot read in ps)
  --cors ORIGINS        browser origins allowed to call the API, comma-separated, or * for any (default none)
  --allowed-hosts H     host names requests may be addressed to besides localhost, 127.0.0.1 and [::1],
                        comma-separated, or * for any; without it, while listening on a loopback address
                        every other Host gets 403 (a DNS-rebinding defence)
  --max-queue N         requests that may wait behind the running one; more get 429 (default ${DEFAULT_LIMITS.maxQueue})
  --max-tokens N        most tokens one request may generate (default ${DEFAULT_LIMITS.maxTokens})
  --max-body SIZE       largest request body; larger ones get 413 (default ${formatBytes(DEFAULT_LIMITS.maxBodyBytes)})

${MODEL_HELP}`;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand("serve", () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...MODEL_OPTIONS,
        host: { type: "string" },
        port: { type: "string" },
        alias: { type: "string" },
        "strict-model": { type: "boolean" },
        "api-key": { type: "string" },
        cors: { type: "string" },
        "allowed-hosts": { type: "string" },
        "max-queue": { type: "string" },
        "max-tokens": { type: "string" },
        "max-body": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }),
  );
  if (values.help) {
    console.log(SERVE_HELP);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`smallthinker serve: unexpected argument "${positionals[0]}" (use -m for the model)\n\n${SERVE_HELP}`);
  const host = values.host ?? "127.0.0.1";
  const port = parseInteger(values.port, "--port", 0, 65535) ?? 8080;
  const limits = {
    maxQueue: parseInteger(values["max-queue"], "--max-queue", 0) ?? DEFAULT_LIMITS.maxQueue,
    maxTokens: parseInteger(values["max-tokens"], "--max-tokens", 1) ?? DEFAULT_LIMITS.maxTokens,
    maxBodyBytes: values["max-body"] === undefined ? DEFAULT_LIMITS.maxBodyBytes : parseSizeOption(values["max-body"], "--max-body"),
  };
  const apiKey = values["api-key"] ?? (process.env.SMALLTHINKER_API_KEY || undefined);
  if (apiKey !== undefined && apiKey.trim() === "") throw new UsageError("smallthinker serve: --api-key is empty");
  const access = { apiKey, corsOrigins: listOption(values.cors), allowedHosts: listOption(values["allowed-hosts"]) };
  try {
    checkAccessOptions(access, host);
  } catch (error) {
    // a malformed --cors or --allowed-hosts entry, named before the model is loaded
    throw new UsageError(`smallthinker serve: ${(error as Error).message}`);
  }
  const log = (line: string) => console.error(line);
  const model = await openModel(values.model, loadOptions(values), log);
  const modelId = values.alias ?? basename(model.path).replace(/\.gguf$/i, "");
  let server: RunningServer;
  try {
    server = await startServer({ model, modelId, strictModel: values["strict-model"], host, port, limits, ...access, log: (record) => log(formatRecord(record)) });
  } catch (error) {
    await model.close();
    throw new UsageError(`smallthinker serve: cannot listen on ${host}:${port}: ${(error as Error).message}`);
  }
  log(`Serving "${modelId}" at ${server.url}/v1 (Ctrl-C to stop)${apiKey ? "; API key required" : ""}`);
  await untilSignalled();
  log("Shutting down: ending the generations in progress");
  await server.close();
  await model.close();
}

/** A comma-separated option as a list; undefined when not given. */
function listOption(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

function untilSignalled(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
