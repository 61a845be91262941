import { randomBytes } from "node:crypto";
import { GenerationResult } from "../engine/generation.js";

/** How a delivered generation ended (an aborted one is never delivered: its client has gone). */
export type DeliveredFinish = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export function usageOf(result: GenerationResult): Usage {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
    prompt_tokens_details: { cached_tokens: result.cachedPromptTokens },
  };
}

/** What the response and every chunk of one completion share. */
export interface Envelope {
  id: string;
  created: number;
  model: string;
}

/** How an endpoint shapes its answer: whole, or as a stream of chunks. */
export interface ResponseShape {
  newEnvelope(model: string): Envelope;
  whole(envelope: Envelope, text: string, finish: DeliveredFinish, usage: Usage): object;
  /** Chunks sent before the first text. */
  opening(envelope: Envelope): object[];
  piece(envelope: Envelope, text: string): object;
  closing(envelope: Envelope, finish: DeliveredFinish): object;
  /** The extra last chunk that `stream_options.include_usage` asks for. */
  usage(envelope: Envelope, usage: Usage): object;
}

function envelopeFactory(idPrefix: string): (model: string) => Envelope {
  return (model) => ({ id: idPrefix + randomBytes(15).toString("hex"), created: Math.floor(Date.now() / 1000), model });
}

function wrap({ id, created, model }: Envelope, object: string, rest: object): object {
  return { id, object, created, model, ...rest };
}

function chatChunk(envelope: Envelope, delta: object, finish: DeliveredFinish | null): object {
  return wrap(envelope, "chat.completion.chunk", { choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
}

export const CHAT_SHAPE: ResponseShape = {
  newEnvelope: envelopeFactory("chatcmpl-"),
  whole: (envelope, text, finish, usage) =>
    wrap(envelope, "chat.completion", {
      choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, logprobs: null, finish_reason: finish }],
      usage,
    }),
  opening: (envelope) => [chatChunk(envelope, { role: "assistant", content: "" }, null)],
  piece: (envelope, text) => chatChunk(envelope, { content: text }, null),
  closing: (envelope, finish) => chatChunk(envelope, {}, finish),
  usage: (envelope, usage) => wrap(envelope, "chat.completion.chunk", { choices: [], usage }),
};

function textChoice(text: string, finish: DeliveredFinish | null): object {
  return { text, index: 0, logprobs: null, finish_reason: finish };
}

export const COMPLETION_SHAPE: ResponseShape = {
  newEnvelope: envelopeFactory("cmpl-"),
  whole: (envelope, text, finish, usage) => wrap(envelope, "text_completion", { choices: [textChoice(text, finish)], usage }),
  opening: () => [],
  piece: (envelope, text) => wrap(envelope, "text_completion", { choices: [textChoice(text, null)] }),
  closing: (envelope, finish) => wrap(envelope, "text_completion", { choices: [textChoice("", finish)] }),
  usage: (envelope, usage) => wrap(envelope, "text_completion", { choices: [], usage }),
};
