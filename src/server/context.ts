import { IncomingMessage, ServerResponse } from "node:http";
import { Model } from "../engine/model.js";
import { Admission } from "./admission.js";
import { RequestRecord } from "./log.js";

export interface ServerLimits {
  /** Largest request body in bytes; a larger one gets 413. */
  maxBodyBytes: number;
  /** Requests that may wait behind the running one; more get 429. */
  maxQueue: number;
  /** Most tokens one request may generate; asking for more gets 400. */
  maxTokens: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = { maxBodyBytes: 1 << 20, maxQueue: 16, maxTokens: 2048 };

/** What every request is served from. */
export interface Site {
  model: Model;
  /** The name clients use for the model. */
  modelId: string;
  /** Refuse requests naming another model with a 404 (else any name means the served model). */
  strictModel: boolean;
  /** Unix seconds, reported as the model's creation time. */
  created: number;
  limits: ServerLimits;
  admission: Admission;
}

/** One request and its response. */
export interface Exchange {
  request: IncomingMessage;
  response: ServerResponse;
  /** Aborted when the client goes away before the response is complete. */
  clientGone: AbortSignal;
  /** Filled in by the handler, logged when the exchange ends. */
  record: RequestRecord;
}
