import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testModel } from "./helpers/models.js";

test("the README's library example runs and streams text", async () => {
  const script = fileURLToPath(new URL("../examples/library.js", import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [script, testModel({ preset: "demo" })], { timeout: 60_000 });
  const lines = stdout.split("\n");
  assert.ok(lines[0]!.length > 0, "the completion streamed some text");
  assert.match(stdout, /\[\d+ tokens, finish: (stop|length)\]\n$/);
});
