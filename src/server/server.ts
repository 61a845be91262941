import { createServer, IncomingMessage, ServerResponse, STATUS_CODES } from "node:http";
import { AddressInfo, Socket } from "node:net";
import { LanguageModel } from "../engine/language-model.js";
import { AccessControl, type AccessOptions } from "./access.js";
import { Admission } from "./admission.js";
import { prepareForModel } from "./completions.js";
import { DEFAULT_LIMITS, Exchange, ServerLimits, Site } from "./context.js";
import { ApiError, CLIENT_CLOSED, internalError } from "./errors.js";
import { sendError } from "./http.js";
import { RequestRecord } from "./log.js";
import { ServerMetrics } from "./metrics.js";
import { findHandler } from "./routes.js";

export interface ServerOptions extends AccessOptions {
  /**
   * The model, or a promise of it: until it resolves the server answers /health with 503
   * ("loading") and generations with 503, so a load balancer sends requests elsewhere meanwhile.
   */
  model: LanguageModel | Promise<LanguageModel>;
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

export interface DrainResult {
  /** Requests in progress when the drain began, or arriving on open connections during it, that were answered in full. */
  finished: number;
  /** Generations still running at the end of the grace period, cut short. */
  cut: number;
}

export interface RunningServer {
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  /** Resolves once the model has loaded and generations are served; rejects if it failed to load. */
  readonly ready: Promise<void>;
  /**
   * A graceful shutdown: stops accepting connections, answers new requests on open ones with 503
   * (/health too) and closes their connections, lets the requests in progress finish for up to
   * `timeoutMs`, then cuts the generations still running (a stream ends with an error event and
   * [DONE], a whole response is a 503) and closes every connection.
   */
  drain(timeoutMs: number): Promise<DrainResult>;
  /** Stops listening, ends the generations in progress and closes every connection. */
  close(): Promise<void>;
}

/** How often Node looks for requests that are taking longer than the request timeout to arrive. */
function checkingInterval(timeoutMs: number): number {
  return Math.max(50, Math.min(1000, Math.floor(timeoutMs / 4)));
}

/** Serves `model` over an OpenAI-compatible HTTP API until `close` or `drain` is called. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const host = options.host ?? "127.0.0.1";
  const access = new AccessControl(options, host);
  const shutdown = new AbortController();
  const site: Site = {
    model: undefined,
    state: "loading",
    modelId: options.modelId,
    strictModel: options.strictModel ?? false,
    created: Math.floor(Date.now() / 1000),
    limits,
    admission: new Admission(limits.maxQueue),
    metrics: new ServerMetrics(),
    shutdown: shutdown.signal,
  };
  const serve = (model: LanguageModel) => {
    prepareForModel(model);
    site.model = model;
    site.admission.setSlots(model.parallel);
    if (site.state === "loading") site.state = "ready";
  };
  const given = options.model;
  let ready: Promise<void>;
  if (given instanceof LanguageModel) {
    serve(given);
    ready = Promise.resolve();
  } else {
    ready = given.then(serve, (error: unknown) => {
      if (site.state === "loading") site.state = "failed";
      throw error;
    });
    ready.catch(() => {}); // the caller learns of it through `ready`
  }
  const log = (record: RequestRecord) => {
    site.metrics.observe(record);
    try {
      options.log?.(record);
    } catch (error) {
      console.error("smallthinker serve: the request log failed:", error);
    }
  };
  // the tokens-per-second gauge needs samples between scrapes
  const sampler = setInterval(() => site.metrics.sampleEngine(site.model?.metrics()), 1000);
  sampler.unref();

  const inFlight = new Set<Promise<void>>();
  /** Exchanges whose response is not finished yet, per connection. */
  const open = new WeakMap<Socket, Set<Exchange>>();
  const abandoners = new WeakMap<Exchange, () => void>();
  const server = createServer(
    { requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: checkingInterval(limits.requestTimeoutMs) },
    (request, response) => {
      const handling = handle(site, access, request, response, log, (exchange, abandonBody) => {
        abandoners.set(exchange, abandonBody);
        const socket = request.socket;
        let exchanges = open.get(socket);
        if (!exchanges) open.set(socket, (exchanges = new Set()));
        exchanges.add(exchange);
        response.once("close", () => {
          exchanges.delete(exchange);
          // a draining server lets connections go as soon as they are idle
          if (site.state === "draining") server.closeIdleConnections();
        });
      });
      inFlight.add(handling);
      void handling.finally(() => inFlight.delete(handling));
    },
  );
  const failedSockets = new WeakSet<Socket>();
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    // the parser reports every later byte too: the first error decides
    if (failedSockets.has(socket)) return;
    failedSockets.add(socket);
    if (!socket.writable || error.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const exchanges = [...(open.get(socket) ?? [])];
    const unread = exchanges.find(({ request, response }) => !request.complete && !response.headersSent);
    if (unread) {
      // the fault is in this request's own body (it stalled past the timeout, or its framing broke)
      sendError(unread.response, malformed(error));
      abandoners.get(unread)?.();
      return;
    }
    // bytes after a request (a Content-Length shorter than its body, or garbage): that request is
    // answered first, then this (unless the client said it would send nothing more), then the
    // connection closes
    const answer = () => {
      if (error.code === "HPE_CLOSED_CONNECTION") socket.end();
      else answerMalformed(error, socket, log);
    };
    let left = exchanges.length;
    if (left === 0) answer();
    for (const { response } of exchanges) {
      response.once("close", () => {
        if (--left === 0) answer();
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const stopListening = () => new Promise<void>((resolve) => server.close(() => resolve()));
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    ready,
    async drain(timeoutMs: number): Promise<DrainResult> {
      site.state = "draining";
      closing ??= stopListening();
      server.closeIdleConnections();
      let finished = 0;
      let cut = 0;
      const deadline = performance.now() + timeoutMs;
      // requests may still arrive on connections that were open: they are answered (503) and counted
      while (inFlight.size > 0) {
        const left = deadline - performance.now();
        if (left <= 0) {
          cut = site.admission.running + site.admission.waiting;
          shutdown.abort();
          await Promise.allSettled(inFlight);
          break;
        }
        const batch = [...inFlight];
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.allSettled(batch), new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
        clearTimeout(timer);
        finished += batch.filter((handling) => !inFlight.has(handling)).length;
      }
      clearInterval(sampler);
      server.closeAllConnections();
      await closing;
      return { finished, cut };
    },
    async close() {
      site.state = "draining";
      clearInterval(sampler);
      closing ??= stopListening();
      // closing a connection aborts its generation, as a client that hangs up does
      server.closeAllConnections();
      await Promise.allSettled(inFlight);
      await closing;
    },
  };
}

/** Answers one request; never rejects, whatever the request or the handler does. */
async function handle(
  site: Site,
  access: AccessControl,
  request: IncomingMessage,
  response: ServerResponse,
  log: (record: RequestRecord) => void,
  track: (exchange: Exchange, abandonBody: () => void) => void,
): Promise<void> {
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
  // while draining, every answer ends its connection, so that the client's next request goes elsewhere
  if (site.state === "draining") response.setHeader("connection", "close");
  const abandon = new AbortController();
  const exchange: Exchange = { request, response, clientGone: gone.signal, record, bodyAbandoned: abandon.signal };
  track(exchange, () => abandon.abort());
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

/** The answer to bytes that are not an HTTP request: 431 for headers too large, 408 for a request that stalled, else 400. */
function malformed(error: NodeJS.ErrnoException): ApiError {
  const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
  const message = status === 408 ? "The request was not received in time." : `Malformed HTTP request: ${error.message}`;
  return new ApiError(status, message, { type: "invalid_request_error", code: error.code ?? null, headers: { connection: "close" } });
}

/** Node found no HTTP request in what the client sent: answer in the API's error shape, then hang up. */
function answerMalformed(error: NodeJS.ErrnoException, socket: Socket, log: (record: RequestRecord) => void): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const refusal = malformed(error);
  const body = JSON.stringify(refusal);
  socket.end(`HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  log({ method: "-", path: "-", status: refusal.status, ms: 0, error: error.message });
}
