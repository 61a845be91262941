import { IncomingMessage, ServerResponse } from "node:http";
import { LanguageModel } from "../engine/language-model.js";
import { Admission } from "./admission.js";
import { ApiError } from "./errors.js";
import { RequestRecord } from "./log.js";
import { ServerMetrics } from "./metrics.js";

export interface ServerLimits {
  /** Largest request body in bytes; a larger one gets 413. */
  maxBodyBytes: number;
  /** Requests that may wait for a free sequence; more get 429. */
  maxQueue: number;
  /** Most tokens one request may generate; asking for more gets 400. */
  maxTokens: number;
  /** Most messages in one chat request; more get 400 (rendering the chat template takes time per message). */
  maxMessages: number;
  /** Milliseconds a client may take to send a whole request, headers and body; a slower one gets 408. */
  requestTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = { maxBodyBytes: 1 << 20, maxQueue: 16, maxTokens: 2048, maxMessages: 512, requestTimeoutMs: 30_000 };

/** Where the server is in its life: only "ready" serves generations; /health says which. */
export type ServerState = "loading" | "ready" | "draining" | "failed";

/** What every request is served from. */
export interface Site {
  /** The model, once loaded. */
  model: LanguageModel | undefined;
  state: ServerState;
  /** The name clients use for the model. */
  modelId: string;
  /** Refuse requests naming another model with a 404 (else any name means the served model). */
  strictModel: boolean;
  /** Unix seconds, reported as the model's creation time. */
  created: number;
  limits: ServerLimits;
  admission: Admission;
  metrics: ServerMetrics;
  /** Aborted when a shutdown's grace period is over: generations still running are cut. */
  shutdown: AbortSignal;
}

/** One request and its response. */
export interface Exchange {
  request: IncomingMessage;
  response: ServerResponse;
  /** Aborted when the client goes away before the response is complete. */
  clientGone: AbortSignal;
  /** Filled in by the handler, logged when the exchange ends. */
  record: RequestRecord;
  /** Aborted when the body will never be read (the request was answered for its broken or stalled body). */
  bodyAbandoned: AbortSignal;
}

/** The model, or the 503 that tells the client (or the load balancer before it) to go elsewhere for now. */
export function servingModel(site: Site): LanguageModel {
  if (site.state === "ready" && site.model) return site.model;
  const why = site.state === "loading" ? "is loading the model" : site.state === "draining" ? "is shutting down" : "could not load the model";
  throw new ApiError(503, `The server ${why}; please retry shortly.`, {
    type: "server_error",
    code: site.state === "loading" ? "model_loading" : site.state === "draining" ? "shutting_down" : "model_unavailable",
    // a draining server's connection ends with this answer, so that the next request goes elsewhere
    headers: { "retry-after": "1", ...(site.state === "draining" ? { connection: "close" } : {}) },
  });
}
