/** The `error` object of an OpenAI error response. */
export interface ErrorBody {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export interface ApiErrorDetails {
  type: string;
  param?: string | null;
  code?: string | null;
  /** Extra response headers (Allow for a 405, Retry-After for a 429). */
  headers?: Record<string, string>;
}

/** A request the server refuses, answered with `status` and an OpenAI-shaped error body. */
export class ApiError extends Error {
  override name = "ApiError";
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(
    readonly status: number,
    message: string,
    details: ApiErrorDetails,
  ) {
    super(message);
    this.type = details.type;
    this.param = details.param ?? null;
    this.code = details.code ?? null;
    this.headers = details.headers ?? {};
  }

  toJSON(): { error: ErrorBody } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one parameter (`param` uses OpenAI's path syntax, e.g. "messages[0].content"). */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, { type: "invalid_request_error", param, code });
}

/** What the client is told about a failure of the server's own: the details go to the log. */
export function internalError(): ApiError {
  return new ApiError(500, "The server had an error while processing your request.", { type: "server_error" });
}

/** nginx's status for a client that closed the connection before the response was complete; only ever logged. */
export const CLIENT_CLOSED = 499;
