import { createServer, IncomingMessage, ServerResponse, STATUS_CODES } from "node:http";
import { AddressInfo, Socket } from "node:net";
import { Model } from "../engine/model.js";
import { AccessControl, type AccessOptions } from "./access.js";
import { Admission } from "./admission.js";
import { DEFAULT_LIMITS, Exchange, ServerLimits, Site } from "./context.js";
import { ApiError, CLIENT_CLOSED, internalError } from "./errors.js";
import { sendError } from "./http.js";
import { RequestRecord } from "./log.js";
import { findHandler } from "./routes.js";

export interface ServerOptions extends AccessOptions {
  model: Model;
  /** The name clients use for the model. */
  modelId: string;
  /** Refuse requests that name another model (404), as OpenAI does; by default any name means the served model. */
  strictModel?: boolean;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  limits?: Partial<ServerLimits>;
  /** Called once for every request, when it has been answered. */
  log?: (record: RequestRecord) => void;
}

export interface RunningServer {
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  /** Stops listening, ends the generations in progress and closes every connection. */
  close(): Promise<void>;
}

/** Serves `model` over an OpenAI-compatible HTTP API until `close` is called. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const host = options.host ?? "127.0.0.1";
  const access = new AccessControl(options, host);
  const site: Site = {
    model: options.model,
    modelId: options.modelId,
    strictModel: options.strictModel ?? false,
    created: Math.floor(Date.now() / 1000),
    limits,
    admission: new Admission(limits.maxQueue),
  };
  const log = (record: RequestRecord) => {
    try {
      options.log?.(record);
    } catch (error) {
      console.error("smallthinker serve: the request log failed:", error);
    }
  };
  const inFlight = new Set<Promise<void>>();
  // a response being written on a socket is not to be interrupted by an answer to garbage after it
  const responding = new WeakSet<Socket>();
  const server = createServer((request, response) => {
    responding.add(request.socket);
    response.once("finish", () => responding.delete(request.socket));
    const handling = handle(site, access, request, response, log);
    inFlight.add(handling);
    void handling.finally(() => inFlight.delete(handling));
  });
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || responding.has(socket) || error.code === "ECONNRESET") socket.destroy();
    else answerMalformed(error, socket, log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // closing a connection aborts its generation, as a client that hangs up does
      server.closeAllConnections();
      await Promise.allSettled(inFlight);
      await closed;
    },
  };
}

/** Answers one request; never rejects, whatever the request or the handler does. */
async function handle(site: Site, access: AccessControl, request: IncomingMessage, response: ServerResponse, log: (record: RequestRecord) => void): Promise<void> {
  const started = performance.now();
  const path = (request.url ?? "/").split("?", 1)[0]!;
  const record: RequestRecord = { method: request.method ?? "?", path, status: 0, ms: 0 };
  const gone = new AbortController();
  // a reset connection also ends in "close", which is where it is dealt with
  request.on("error", () => {});
  response.on("error", () => {});
  response.on("close", () => {
    if (!response.writableFinished) gone.abort();
  });
  const exchange: Exchange = { request, response, clientGone: gone.signal, record };
  try {
    if (!access.admit(request, response, path)) await findHandler(record.method, path)(site, exchange);
  } catch (error) {
    const refusal = error instanceof ApiError ? error : internalError();
    record.error = error instanceof ApiError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
    sendError(response, refusal);
  }
  record.status = gone.signal.aborted ? CLIENT_CLOSED : response.statusCode;
  record.ms = performance.now() - started;
  log(record);
}

/** Node found no HTTP request in what the client sent: answer in the API's error shape, then hang up. */
function answerMalformed(error: NodeJS.ErrnoException, socket: Socket, log: (record: RequestRecord) => void): void {
  const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
  const body = JSON.stringify(new ApiError(status, `Malformed HTTP request: ${error.message}`, { type: "invalid_request_error", code: error.code ?? null }));
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  log({ method: "-", path: "-", status, ms: 0, error: error.message });
}
