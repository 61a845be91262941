import { basename } from "node:path";
import { parseArgs } from "node:util";
import { formatPlan } from "../../engine/model.js";
import { loadModelInWorker, WorkerModel } from "../../engine/worker/model.js";
import { checkAccessOptions, DEFAULT_LIMITS, formatRecord, startServer, type RunningServer } from "../../server/index.js";
import { UsageError, formatBytes, parseCommand, parseInteger, parseNumber, parseSizeOption } from "../args.js";
import { demoModelPath } from "../demo.js";
import { MODEL_HELP, MODEL_OPTIONS, loadOptions } from "../model-options.js";

/** Seconds a SIGTERM gives the requests in progress before their generations are cut. */
const DEFAULT_SHUTDOWN_TIMEOUT_S = 30;

export const SERVE_HELP = `smallthinker serve [-m FILE] [--host H] [--port P] [options]

Serves the model over an OpenAI-compatible HTTP API. With no model, serves the built-in demo
model (random weights).

  POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health   GET /metrics

/health answers 200 while generations are served and 503 while the model loads or the server
drains: the readiness check for a load balancer. /metrics is in Prometheus's text format. On SIGTERM
(or Ctrl-C) the server stops accepting connections, lets the requests in progress finish for up to
--shutdown-timeout, cuts what is left (a stream ends with an error event and [DONE]) and exits 0.

The model runs on a worker thread, so the server answers (/health, streams, errors) while it
computes. Up to --parallel requests generate together, sharing each forward pass (continuous
batching: a request joins or leaves between steps; each gets the same tokens as alone); more wait
in arrival order. A request that continues an earlier one (the next turn of a chat) reuses the KV
cache of a sequence that holds its prefix. A client that disconnects stops its generation. Sampling
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
  --parallel N          requests generated at once, each with a KV cache of its own (default: up to 4,
                        while their KV caches take at most an eighth of --memory, or 1 GiB without it)
  --max-queue N         requests that may wait for a free sequence; more get 429 (default ${DEFAULT_LIMITS.maxQueue})
  --max-tokens N        most tokens one request may generate (default ${DEFAULT_LIMITS.maxTokens})
  --max-body SIZE       largest request body; larger ones get 413 (default ${formatBytes(DEFAULT_LIMITS.maxBodyBytes)})
  --max-messages N      most messages in one chat request; more get 400 (default ${DEFAULT_LIMITS.maxMessages})
  --request-timeout S   seconds a client may take to send a whole request; slower ones get 408 (default ${DEFAULT_LIMITS.requestTimeoutMs / 1000})
  --shutdown-timeout S  seconds a shutdown waits for the requests in progress (default ${DEFAULT_SHUTDOWN_TIMEOUT_S})

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
        "max-messages": { type: "string" },
        parallel: { type: "string" },
        "request-timeout": { type: "string" },
        "shutdown-timeout": { type: "string" },
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
    maxMessages: parseInteger(values["max-messages"], "--max-messages", 1) ?? DEFAULT_LIMITS.maxMessages,
    requestTimeoutMs: 1000 * (parseNumber(values["request-timeout"], "--request-timeout", 0.1, 3600) ?? DEFAULT_LIMITS.requestTimeoutMs / 1000),
  };
  const shutdownTimeoutMs = 1000 * (parseNumber(values["shutdown-timeout"], "--shutdown-timeout", 0, 86400) ?? DEFAULT_SHUTDOWN_TIMEOUT_S);
  const parallel = parseInteger(values.parallel, "--parallel", 1, 256) ?? "auto";
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
  const options = loadOptions(values);
  const path = values.model ?? demoModelPath(log);
  const modelId = values.alias ?? basename(path).replace(/\.gguf$/i, "");
  // listening before the model loads: /health says 503 meanwhile, and a bad port is found at once
  const loading = loadModelInWorker(path, { ...options, parallel, onPlan: options.memory !== undefined ? (plan) => log(formatPlan(plan)) : undefined });
  loading.catch(() => {});
  let server: RunningServer;
  try {
    server = await startServer({ model: loading, modelId, strictModel: values["strict-model"], host, port, limits, ...access, log: (record) => log(formatRecord(record)) });
  } catch (error) {
    await loading.then((model) => model.close(), () => {});
    throw new UsageError(`smallthinker serve: cannot listen on ${host}:${port}: ${(error as Error).message}`);
  }
  const signalled = untilSignalled();
  log(`Listening at ${server.url}; loading ${path} (/health says 503 until it is ready)`);
  let model: WorkerModel;
  try {
    model = await Promise.race([loading, signalled.then(() => undefined)]) as WorkerModel;
  } catch (error) {
    await server.close();
    throw error;
  }
  if (!model) {
    // stopped while loading: nothing was being served
    await server.close();
    await loading.then((loaded) => loaded.close(), () => {});
    return;
  }
  describeModel(model, log);
  log(`Serving "${modelId}" at ${server.url}/v1 with ${model.parallel} parallel sequence${model.parallel === 1 ? "" : "s"} (Ctrl-C to stop)${apiKey ? "; API key required" : ""}`);
  await signalled;
  log(`Shutting down: no new connections; waiting up to ${shutdownTimeoutMs / 1000} s for the requests in progress (a second signal stops at once)`);
  const again = untilSignalled();
  const drained = server.drain(shutdownTimeoutMs);
  void again.then(() => server.close());
  const { finished, cut } = await drained;
  log(`Drained: ${finished} request${finished === 1 ? "" : "s"} finished${cut > 0 ? `, ${cut} generation${cut === 1 ? "" : "s"} cut at the timeout` : ""}`);
  await model.close();
}

function describeModel(model: WorkerModel, log: (line: string) => void): void {
  if (model.info.synthetic) log(`Model ${model.path}: RANDOM WEIGHTS (a synthetic SmallThinker-architecture model, not trained) — its text is meaningless.`);
  const c = model.config;
  log(`${c.layers} layers, hidden ${c.hidden}, ${c.experts} experts (top-${c.expertsUsed}), vocabulary ${c.vocabSize}; kernels ${model.kernels.name} × ${model.kernels.threads} threads; context ${model.contextSize}`);
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
