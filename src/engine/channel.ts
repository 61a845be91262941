import { GenerationResult } from "./generation.js";

/**
 * The text of one generation on its way from whoever runs it (the scheduler on this thread, or
 * messages from the model's worker thread) to whoever iterates it. Pieces are kept until read: the
 * generation does not wait for a slow reader (its text is bounded by maxTokens).
 */
export class TextChannel implements AsyncIterable<string> {
  /** Resolves with the result once the generation has ended, or undefined if it failed. */
  readonly finished: Promise<GenerationResult | undefined>;
  private readonly pieces: string[] = [];
  private wakeReader: (() => void) | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;
  private settle!: (result: GenerationResult | undefined) => void;

  constructor() {
    this.finished = new Promise((resolve) => (this.settle = resolve));
  }

  push(text: string): void {
    if (this.ended) return;
    this.pieces.push(text);
    this.notify();
  }

  end(result: GenerationResult): void {
    if (this.ended) return;
    this.ended = true;
    this.settle(result);
    this.notify();
  }

  fail(error: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = { error };
    this.settle(undefined);
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<string, void, void> {
    for (;;) {
      const piece = this.pieces.shift();
      if (piece !== undefined) {
        yield piece;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
  }

  private notify(): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }
}
