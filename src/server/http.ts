import { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, CLIENT_CLOSED, invalidRequest } from "./errors.js";
import { shorten } from "./fields.js";

const JSON_TYPE = /^application\/json\s*(;|$)/i;
const EVENT_STREAM_TYPE = "text/event-stream; charset=utf-8";

function tooLarge(limit: number): ApiError {
  return new ApiError(413, `The request body is larger than this server accepts (${limit} bytes).`, {
    type: "invalid_request_error",
    code: "request_too_large",
    // hang up rather than read the rest of the body just to keep the connection usable
    headers: { connection: "close" },
  });
}

/**
 * The request's JSON body: 415 unless it is declared as JSON, 413 past `limit` bytes, 400 unless it
 * parses. `abandoned` ends the wait for a body that will never come (it was answered already: its
 * bytes stalled past the timeout, or broke the framing).
 */
export async function readJsonBody(request: IncomingMessage, limit: number, abandoned?: AbortSignal): Promise<unknown> {
  const type = request.headers["content-type"];
  if (type === undefined || !JSON_TYPE.test(type)) {
    const got = type === undefined ? "none" : JSON.stringify(shorten(type));
    throw new ApiError(415, `The Content-Type of the request must be application/json, but got ${got}.`, { type: "invalid_request_error", code: "unsupported_media_type" });
  }
  // a declared length lets a huge body be refused before a byte of it is read
  if (Number(request.headers["content-length"]) > limit) throw tooLarge(limit);
  const text = await readText(request, limit, abandoned);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalidRequest(`The request body is not valid JSON: ${shorten((error as Error).message)}`, null, "invalid_json");
  }
}

function readText(request: IncomingMessage, limit: number, abandoned: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const giveUp = () => reject(new ApiError(400, "The request body could not be read.", { type: "invalid_request_error" }));
    if (abandoned?.aborted) giveUp();
    abandoned?.addEventListener("abort", giveUp, { once: true });
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) reject(tooLarge(limit));
      else chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("close", () => reject(new ApiError(CLIENT_CLOSED, "The client closed the connection while sending the request.", { type: "invalid_request_error" })));
  });
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
  response.end(text);
}

export function sendError(response: ServerResponse, error: ApiError): void {
  if (response.destroyed || response.writableEnded) return;
  if (!response.headersSent) {
    sendJson(response, error.status, error, error.headers);
  } else if (response.getHeader("content-type") === EVENT_STREAM_TYPE) {
    // the status line went out with the stream: the error travels as its last event, where OpenAI clients look for it
    response.end(`data: ${JSON.stringify(error)}\n\n`);
  } else {
    response.destroy();
  }
}

/** A server-sent event stream in OpenAI's framing: `data: <json>` events, then `data: [DONE]`. */
export class EventStream {
  constructor(private readonly response: ServerResponse) {
    response.writeHead(200, { "content-type": EVENT_STREAM_TYPE, "cache-control": "no-cache" });
    // the client learns its request was accepted before the prompt is evaluated
    response.flushHeaders();
  }

  /**
   * Not held back for a slow reader: the buffer is bounded by max_tokens, and waiting for it
   * would let one slow client keep the model from everyone else.
   */
  send(data: object): void {
    if (!this.response.destroyed) this.response.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  end(): void {
    if (!this.response.destroyed) this.response.end("data: [DONE]\n\n");
  }
}
