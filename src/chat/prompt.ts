import type { TextSegment } from "../tokenizer/index.js";
import { joinSegments, pickPrivateCharacters, Sentinels, SpecialTextEscaper } from "./private-use.js";
import { ChatMessage, ChatRenderOptions, ChatTemplate, ChatTemplateError } from "./template.js";

/**
 * Text is text: a chat prompt's special tokens come from the chat template's own markup only, never
 * from what the messages say. Rendering the template and tokenizing the result with special tokens
 * parsed (what llama-server, Ollama and transformers do) lets a message that contains
 * "<|im_end|>\n<|im_start|>system\n…" forge a system turn. Here every string the caller supplies
 * (message content, names, reasoning, tool schemas, template variables) reaches the tokenizer as
 * plain text, while the text between special tokens is still tokenized as one piece, exactly as
 * llama.cpp tokenizes the rendered string: for a conversation without special-token text the ids
 * are the same as before, byte for byte.
 *
 * A template is a program that may transform what it is given (strip it, split reasoning off at
 * "</think>", test how it starts), so which characters of its output came from a message cannot be
 * known in general. Two ways of finding out are tried, each checked against the real rendering:
 *
 * 1. Sentinels: every message string is replaced by a private-use stand-in, and the stand-ins in the
 *    output are replaced back by their strings as plain-text segments. If that gives exactly the
 *    real rendering, the template used the strings as they are and the segmentation is exact.
 * 2. Escapes: when the template transformed the strings (so the stand-ins changed, vanished or were
 *    inspected), the first character of every special-token text inside each string is replaced by
 *    a private-use stand-in instead. String methods see the same text with the same lengths, so
 *    strip, trim or slicing give the same result; the stand-ins make those occurrences unmatchable,
 *    and are turned back into their characters as plain text. This is accepted only if it yields the
 *    same special tokens as the sentinel rendering (a template that builds special-token text out of
 *    message text, say by lower-casing it, is caught here; what this could not catch is a template
 *    that, depending on message text, both leaves out a token of its own markup and builds the same
 *    token out of that text), and is exact if it reproduces the real rendering.
 *
 * An assistant message whose content holds "<think>…</think>" is also tried with that reasoning
 * passed apart, as `reasoning_content`: templates that split it off themselves (Qwen3's) then render
 * their own <think> markup around it, exactly as they would have.
 *
 * When neither reproduces the real rendering, a safe one is used: the escaped rendering if its
 * special tokens are the sentinel rendering's (the template then saw special-token text in a
 * message as text: given "<think>" reasoning it cannot split off, Qwen3's would keep it in an earlier
 * turn), else the sentinel rendering with the strings put back where their stand-ins were (the
 * template's changes to them, such as stripping, are lost), if no stand-in was cut. If neither, the
 * conversation is refused: the template cut message text and built special tokens out of it.
 */

/** What the prompt builder needs from the vocabulary. */
export interface SpecialTokenMatcher {
  /** The text of every token matched as a whole before BPE. */
  readonly specialTokenTexts: readonly string[];
  /** The special tokens found in `text` when parsing them all, in order. */
  specialTokensIn(text: string): number[];
}

export type PromptProtection = "sentinels" | "escapes";

export interface ChatPrompt {
  /** The template's rendering of the conversation as given. */
  text: string;
  /** What to tokenize: the template's markup, where special tokens are parsed, and message text, where they are not. */
  segments: TextSegment[];
  /** Which of the two ways (above) found the message text. */
  protection: PromptProtection;
  /** Whether the segments, joined, are exactly `text` (false: the template looked for special-token text inside a message, and did not find it). */
  faithful: boolean;
}

/** Private-use characters needed besides the escaper's: the sentinels' two brackets. */
const SENTINEL_CHARACTERS = 2;

export function renderChatPrompt(template: ChatTemplate, messages: ChatMessage[], options: ChatRenderOptions, vocabulary: SpecialTokenMatcher): ChatPrompt {
  const text = template.render(messages, options);
  const specialTexts = vocabulary.specialTokenTexts;
  // what the caller supplies may hold any character: at worst one of ours in it then reads as the
  // character it stands for, or as a message, which is plain text either way
  const [open, close, ...standIns] = pickPrivateCharacters(
    SENTINEL_CHARACTERS + SpecialTextEscaper.firstCharacters(specialTexts).length,
    [template.source, template.specialTokens.bos, template.specialTokens.eos, ...specialTexts],
    [...messages.flatMap(messageStrings), ...stringsIn(options.tools), ...stringsIn(options.variables)],
  );
  const escaper = new SpecialTextEscaper(specialTexts, standIns);
  // tool schemas and variables are often serialized (tojson), which a sentinel would not survive: they are always escaped
  const escapedOptions: ChatRenderOptions = {
    ...options,
    tools: options.tools && (escaper.escapeDeep(options.tools) as unknown[]),
    variables: options.variables && (escaper.escapeDeep(options.variables) as Record<string, unknown>),
  };
  const markup = (rendered: string) => escaper.segments(rendered);

  const variants = [messages];
  const split = splitInlineReasoning(messages);
  if (split) variants.push(split);

  // a template may refuse a stand-in it would accept the real text from (raise_exception): that way is then not taken
  const sentinelRenders = variants.map((variant) =>
    attempt(() => {
      const sentinels = new Sentinels(open!, close!);
      const rendered = template.render(variant.map((message) => mapStrings(message, (string) => sentinels.standIn(string))), escapedOptions);
      return { rendered, ...sentinels.segments(rendered, markup) };
    }),
  );
  const exact = sentinelRenders.find((render) => render && joinSegments(render.segments) === text);
  if (exact) return { text, segments: exact.segments, protection: "sentinels", faithful: true };

  const escapedRenders = variants.map((variant, index) =>
    attempt(() => {
      const rendered = template.render(variant.map((message) => mapStrings(message, (string) => escaper.escape(string))), escapedOptions);
      const sentinelRender = sentinelRenders[index];
      // the template's own special tokens are the ones it rendered around stand-ins, which hold none
      const safe = sentinelRender !== undefined && sameTokens(vocabulary.specialTokensIn(rendered), vocabulary.specialTokensIn(sentinelRender.rendered));
      return { rendered, safe, exact: safe && escaper.unescape(rendered) === text };
    }),
  );
  const exactEscapes = escapedRenders.find((render) => render?.exact);
  if (exactEscapes) return { text, segments: escaper.segments(exactEscapes.rendered), protection: "escapes", faithful: true };

  // Nothing reproduces the real rendering: the conversation as given (not with reasoning moved),
  // rendered safely, escaped if the template made no special token of message text, else with the
  // messages put where it put their stand-ins.
  const [escaped] = escapedRenders;
  if (escaped?.safe) return { text, segments: escaper.segments(escaped.rendered), protection: "escapes", faithful: false };
  const [sentinel] = sentinelRenders;
  if (sentinel?.intact) return { text, segments: sentinel.segments, protection: "sentinels", faithful: false };
  throw new ChatTemplateError("the model's chat template makes special tokens out of message text, so the messages cannot be kept apart from its markup", undefined);
}

function attempt<T>(render: () => T): T | undefined {
  try {
    return render();
  } catch (error) {
    if (error instanceof ChatTemplateError) return undefined;
    throw error;
  }
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, index) => id === b[index]);
}

function mapStrings(message: ChatMessage, map: (text: string) => string): ChatMessage {
  const mapped: ChatMessage = { ...message, content: map(message.content) };
  if (message.name !== undefined) mapped.name = map(message.name);
  if (message.reasoningContent !== undefined) mapped.reasoningContent = map(message.reasoningContent);
  return mapped;
}

function messageStrings(message: ChatMessage): string[] {
  return [message.content, message.name ?? "", message.reasoningContent ?? ""];
}

function stringsIn(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (typeof value === "object" && value !== null) return Object.entries(value).flatMap(([key, item]) => [key, ...stringsIn(item)]);
  return [];
}

/**
 * Assistant messages with "<think>…</think>" in their content, the reasoning moved to
 * reasoningContent as Qwen3's template would split it (content after the last "</think>", newlines
 * stripped; reasoning between the last "<think>" and the first "</think>"); undefined if none has.
 */
export function splitInlineReasoning(messages: readonly ChatMessage[]): ChatMessage[] | undefined {
  const splittable = (message: ChatMessage) => message.role === "assistant" && message.reasoningContent === undefined && message.content.includes("</think>");
  if (!messages.some(splittable)) return undefined;
  return messages.map((message) => {
    if (!splittable(message)) return message;
    const parts = message.content.split("</think>");
    const reasoning = parts[0]!.replace(/\n+$/, "").split("<think>").at(-1)!.replace(/^\n+/, "");
    return { ...message, content: parts.at(-1)!.replace(/^\n+/, ""), reasoningContent: reasoning };
  });
}
