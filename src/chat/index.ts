export { ChatTemplate, ChatTemplateError, type ChatMessage, type ChatRenderOptions } from "./template.js";
