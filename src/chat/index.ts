export { ChatTemplate, ChatTemplateError, RESERVED_TEMPLATE_VARIABLES, type ChatMessage, type ChatRenderOptions } from "./template.js";
export { renderChatPrompt, splitInlineReasoning, type ChatPrompt, type PromptProtection, type SpecialTokenMatcher } from "./prompt.js";
