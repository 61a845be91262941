import { ApiError } from "./errors.js";

/**
 * Counts the generations the server has taken on. The model runs one at a time in arrival order;
 * past `maxWaiting` requests waiting behind the running one, more are refused with a 429 rather
 * than let the queue (and every client's wait) grow without bound.
 */
export class Admission {
  private inFlight = 0;

  constructor(private readonly maxWaiting: number) {}

  get running(): number {
    return Math.min(this.inFlight, 1);
  }

  get waiting(): number {
    return Math.max(this.inFlight - 1, 0);
  }

  /** Takes a place in the queue, or throws the 429. Call `leave` when the generation has ended. */
  enter(): void {
    if (this.inFlight > this.maxWaiting) {
      throw new ApiError(429, `The server is busy: ${this.waiting} requests are already waiting for the model. Please retry shortly.`, {
        type: "requests",
        code: "rate_limit_exceeded",
        headers: { "retry-after": "1" },
      });
    }
    this.inFlight++;
  }

  leave(): void {
    this.inFlight--;
  }
}
