import { SamplingOptions } from "../sampling/index.js";

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default: until an end-of-generation token or the context is full). */
  maxTokens?: number;
  /** Generation ends before any of these strings; they are not part of the text. */
  stop?: string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  /** Aborting ends the generation at the next token with finishReason "abort". */
  signal?: AbortSignal;
}

export type FinishReason = "stop" | "length" | "abort";

export interface GenerationResult {
  text: string;
  /** Generated token ids (the end-of-generation token excluded). */
  tokens: number[];
  promptTokens: number;
  /** Prompt tokens whose KV cache was kept from the previous request. */
  cachedPromptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  /** Milliseconds: waiting in the queue, evaluating the prompt, first token, generating. */
  timings: { queuedMs: number; promptMs: number; firstTokenMs: number; generateMs: number };
  /** Chat only: messages left out of the prompt because the conversation outgrew the context (see ChatOptions.contextOverflow). */
  droppedMessages?: number;
}

/**
 * A running generation: iterate it for text pieces as they are produced (pulling drives the
 * work; breaking out of the loop cancels it), or await `result` for the whole text and counts.
 */
export class Generation implements AsyncIterable<string> {
  readonly result: Promise<GenerationResult>;
  private readonly pieces: AsyncGenerator<string, void, void>;
  private started = false;

  /** `run` yields text pieces and must call `finish` exactly once, also when stopped early. */
  constructor(run: (finish: (result: GenerationResult) => void) => AsyncGenerator<string, void, void>) {
    let settle!: (value: GenerationResult) => void;
    let fail!: (error: unknown) => void;
    this.result = new Promise((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    // An error still reaches iterators and explicit awaits; nobody has to await `result`.
    this.result.catch(() => {});
    this.fail = fail;
    this.pieces = run(settle);
  }

  private readonly fail: (error: unknown) => void;

  async *[Symbol.asyncIterator](): AsyncGenerator<string, void, void> {
    if (this.started) throw new Error("a generation can be iterated only once");
    this.started = true;
    try {
      for (;;) {
        const step = await this.pieces.next();
        if (step.done) return;
        if (step.value !== "") yield step.value;
      }
    } catch (error) {
      this.fail(error);
      throw error;
    } finally {
      // A consumer that stops early ends the work and frees the model for the next request.
      await this.pieces.return();
    }
  }

  /** Runs to the end without streaming and returns the result. */
  async complete(): Promise<GenerationResult> {
    if (!this.started) {
      for await (const piece of this) void piece;
    }
    return this.result;
  }
}
