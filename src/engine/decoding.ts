import { Sampler, SamplingOptions } from "../sampling/index.js";
import { StreamingDecoder, Tokenizer } from "../tokenizer/index.js";
import { FinishReason, GenerationResult } from "./generation.js";
import { StopMatcher } from "./stop.js";

/** What one generation asks for, checked and ready to run (plain data: it crosses to a worker thread). */
export interface DecodingSpec {
  promptIds: number[];
  maxTokens?: number;
  stop: string[];
  ignoreEos: boolean;
  sampling: SamplingOptions;
}

/** What `Decoding.next` decided after a row of logits. */
export interface DecodingStep {
  /** Text that can be shown now (possibly ""). */
  text: string;
  /** The token to evaluate next; undefined when the generation has ended. */
  next: number | undefined;
}

/**
 * One generation's side of decoding, apart from the forward pass: sampling, end-of-generation and
 * stop strings, the length limits, streamed text and timings. The scheduler evaluates the prompt
 * and every token `next` returns; whatever else shares its steps cannot change what this sees.
 */
export class Decoding {
  readonly tokens: number[] = [];
  private readonly sampler: Sampler;
  private readonly history: number[];
  private readonly decoder: StreamingDecoder;
  private readonly stops: StopMatcher;
  private text = "";
  private finishReason: FinishReason | undefined;
  private stoppedByString = false;
  private cachedPromptTokens = 0;
  private readonly timings = { queuedMs: 0, promptMs: 0, firstTokenMs: 0, generateMs: 0 };
  private promptStartedAt = 0;
  private generateStartedAt = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    vocabSize: number,
    private readonly contextSize: number,
    readonly spec: DecodingSpec,
    readonly queuedAt = performance.now(),
  ) {
    this.sampler = new Sampler(spec.sampling, vocabSize);
    this.history = [...spec.promptIds];
    this.decoder = new StreamingDecoder(tokenizer);
    this.stops = new StopMatcher(spec.stop);
  }

  get finished(): boolean {
    return this.finishReason !== undefined;
  }

  /** The prompt's evaluation starts, with `cached` of its tokens already in the KV cache. */
  startPrompt(cached: number): void {
    this.cachedPromptTokens = cached;
    this.promptStartedAt = performance.now();
    this.timings.queuedMs = this.promptStartedAt - this.queuedAt;
  }

  /** The logits after the last evaluated token (the prompt's last, then each token `next` returned). */
  next(logits: Float32Array): DecodingStep {
    const now = performance.now();
    if (this.tokens.length === 0 && this.generateStartedAt === 0) {
      this.timings.promptMs = now - this.promptStartedAt;
      this.generateStartedAt = now;
    }
    const { maxTokens, ignoreEos } = this.spec;
    if (maxTokens !== undefined && this.tokens.length >= maxTokens) return this.end("length", "");
    const token = this.sampler.sample(logits, this.history);
    if (!ignoreEos && this.tokenizer.isEndOfGeneration(token)) return this.end("stop", "");
    this.tokens.push(token);
    this.history.push(token);
    if (this.tokens.length === 1) this.timings.firstTokenMs = performance.now() - this.queuedAt;
    const piece = this.stops.push(this.decoder.push(token));
    this.text += piece.text;
    if (piece.stopped) {
      this.stoppedByString = true;
      return this.end("stop", piece.text);
    }
    // the token just sampled is not evaluated yet: the cache holds the prompt and the ones before it
    const evaluated = this.spec.promptIds.length + this.tokens.length - 1;
    if (evaluated >= this.contextSize) return this.end("length", piece.text);
    return { text: piece.text, next: token };
  }

  /** Ends the generation early (its client has gone); the text held back is dropped. */
  abort(): void {
    if (!this.finished) this.finishReason = "abort";
    if (this.generateStartedAt > 0) this.timings.generateMs = performance.now() - this.generateStartedAt;
  }

  result(): GenerationResult {
    if (!this.finishReason) throw new Error("the generation has not ended");
    const { promptIds } = this.spec;
    return {
      text: this.text,
      tokens: [...this.tokens],
      promptTokens: promptIds.length,
      cachedPromptTokens: this.cachedPromptTokens,
      completionTokens: this.tokens.length,
      finishReason: this.finishReason,
      timings: { ...this.timings },
    };
  }

  private end(reason: FinishReason, text: string): DecodingStep {
    this.finishReason = reason;
    let shown = text;
    if (!this.stoppedByString) {
      // what the decoder and the stop matcher held back, which no stop string completed
      const tail = this.stops.push(this.decoder.flush()).text + this.stops.flush();
      this.text += tail;
      shown += tail;
    }
    this.timings.generateMs = performance.now() - this.generateStartedAt;
    return { text: shown, next: undefined };
  }
}
