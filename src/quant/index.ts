export * from "./half.js";
export * from "./formats/index.js";
