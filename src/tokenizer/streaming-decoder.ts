import type { Tokenizer } from "./tokenizer.js";

export interface StreamingDecoderOptions {
  /** Render CONTROL tokens as their text (default true), as Tokenizer.decode. */
  renderSpecial?: boolean;
}

/**
 * Turns generated token ids into text as they arrive. A character whose UTF-8 bytes are spread over
 * several byte-level tokens is held back until complete, so no piece ends in half a character;
 * `flush` ends the stream, turning bytes that never completed a character into U+FFFD.
 * The concatenated pieces equal `tokenizer.decode` of all the ids.
 */
export class StreamingDecoder {
  /** Keeps a leading U+FEFF, as Tokenizer.decode does. */
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  private readonly renderSpecial: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: StreamingDecoderOptions = {},
  ) {
    this.renderSpecial = options.renderSpecial ?? true;
  }

  /** The text completed by this token: possibly "", never a partial character. */
  push(id: number): string {
    return this.decoder.decode(this.tokenizer.tokenBytes(id, { renderSpecial: this.renderSpecial }), { stream: true });
  }

  /** Ends the stream: returns what was held back (invalid bytes as U+FFFD) and resets for a new stream. */
  flush(): string {
    return this.decoder.decode();
  }
}
