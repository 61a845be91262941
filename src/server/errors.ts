/** The `error` object of an OpenAI error response. */
export interface ErrorBody {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

/** A request the server refuses, answered with `status` and an OpenAI-shaped error body. */
export class ApiError extends Error {
  override name = "ApiError";

  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  toJSON(): { error: ErrorBody } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one parameter (`param` uses OpenAI's path syntax, e.g. "messages[0].content"). */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, code);
}

/** What the server answers for a failure of its own: the details go to the log, not to the client. */
export function internalError(): ApiError {
  return new ApiError(500, "The server had an error while processing your request.", "server_error");
}
