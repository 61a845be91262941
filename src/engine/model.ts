import { ChatMessage, ChatTemplate, ChatTemplateError, renderChatPrompt, type PromptProtection } from "../chat/index.js";
import { GgufFile } from "../gguf/reader.js";
import { Kernels, KvType } from "../kernels/api.js";
import { SmallThinkerConfig } from "../model/config.js";
import { loadSmallThinker } from "../model/load.js";
import { SmallThinkerModel } from "../model/model.js";
import { Sampler } from "../sampling/index.js";
import { StreamingDecoder, Tokenizer } from "../tokenizer/index.js";
import { createKernels, KernelChoice } from "./kernels.js";
import { FinishReason, GenerateOptions, Generation, GenerationResult } from "./generation.js";
import { StopMatcher } from "./stop.js";
import { parseSize } from "./size.js";
import type { PolicyName } from "../experts/policy.js";
import type { MemoryPlan } from "../model/plan.js";

export interface LoadModelOptions {
  /** Context size in tokens (default 4096, at most the model's). */
  contextSize?: number;
  /** Prompt tokens evaluated per batch (default 256). */
  batchSize?: number;
  /** KV cache element type (default f16). */
  kvType?: KvType;
  /** Skip expert neurons whose gate is ≤ 0 (default true; results are identical either way). */
  sparse?: boolean;
  /** Worker threads for the kernels (default: the core count). */
  threads?: number;
  /** Kernel implementation (default "auto": WebAssembly SIMD when available). */
  kernels?: KernelChoice;
  /** Memory budget for the whole process, in bytes or as text ("1GiB", "800M"); default: every expert resident. */
  memory?: number | string;
  /** Expert cache replacement policy (default "frequency"). */
  policy?: PolicyName;
  /** Read experts as soon as the router has chosen them, during attention (default true). */
  prefetch?: boolean;
  /** Layers ahead whose experts are guessed (their routers on the current residual) and read while idle (default 2). */
  lookahead?: number;
  /** Receives the memory plan before the weights are loaded. */
  onPlan?: (plan: MemoryPlan) => void;
  /** Called as the weights are read, with bytes read so far and bytes to read in all. */
  onProgress?: (loaded: number, total: number) => void;
}

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

/** A FIFO lock: requests run one at a time in arrival order. */
class Queue {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;

  get length(): number {
    return this.waiting;
  }

  async acquire(): Promise<() => void> {
    this.waiting++;
    let release!: () => void;
    const previous = this.tail;
    this.tail = new Promise((resolve) => (release = resolve));
    await previous;
    this.waiting--;
    return release;
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
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

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A loaded SmallThinker model: tokenizer, chat template and one KV-cached sequence. Requests are
 * served one at a time; a request that shares a prefix with the previous one reuses its KV cache.
 */
export class Model {
  readonly config: SmallThinkerConfig;
  readonly tokenizer: Tokenizer;
  readonly info: ModelInfo;
  private template: ChatTemplate | undefined;
  private readonly queue = new Queue();
  /** Tokens whose keys and values are in the KV cache, in order. */
  private evaluated: number[] = [];
  private closed = false;

  private constructor(
    readonly path: string,
    readonly engine: SmallThinkerModel,
    readonly kernels: Kernels,
    tokenizer: Tokenizer,
    private readonly templateSource: string | undefined,
    info: ModelInfo,
  ) {
    this.config = engine.config;
    this.tokenizer = tokenizer;
    this.info = info;
  }

  /**
   * The model's chat template, parsed when first needed: a model whose template is broken still
   * completes plain text; chat fails then, naming the file and the key.
   */
  get chatTemplate(): ChatTemplate {
    if (!this.template) {
      const text = (id: number | null) => (id === null ? "" : this.tokenizer.tokenText(id));
      try {
        this.template = ChatTemplate.fromGguf(this.templateSource, { bos: text(this.tokenizer.bosId), eos: text(this.tokenizer.eosId) });
      } catch (error) {
        if (error instanceof ChatTemplateError) throw new ChatTemplateError(`${this.path}: ${error.message}`, error.cause);
        throw error;
      }
    }
    return this.template;
  }

  static async load(path: string, options: LoadModelOptions = {}): Promise<Model> {
    const header = GgufFile.open(path);
    let tokenizer: Tokenizer;
    let templateSource: string | undefined;
    let info: ModelInfo;
    try {
      const meta = header.metadata;
      tokenizer = Tokenizer.fromGguf(meta);
      templateSource = meta.optionalString("tokenizer.chat_template");
      info = {
        name: meta.optionalString("general.name") ?? path,
        description: meta.optionalString("general.description") ?? "",
        synthetic: meta.has("synth.seed"),
      };
    } finally {
      header.close();
    }
    const memory = typeof options.memory === "string" ? parseSize(options.memory) : options.memory;
    const kernels = await createKernels(options.kernels ?? "auto", options.threads);
    try {
      const engine = loadSmallThinker(path, kernels, { ...options, memory });
      return new Model(path, engine, kernels, tokenizer, templateSource, info);
    } catch (error) {
      await kernels.dispose();
      throw error;
    }
  }

  /** Requests waiting for the model. */
  get queued(): number {
    return this.queue.length;
  }

  get contextSize(): number {
    return this.engine.kv.contextSize;
  }

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
    const prompt = renderChatPrompt(this.chatTemplate, messages, { addGenerationPrompt: true, tools: options.tools, variables: options.templateVariables }, this.tokenizer);
    return { ids: this.tokenizer.encodeSegments(prompt.segments), text: prompt.text, protection: prompt.protection, faithful: prompt.faithful };
  }

  /** Generates the assistant's reply; message text is always text (see `chatPrompt`). */
  chat(messages: ChatMessage[], options: ChatOptions = {}): Generation {
    const { tools, templateVariables, contextOverflow = "error", ...rest } = options;
    if (contextOverflow !== "error" && contextOverflow !== "drop-oldest") {
      throw new RangeError(`contextOverflow must be "error" or "drop-oldest", got ${JSON.stringify(contextOverflow)}`);
    }
    if (this.closed) throw new Error("the model is closed");
    const render = (kept: ChatMessage[]) => this.chatPrompt(kept, { tools, templateVariables }).ids;
    const fitted = contextOverflow === "drop-oldest" ? fitConversation(messages, render, this.contextSize, rest.maxTokens) : { ids: render(messages), dropped: 0 };
    return this.start(fitted.ids, rest, { droppedMessages: fitted.dropped });
  }

  /** Generates a continuation of `prompt`: token ids, or text (plain text unless `parseSpecial`). */
  generate(prompt: string | readonly number[], options: PromptOptions = {}): Generation {
    if (this.closed) throw new Error("the model is closed");
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
    const sampler = new Sampler(sampling, this.config.vocabSize);
    const model = this;
    const queuedAt = performance.now();
    return new Generation(async function* (finish) {
      const release = await model.queue.acquire();
      const tokens: number[] = [];
      let text = "";
      let finishReason: FinishReason = "abort";
      const timings = { queuedMs: performance.now() - queuedAt, promptMs: 0, firstTokenMs: 0, generateMs: 0 };
      let cached = 0;
      const decoder = new StreamingDecoder(model.tokenizer);
      const stops = new StopMatcher(stop);
      let stoppedByString = false;
      try {
        // Cancelled while waiting in the queue: leave without evaluating anything.
        if (signal?.aborted) return;
        const promptStart = performance.now();
        const evaluated = await model.evaluatePrompt(promptIds, signal);
        if (!evaluated) return;
        const { logits, reused } = evaluated;
        cached = reused;
        timings.promptMs = performance.now() - promptStart;
        let current = logits;
        const history = [...promptIds];
        const generateStart = performance.now();
        for (;;) {
          if (signal?.aborted) break;
          if (maxTokens !== undefined && tokens.length >= maxTokens) {
            finishReason = "length";
            break;
          }
          const token = sampler.sample(current, history);
          if (!ignoreEos && model.tokenizer.isEndOfGeneration(token)) {
            finishReason = "stop";
            break;
          }
          tokens.push(token);
          history.push(token);
          if (tokens.length === 1) timings.firstTokenMs = performance.now() - queuedAt;
          const piece = stops.push(decoder.push(token));
          text += piece.text;
          if (piece.text) yield piece.text;
          if (piece.stopped) {
            finishReason = "stop";
            stoppedByString = true;
            break;
          }
          if (model.engine.kv.length >= model.contextSize) {
            finishReason = "length";
            break;
          }
          current = model.evaluate([token]);
          await nextTick();
        }
        if (!stoppedByString) {
          const tail = stops.push(decoder.flush()).text + stops.flush();
          text += tail;
          if (tail) yield tail;
        }
        timings.generateMs = performance.now() - generateStart;
      } finally {
        release();
        finish({ text, tokens, promptTokens: promptIds.length, cachedPromptTokens: cached, completionTokens: tokens.length, finishReason, timings, ...extra });
      }
    });
  }

  /** Brings the KV cache to `ids` minus the last token, evaluates the rest, returns the last logits. */
  /**
   * Evaluates the prompt after the prefix already in the KV cache, a batch at a time, yielding to
   * the event loop between batches (a server stays responsive); undefined if aborted meanwhile.
   */
  private async evaluatePrompt(ids: number[], signal: AbortSignal | undefined): Promise<{ logits: Float32Array; reused: number } | undefined> {
    let keep = Math.min(commonPrefix(this.evaluated, ids), ids.length - 1);
    if (!this.engine.kv.truncate(keep)) {
      keep = 0;
      this.engine.kv.truncate(0);
    }
    this.evaluated = this.evaluated.slice(0, keep);
    const batch = this.engine.options.batchSize;
    for (let start = keep; ; start += batch) {
      const logits = this.evaluate(ids.slice(start, Math.min(ids.length, start + batch)));
      if (start + batch >= ids.length) return { logits, reused: keep };
      await nextTick();
      if (signal?.aborted) return undefined;
    }
  }

  private evaluate(ids: number[]): Float32Array {
    let last: Float32Array | undefined;
    this.engine.forward(ids, { logits: "last", onLogits: (_, logits) => (last = Float32Array.from(logits)) });
    this.evaluated.push(...ids);
    return last!;
  }

  /**
   * Every position's logits for `ids`, evaluated from an empty context (for comparing engines).
   * `onRow` receives each row in order; the array is reused after the call returns.
   */
  async logits(ids: readonly number[], onRow: (position: number, logits: Float32Array) => void): Promise<void> {
    const release = await this.queue.acquire();
    try {
      this.engine.kv.truncate(0);
      this.evaluated = [];
      this.engine.forward(ids, { logits: "all", onLogits: onRow });
      this.evaluated = [...ids];
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const release = await this.queue.acquire();
    try {
      this.engine.close();
      await this.kernels.dispose();
    } finally {
      release();
    }
  }
}

/** Loads a SmallThinker GGUF for generation. */
export function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  return Model.load(path, options);
}

export type { GenerationResult, MemoryPlan, PolicyName };
export { formatPlan } from "../model/plan.js";
