import { Environment as JinjaEnvironment, Interpreter as JinjaInterpreter, Template } from "@huggingface/jinja";

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

/**
 * What one rendering may spend. A template comes from the model file, so it is untrusted code: a
 * loop over `range(100000000)` or a value doubled in a loop would otherwise exhaust the heap and
 * abort the process. An honest template renders a short conversation in about a millisecond and
 * a 2000-message one (a full 32K-token context) in about a second on a busy 2-core machine.
 */
export interface RenderLimits {
  /** Expressions and statements evaluated. */
  steps: number;
  /** Wall-clock milliseconds. */
  milliseconds: number;
  /** Characters of any one string (the output included) and items of any one list. */
  length: number;
  /** Nesting of evaluation (recursive macros). */
  depth: number;
  /** Items `range()` may produce (the bound Jinja's own sandbox uses). */
  rangeItems: number;
}

export const DEFAULT_RENDER_LIMITS: RenderLimits = { steps: 5_000_000, milliseconds: 5000, length: 8 << 20, depth: 500, rangeItems: 100_000 };

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

/** A rendering that went past one of its RenderLimits. */
class LimitExceeded extends Error {}

/*
 * @huggingface/jinja re-exports its Environment and Interpreter from a file its type declarations
 * name without an extension, which Node's module resolution cannot follow: the parts used here are
 * declared again.
 */
type Program = Template["parsed"];
interface RuntimeValue {
  value: unknown;
}
interface Environment {
  set(name: string, value: unknown): RuntimeValue;
}
interface Interpreter {
  run(program: Program): RuntimeValue;
  evaluate(statement: unknown, environment: Environment): RuntimeValue;
  evaluateArguments(args: unknown[], environment: Environment): [RuntimeValue[], Map<string, RuntimeValue>];
}
const Environment = JinjaEnvironment as unknown as new () => Environment;
const Interpreter = JinjaInterpreter as unknown as new (environment: Environment) => Interpreter;
type Statement = unknown;

/** The Jinja interpreter, counting every evaluation against the limits of one rendering. */
class BoundedInterpreter extends Interpreter {
  private steps = 0;
  private depth = 0;
  private readonly deadline: number;

  constructor(
    environment: Environment,
    private readonly limits: RenderLimits,
  ) {
    super(environment);
    this.deadline = performance.now() + limits.milliseconds;
  }

  override evaluate(statement: Statement, environment: Environment): RuntimeValue {
    const { limits } = this;
    if (++this.steps > limits.steps) throw new LimitExceeded(`it took more than ${limits.steps} evaluation steps`);
    // the clock is read at every step: one step can be long (a loop whose body is empty runs
    // all its iterations inside one), and reading it costs well under a microsecond
    if (performance.now() > this.deadline) throw new LimitExceeded(`it ran for more than ${limits.milliseconds} ms`);
    if (++this.depth > limits.depth) throw new LimitExceeded(`it nested deeper than ${limits.depth} levels (a runaway recursive macro?)`);
    try {
      const value = super.evaluate(statement, environment);
      const length = (value.value as { length?: unknown } | null)?.length;
      if (typeof length === "number" && length > limits.length && (typeof value.value === "string" || Array.isArray(value.value))) {
        throw new LimitExceeded(`it built a ${typeof value.value === "string" ? "string" : "list"} of more than ${limits.length} ${typeof value.value === "string" ? "characters" : "items"}`);
      }
      return value;
    } finally {
      this.depth--;
    }
  }

  /**
   * `tojson(indent=…)` and `indent(width=…)` pad every line inside one built-in call, where the step
   * and clock checks cannot reach: a huge indent would run for seconds before failing.
   */
  override evaluateArguments(args: unknown[], environment: Environment): [RuntimeValue[], Map<string, RuntimeValue>] {
    const evaluated = super.evaluateArguments(args, environment);
    for (const name of ["indent", "width"]) {
      const value = evaluated[1].get(name)?.value;
      if (typeof value === "number" && value > MAX_INDENT) throw new LimitExceeded(`an ${name} of ${value} exceeds the limit of ${MAX_INDENT}`);
    }
    return evaluated;
  }
}

/** The widest indent a template may ask of tojson or indent (templates use 2 or 4). */
const MAX_INDENT = 256;

/** Python's range(), refusing to build more than `limit` items. */
function boundedRange(limit: number) {
  return (start: unknown, stop?: unknown, step: unknown = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    for (const value of [start, stop, step]) {
      if (!Number.isInteger(value)) throw new Error(`range() takes whole numbers, got ${JSON.stringify(value)}`);
    }
    const [from, to, by] = [start as number, stop as number, step as number];
    if (by === 0) throw new Error("range() step must not be zero");
    const count = Math.max(0, Math.ceil((to - from) / by));
    if (count > limit) throw new LimitExceeded(`range() of ${count} items exceeds the limit of ${limit}`);
    return Array.from({ length: count }, (_, i) => from + i * by);
  };
}

/** The globals @huggingface/jinja's Template.render sets (its setupGlobals is not exported), with range() bounded. */
function globals(limits: RenderLimits): Record<string, unknown> {
  const pad = (n: number) => String(n).padStart(2, "0");
  return {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: boundedRange(limits.rangeItems),
    strftime_now: (format: unknown) => {
      const date = new Date();
      return String(format).replace(/%[YmdbBHM%]/g, (token) => {
        switch (token) {
          case "%Y": return String(date.getFullYear());
          case "%m": return pad(date.getMonth() + 1);
          case "%d": return pad(date.getDate());
          case "%b": return new Intl.DateTimeFormat("en", { month: "short" }).format(date);
          case "%B": return new Intl.DateTimeFormat("en", { month: "long" }).format(date);
          case "%H": return pad(date.getHours());
          case "%M": return pad(date.getMinutes());
          default: return "%";
        }
      });
    },
  };
}

/**
 * Turns a conversation into the prompt text a model was trained on, by rendering the model's Jinja
 * chat template (GGUF `tokenizer.chat_template`) with the variables Hugging Face transformers passes.
 */
export class ChatTemplate {
  private readonly program: Program;
  /** The Jinja source, which also holds every literal the template can output. */
  readonly source: string;
  readonly specialTokens: Readonly<{ bos: string; eos: string }>;
  private readonly limits: RenderLimits;

  private constructor(source: string, program: Program, specialTokens: { bos: string; eos: string }, limits: RenderLimits) {
    this.source = source;
    this.program = program;
    this.specialTokens = specialTokens;
    this.limits = limits;
  }

  /** Parses the template now, so a broken one fails here rather than at the first prompt. */
  static fromGguf(source: string | undefined, specialTokens: { bos: string; eos: string }, limits: Partial<RenderLimits> = {}): ChatTemplate {
    const bounds = { ...DEFAULT_RENDER_LIMITS, ...limits };
    if (source === undefined) return new ChatTemplate(CHATML_SOURCE, new Template(CHATML_SOURCE).parsed, specialTokens, bounds);
    if (source.trim() === "") {
      throw new ChatTemplateError("the model's chat template (tokenizer.chat_template) is empty", undefined);
    }
    return new ChatTemplate(source, parse(source), specialTokens, bounds);
  }

  /**
   * The prompt text. Special-token text in it may come from the messages as well as from the
   * template's markup: to tokenize a prompt built from untrusted text, use `renderChatPrompt`.
   */
  render(messages: ChatMessage[], options: ChatRenderOptions = {}): string {
    messages.forEach(checkMessage);
    const extra = options.variables ?? {};
    for (const name of Object.keys(extra)) {
      if (RESERVED_TEMPLATE_VARIABLES.has(name)) throw new TypeError(`the template variable ${name} is set by the renderer and cannot be replaced`);
    }
    const variables: Record<string, unknown> = {
      ...globals(this.limits),
      ...extra,
      messages: messages.map(templateView),
      bos_token: this.specialTokens.bos,
      eos_token: this.specialTokens.eos,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      // transformers passes None rather than leaving it undefined, and templates test for that
      tools: options.tools ?? null,
    };
    try {
      const environment = new Environment();
      for (const [name, value] of Object.entries(variables)) environment.set(name, value);
      const output = new BoundedInterpreter(environment, this.limits).run(this.program).value;
      if (typeof output !== "string") throw new Error(`it produced ${typeof output}, not text`);
      return output;
    } catch (error) {
      if (error instanceof LimitExceeded) throw new ChatTemplateError(`the model's chat template was stopped while rendering: ${error.message}`, error);
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

function parse(source: string): Program {
  try {
    return new Template(source).parsed;
  } catch (error) {
    // the Jinja parser reports no positions; a TypeError is it reading past the last token
    const hint = error instanceof TypeError ? " (it ends inside an unclosed block, such as {% if %} or {% for %})" : "";
    throw new ChatTemplateError(`the model's chat template (tokenizer.chat_template) could not be parsed${hint}: ${messageOf(error)}`, error);
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
