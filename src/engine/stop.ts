/**
 * Watches streamed text for stop strings. Each `push` returns the text that can be shown now: text
 * that could still turn out to be the start of a stop string is held back until the next piece
 * settles it, so a stop string split across any number of pieces is never partly shown. When a
 * stop string completes, the text before it is released and the stop string itself is dropped.
 */
export class StopMatcher {
  private readonly stopStrings: readonly string[];
  private pending = "";
  private stopped = false;

  constructor(stopStrings: readonly string[]) {
    stopStrings.forEach((stop, index) => {
      if (typeof stop !== "string" || stop.length === 0) {
        throw new TypeError(`stop strings must be non-empty strings; stop string ${index} is ${JSON.stringify(stop)}`);
      }
    });
    this.stopStrings = [...stopStrings];
  }

  /** Adds generated text. Once a stop string has matched, further pieces are ignored. */
  push(piece: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: "", stopped: true };
    const text = this.pending + piece;
    const stopAt = this.firstMatch(text);
    if (stopAt >= 0) {
      this.stopped = true;
      this.pending = "";
      return { text: text.slice(0, stopAt), stopped: true };
    }
    let safeEnd = text.length - this.longestPartialMatch(text);
    // half of a surrogate pair is not text yet: wait for the other half
    if (safeEnd > 0 && isHighSurrogate(text.charCodeAt(safeEnd - 1))) safeEnd--;
    this.pending = text.slice(safeEnd);
    return { text: text.slice(0, safeEnd), stopped: false };
  }

  /** At the end of generation: the held-back text, which no stop string completed. */
  flush(): string {
    const rest = this.pending;
    this.pending = "";
    return rest;
  }

  /** Where the earliest complete stop string starts, or -1. */
  private firstMatch(text: string): number {
    let first = -1;
    for (const stop of this.stopStrings) {
      const at = text.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    return first;
  }

  /** The length of the longest end of `text` that begins some stop string. */
  private longestPartialMatch(text: string): number {
    let longest = 0;
    for (const stop of this.stopStrings) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
