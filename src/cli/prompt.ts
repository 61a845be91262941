import { readFileSync } from "node:fs";
import { text } from "node:stream/consumers";
import { UsageError } from "./args.js";

export const DEFAULT_PROMPT = "Once upon a time";

/**
 * The prompt of `run`: -p TEXT, -f FILE, "-" for either meaning standard input, or standard input
 * itself when it is piped and no prompt was given; the default prompt otherwise. A file's or pipe's
 * final newline is dropped (as llama.cpp does): it ends the file, not the prompt.
 */
export async function readPrompt(values: { prompt?: string; file?: string }, stdin: NodeJS.ReadStream = process.stdin): Promise<string> {
  if (values.prompt !== undefined && values.file !== undefined) throw new UsageError("smallthinker run: give -p or -f, not both");
  const source = values.file ?? (values.prompt === "-" ? "-" : undefined);
  if (values.prompt !== undefined && source === undefined) return values.prompt;
  if (source !== undefined) return withoutFinalNewline(source === "-" ? await text(stdin) : readFile(source));
  if (stdin.isTTY) return DEFAULT_PROMPT;
  let piped: string;
  try {
    piped = withoutFinalNewline(await text(stdin));
  } catch {
    // no readable standard input at all (closed): as good as an empty one
    piped = "";
  }
  return piped === "" ? DEFAULT_PROMPT : piped;
}

function readFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`-f ${path}: ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message}`);
  }
}

function withoutFinalNewline(text: string): string {
  return text.replace(/\r?\n$/, "");
}
