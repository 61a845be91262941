import { ChatMessage, ChatTemplate, ChatTemplateError, renderChatPrompt, type PromptProtection } from "../chat/index.js";
import { GgufFile } from "../gguf/reader.js";
import { SmallThinkerConfig } from "../model/config.js";
import { Tokenizer } from "../tokenizer/index.js";
import { TextChannel } from "./channel.js";
import { Decoding, DecodingSpec } from "./decoding.js";
import { GenerateOptions, Generation, GenerationResult } from "./generation.js";
import type { SchedulerCounts } from "./scheduler.js";

export interface ModelInfo {
  name: string;
  description: string;
  /** The file says its weights are synthetic (random). */
  synthetic: boolean;
}

/** How a chat is turned into a prompt. */
export interface ChatPromptOptions {
  /** Tool (function) schemas, for templates that describe tools. */
  tools?: unknown[];
  /** More template variables (llama-server's chat_template_kwargs), e.g. `{ enable_thinking: false }`. */
  templateVariables?: Record<string, unknown>;
}

export interface ChatOptions extends GenerateOptions, ChatPromptOptions {
  /**
   * When the conversation does not fit the context: "error" (the default) throws a RangeError;
   * "drop-oldest" leaves out its oldest messages, never the leading system messages nor the last
   * message, until the prompt and room for the reply take at most half the context (so the next
   * turns append to the KV cache instead of evaluating the whole prompt again). The result's
   * `droppedMessages` says how many were left out; a last message that cannot fit still throws.
   */
  contextOverflow?: "error" | "drop-oldest";
}

export interface PromptOptions extends GenerateOptions {
  /**
   * For a text prompt: whether special-token text in it ("<|im_start|>", "<think>") becomes special
   * tokens. Default false: the prompt is plain text, as anything someone else wrote must be (else it
   * can forge chat turns). true for a prompt you formatted yourself, such as your own ChatML; a
   * prompt that mixes your markup with others' text is a chat: use `chat`, or tokenize the parts
   * yourself and pass token ids.
   */
  parseSpecial?: boolean;
}

/** A chat's prompt: its ids, and how they were found. */
export interface ChatPromptTokens {
  ids: number[];
  /** The template's rendering, for showing (its special-token text may come from the messages: do not tokenize it). */
  text: string;
  /** How the message text was kept apart from the template's markup (see src/chat/prompt.ts). */
  protection: PromptProtection;
  /** false when the template looked for special-token text inside a message: the ids then follow a rendering in which it did not find it. */
  faithful: boolean;
}

/** What the engine is doing, for a server's metrics. */
export interface EngineMetrics extends SchedulerCounts {
  /** Expert uses served from memory, and read from the file; bytes read. */
  expertHits: number;
  expertMisses: number;
  expertBytesRead: number;
}

/** The parts of a model file that turn text into prompts and tokens back into text. */
export interface ModelText {
  readonly tokenizer: Tokenizer;
  /**
   * Parsed when first needed: a model whose template is broken still completes plain text; chat
   * fails then, naming the file and the key.
   */
  readonly chatTemplate: ChatTemplate;
  readonly info: ModelInfo;
}

/** Reads the tokenizer, chat template and description from a GGUF's metadata (no weights). */
export function readModelText(path: string): ModelText {
  const header = GgufFile.open(path);
  try {
    const meta = header.metadata;
    const tokenizer = Tokenizer.fromGguf(meta);
    const source = meta.optionalString("tokenizer.chat_template");
    const info = {
      name: meta.optionalString("general.name") ?? path,
      description: meta.optionalString("general.description") ?? "",
      synthetic: meta.has("synth.seed"),
    };
    let template: ChatTemplate | undefined;
    return {
      tokenizer,
      info,
      get chatTemplate() {
        return (template ??= parseChatTemplate(path, source, tokenizer));
      },
    };
  } finally {
    header.close();
  }
}

function parseChatTemplate(path: string, source: string | undefined, tokenizer: Tokenizer): ChatTemplate {
  const text = (id: number | null) => (id === null ? "" : tokenizer.tokenText(id));
  try {
    return ChatTemplate.fromGguf(source, { bos: text(tokenizer.bosId), eos: text(tokenizer.eosId) });
  } catch (error) {
    if (error instanceof ChatTemplateError) throw new ChatTemplateError(`${path}: ${error.message}`, error.cause);
    throw error;
  }
}

/**
 * Drops the oldest messages of a conversation (after its leading system messages, never the last
 * one, and so that what is kept starts with a user message) until its prompt plus room for the
 * reply fits in half the context, or as close to that as the last message allows.
 */
function fitConversation(messages: ChatMessage[], render: (kept: ChatMessage[]) => number[], contextSize: number, maxTokens: number | undefined): { ids: number[]; dropped: number } {
  const reply = Math.max(1, Math.min(maxTokens ?? Math.floor(contextSize / 4), Math.floor(contextSize / 2)));
  const target = Math.floor(contextSize / 2);
  let ids = render(messages);
  if (ids.length + reply <= contextSize) return { ids, dropped: 0 };
  let first = 0;
  while (first < messages.length - 1 && messages[first]!.role === "system") first++;
  let dropped = 0;
  while (first + dropped < messages.length - 1 && ids.length + reply > target) {
    dropped++;
    while (first + dropped < messages.length - 1 && messages[first + dropped]!.role !== "user") dropped++;
    ids = render([...messages.slice(0, first), ...messages.slice(first + dropped)]);
  }
  if (ids.length >= contextSize) {
    throw new RangeError(
      `the last message is too long for the context: with ${first > 0 ? "the system prompt and " : ""}the chat template it takes ${ids.length} tokens; the context holds ${contextSize}`,
    );
  }
  return { ids, dropped };
}

/** The prompt ids of a chat, with the model file's tokenizer and template (see `LanguageModel.chatPrompt`). */
export function chatPromptOf(text: Pick<ModelText, "tokenizer" | "chatTemplate">, messages: ChatMessage[], options: ChatPromptOptions = {}): ChatPromptTokens {
  const prompt = renderChatPrompt(text.chatTemplate, messages, { addGenerationPrompt: true, tools: options.tools, variables: options.templateVariables }, text.tokenizer);
  return { ids: text.tokenizer.encodeSegments(prompt.segments), text: prompt.text, protection: prompt.protection, faithful: prompt.faithful };
}

/** Where a generation's work goes: `start` begins it, and the handle asks it to stop early. */
export type GenerationStarter = (decoding: Decoding, channel: TextChannel, signal: AbortSignal | undefined) => { cancel(): void };

/**
 * A loaded model as its users see it: prompts in, streamed text out. What needs only the tokenizer
 * and the chat template is here; subclasses run the forward pass on this thread (`Model`) or on a
 * worker thread (`WorkerModel`).
 */
export abstract class LanguageModel {
  readonly tokenizer: Tokenizer;
  readonly info: ModelInfo;

  protected constructor(
    readonly path: string,
    readonly config: SmallThinkerConfig,
    private readonly text: ModelText,
  ) {
    this.tokenizer = text.tokenizer;
    this.info = text.info;
  }

  /** The model's chat template, parsed when first needed (see ModelText). */
  get chatTemplate(): ChatTemplate {
    return this.text.chatTemplate;
  }

  abstract get contextSize(): number;
  /** Sequences generated at once (continuous batching); more requests wait in arrival order. */
  abstract get parallel(): number;
  /** Requests waiting for a sequence. */
  abstract get queued(): number;
  abstract metrics(): EngineMetrics;
  abstract close(): Promise<void>;
  protected abstract get starter(): GenerationStarter;
  protected abstract get isClosed(): boolean;

  tokenize(text: string, parseSpecial = true): number[] {
    return this.tokenizer.encode(text, { parseSpecial });
  }

  detokenize(ids: readonly number[]): string {
    return this.tokenizer.decode(ids);
  }

  /**
   * The text a chat renders to through the model's chat template, for showing. Do not tokenize it
   * with special tokens parsed: special-token text in a message would become special tokens; the
   * ids `chat` uses are `chatPrompt(…).ids`.
   */
  renderChat(messages: ChatMessage[], tools?: unknown[], templateVariables?: Record<string, unknown>): string {
    return this.chatTemplate.render(messages, { addGenerationPrompt: true, tools, variables: templateVariables });
  }

  /**
   * The prompt ids of a chat: special tokens only where the template's markup puts them, every
   * string of the messages, tools and variables tokenized as plain text.
   */
  chatPrompt(messages: ChatMessage[], options: ChatPromptOptions = {}): ChatPromptTokens {
    return chatPromptOf(this, messages, options);
  }

  /**
   * `chatPrompt(…).ids`, computed where it does not hold up this thread if the model can (a
   * `WorkerModel` renders and tokenizes on a thread of its own: a long chat takes a fraction of a
   * second, during which a server's thread would answer nobody). Rejects as `chatPrompt` throws.
   */
  async chatPromptIds(messages: ChatMessage[], options: ChatPromptOptions = {}): Promise<number[]> {
    return this.chatPrompt(messages, options).ids;
  }

  /** A text prompt's ids (plain text unless `parseSpecial`), computed as `chatPromptIds` is. */
  async textPromptIds(text: string, parseSpecial: boolean): Promise<number[]> {
    return this.tokenizer.encode(text, parseSpecial ? {} : { plainText: true });
  }

  /** Generates the assistant's reply; message text is always text (see `chatPrompt`). */
  chat(messages: ChatMessage[], options: ChatOptions = {}): Generation {
    const { tools, templateVariables, contextOverflow = "error", ...rest } = options;
    if (contextOverflow !== "error" && contextOverflow !== "drop-oldest") {
      throw new RangeError(`contextOverflow must be "error" or "drop-oldest", got ${JSON.stringify(contextOverflow)}`);
    }
    if (this.isClosed) throw new Error("the model is closed");
    const render = (kept: ChatMessage[]) => this.chatPrompt(kept, { tools, templateVariables }).ids;
    const fitted = contextOverflow === "drop-oldest" ? fitConversation(messages, render, this.contextSize, rest.maxTokens) : { ids: render(messages), dropped: 0 };
    return this.start(fitted.ids, rest, { droppedMessages: fitted.dropped });
  }

  /** Generates a continuation of `prompt`: token ids, or text (plain text unless `parseSpecial`). */
  generate(prompt: string | readonly number[], options: PromptOptions = {}): Generation {
    if (this.isClosed) throw new Error("the model is closed");
    const { parseSpecial = false, ...rest } = options;
    return this.start(typeof prompt === "string" ? this.tokenizer.encode(prompt, parseSpecial ? {} : { plainText: true }) : [...prompt], rest, {});
  }

  private start(promptIds: number[], options: GenerateOptions, extra: Partial<GenerationResult>): Generation {
    const { maxTokens, stop = [], ignoreEos = false, signal, ...sampling } = options;
    if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 0)) {
      throw new RangeError(`maxTokens must be a whole number ≥ 0, got ${maxTokens}`);
    }
    if (promptIds.length === 0) throw new RangeError("the prompt is empty: at least one token is needed");
    if (promptIds.length >= this.contextSize) {
      throw new RangeError(`the prompt has ${promptIds.length} tokens; the context holds ${this.contextSize} (and one is needed to generate)`);
    }
    const outside = promptIds.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= this.config.vocabSize);
    if (outside >= 0) throw new RangeError(`token id ${promptIds[outside]} at index ${outside} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
    const spec: DecodingSpec = { promptIds, maxTokens, stop, ignoreEos, sampling };
    // checks the sampling options and stop strings now, where the caller can catch the error
    const decoding = new Decoding(this.tokenizer, this.config.vocabSize, this.contextSize, spec);
    const start = this.starter;
    return new Generation(async function* (finish) {
      const channel = new TextChannel();
      const handle = start(decoding, channel, signal);
      try {
        for await (const piece of channel) yield piece;
      } finally {
        // a consumer that stops early ends the work; the result says how far it got
        handle.cancel();
        const result = await channel.finished;
        if (result) finish({ ...result, ...extra });
      }
    });
  }
}
