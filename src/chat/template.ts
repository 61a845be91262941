import { Template } from "@huggingface/jinja";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
}

export interface ChatRenderOptions {
  /** End with the header that opens the assistant's reply (default true); false to continue the last message. */
  addGenerationPrompt?: boolean;
  /** Tool (function) schemas, for templates that describe tools to the model. */
  tools?: unknown[];
}

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
  private readonly specialTokens: { bos: string; eos: string };

  private constructor(template: Template, specialTokens: { bos: string; eos: string }) {
    this.template = template;
    this.specialTokens = specialTokens;
  }

  /** Parses the template now, so a broken one fails at load time rather than at the first prompt. */
  static fromGguf(source: string | undefined, specialTokens: { bos: string; eos: string }): ChatTemplate {
    if (source === undefined) return new ChatTemplate(new Template(CHATML_SOURCE), specialTokens);
    if (source.trim() === "") {
      throw new ChatTemplateError("the model's chat template (tokenizer.chat_template) is empty", undefined);
    }
    return new ChatTemplate(parse(source), specialTokens);
  }

  render(messages: ChatMessage[], options: ChatRenderOptions = {}): string {
    messages.forEach(checkMessage);
    try {
      return this.template.render({
        messages,
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
  if (typeof message.content !== "string") {
    throw new TypeError(`messages[${index}].content must be a string; got ${typeof message.content}`);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
