#!/usr/bin/env node
import { GgufError } from "../gguf/errors.js";
import { UsageError } from "./args.js";
import { COMMANDS, HELP } from "./commands/index.js";

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return 0;
  }
  const command = name === undefined || name.startsWith("-") ? COMMANDS.run : COMMANDS[name];
  if (!command) throw new UsageError(`unknown command "${name}"\n\n${HELP}`);
  await command(name === undefined || name.startsWith("-") ? argv : rest);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(error.message);
      process.exitCode = 2;
    } else if (error instanceof GgufError || error instanceof RangeError) {
      console.error(`error: ${error.message}`);
      process.exitCode = 1;
    } else {
      console.error(error);
      process.exitCode = 1;
    }
  },
);
