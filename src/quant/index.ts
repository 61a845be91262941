export * from "./half.js";
export * from "./blocks.js";
