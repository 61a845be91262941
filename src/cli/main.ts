#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { ChatTemplateError } from "../chat/index.js";
import { GgufError } from "../gguf/errors.js";
import { HubError } from "../hub/index.js";
import { CommandError, UsageError } from "./args.js";
import { COMMANDS, HELP } from "./commands/index.js";

function version(): string {
  const manifest = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  return manifest.version;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(version());
    return 0;
  }
  // no command, or options first: run, as llama.cpp's main program would
  const implicit = name === undefined || name.startsWith("-");
  const command = implicit ? COMMANDS.run : Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw new UsageError(`smallthinker: unknown command "${name}"\nRun "smallthinker --help" to see the commands.`);
  await command.run(implicit ? argv : rest);
  return 0;
}

/** Errors that are the input's or the environment's, not the program's: one line, no stack. */
function isExpected(error: unknown): error is Error {
  return error instanceof GgufError || error instanceof RangeError || error instanceof HubError || error instanceof ChatTemplateError || error instanceof CommandError;
}

// `smallthinker run | head` closes the pipe early: that ends the output, it is no error
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  process.exit(0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(error.message);
      process.exitCode = 2;
    } else if (isExpected(error)) {
      console.error(error instanceof CommandError ? error.message : `error: ${error.message}`);
      process.exitCode = 1;
    } else {
      console.error(error);
      process.exitCode = 1;
    }
  },
);
