import { Template } from "@huggingface/jinja";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  /** Who wrote it (OpenAI's `name`), for templates that show it. */
  name?: string;
  /** An assistant turn's reasoning kept apart from its content (`reasoning_content`, for templates that render it, such as Qwen3's). */
  reasoningContent?: string;
}

export interface ChatRenderOptions {
  /** End with the header that opens the assistant's reply (default true); false to continue the last message. */
  addGenerationPrompt?: boolean;
  /** Tool (function) schemas, for templates that describe tools to the model. */
  tools?: unknown[];
  /** More template variables (what llama-server calls chat_template_kwargs), e.g. `{ enable_thinking: false }` for Qwen3's. */
  variables?: Record<string, unknown>;
}

/** Variables the renderer sets itself, which `variables` may not replace. */
export const RESERVED_TEMPLATE_VARIABLES: ReadonlySet<string> = new Set(["messages", "tools", "add_generation_prompt", "bos_token", "eos_token"]);

const ROLES: ReadonlySet<string> = new Set<ChatMessage["role"]>(["system", "user", "assistant", "tool"]);

/** The template used when a model ships none: ChatML, the format the Qwen-style vocabulary's <|im_start|> and <|im_end|> tokens exist for. */
const CHATML_SOURCE =
  "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** A chat template that could not be parsed or rendered; `cause` holds the Jinja engine's own error. */
export class ChatTemplateError extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = "ChatTemplateError";
  }
}

/**
 * Turns a conversation into the prompt text a model was trained on, by rendering the model's Jinja
 * chat template (GGUF `tokenizer.chat_template`) with the variables Hugging Face transformers passes.
 */
export class ChatTemplate {
  private readonly template: Template;
  /** The Jinja source, which also holds every literal the template can output. */
  readonly source: string;
  readonly specialTokens: Readonly<{ bos: string; eos: string }>;

  private constructor(source: string, template: Template, specialTokens: { bos: string; eos: string }) {
    this.source = source;
    this.template = template;
    this.specialTokens = specialTokens;
  }

  /** Parses the template now, so a broken one fails at load time rather than at the first prompt. */
  static fromGguf(source: string | undefined, specialTokens: { bos: string; eos: string }): ChatTemplate {
    if (source === undefined) return new ChatTemplate(CHATML_SOURCE, new Template(CHATML_SOURCE), specialTokens);
    if (source.trim() === "") {
      throw new ChatTemplateError("the model's chat template (tokenizer.chat_template) is empty", undefined);
    }
    return new ChatTemplate(source, parse(source), specialTokens);
  }

  /**
   * The prompt text. Special-token text in it may come from the messages as well as from the
   * template's markup: to tokenize a prompt built from untrusted text, use `renderChatPrompt`.
   */
  render(messages: ChatMessage[], options: ChatRenderOptions = {}): string {
    messages.forEach(checkMessage);
    const variables = options.variables ?? {};
    for (const name of Object.keys(variables)) {
      if (RESERVED_TEMPLATE_VARIABLES.has(name)) throw new TypeError(`the template variable ${name} is set by the renderer and cannot be replaced`);
    }
    try {
      return this.template.render({
        ...variables,
        messages: messages.map(templateView),
        bos_token: this.specialTokens.bos,
        eos_token: this.specialTokens.eos,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        // transformers passes None rather than leaving it undefined, and templates test for that
        tools: options.tools ?? null,
      });
    } catch (error) {
      throw new ChatTemplateError(`the model's chat template failed to render: ${messageOf(error)}`, error);
    }
  }
}

/** A message as templates know it: OpenAI's field names, and only the fields that are there (templates test `is defined`). */
function templateView(message: ChatMessage): Record<string, string> {
  const view: Record<string, string> = { role: message.role, content: message.content };
  if (message.name !== undefined) view.name = message.name;
  if (message.reasoningContent !== undefined) view.reasoning_content = message.reasoningContent;
  return view;
}

function parse(source: string): Template {
  try {
    return new Template(source);
  } catch (error) {
    // the Jinja parser reports no positions; a TypeError is it reading past the last token
    const hint = error instanceof TypeError ? " (it ends inside an unclosed block, such as {% if %} or {% for %})" : "";
    throw new ChatTemplateError(`the model's chat template could not be parsed${hint}: ${messageOf(error)}`, error);
  }
}

function checkMessage(message: ChatMessage, index: number): void {
  if (!ROLES.has(message?.role)) {
    throw new TypeError(`messages[${index}].role must be one of ${[...ROLES].join(", ")}; got ${JSON.stringify(message?.role)}`);
  }
  for (const field of ["content", "name", "reasoningContent"] as const) {
    const value = message[field];
    if (typeof value !== "string" && (field === "content" || value !== undefined)) {
      throw new TypeError(`messages[${index}].${field} must be a string; got ${typeof value}`);
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
