import { ApiError } from "./errors.js";

/**
 * Counts the generations the server has taken on. The model generates `slots` at once; past
 * `maxWaiting` requests waiting for a free slot, more are refused with a 429 rather than let the
 * queue (and every client's wait) grow without bound.
 */
export class Admission {
  private inFlight = 0;
  private slots = 1;

  constructor(private readonly maxWaiting: number) {}

  /** How many generations the model runs at once (known once it has loaded). */
  setSlots(slots: number): void {
    this.slots = slots;
  }

  get running(): number {
    return Math.min(this.inFlight, this.slots);
  }

  get waiting(): number {
    return Math.max(this.inFlight - this.slots, 0);
  }

  /** Takes a place in the queue, or throws the 429. Call `leave` when the generation has ended. */
  enter(): void {
    if (this.inFlight - this.slots >= this.maxWaiting) {
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
