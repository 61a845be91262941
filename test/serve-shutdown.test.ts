import { test } from "node:test";
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { testModel } from "./helpers/models.js";

/** `smallthinker serve` as a process: ready through /health, and SIGTERM drains it to exit code 0. */

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

interface Serve {
  child: ChildProcess;
  url: string;
  lines: string[];
  exited: Promise<number | null>;
}

function startServe(args: string[]): Promise<Serve> {
  const child = spawn(process.execPath, [CLI, "serve", "-m", testModel({ preset: "demo" }), "--port", "0", "--alias", "demo", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stderr! }).on("line", (line) => {
      lines.push(line);
      const ready = /^Serving ".*" at (http:\S+)\/v1/.exec(line);
      if (ready) resolve({ child, url: ready[1]!, lines, exited });
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}:\n${lines.join("\n")}`)));
  });
}

/** Streams a chat and resolves with its events; `onEvent` is told of each as it arrives. */
async function streamChat(url: string, maxTokens: number, onEvent: (index: number) => void): Promise<string[]> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "demo", messages: [{ role: "user", content: "Go on." }], max_tokens: maxTokens, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  const events: string[] = [];
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      events.push(buffer.slice(0, end).replace(/^data: /, ""));
      buffer = buffer.slice(end + 2);
      onEvent(events.length - 1);
    }
  }
  return events;
}

test("on SIGTERM, serve finishes the stream in progress, refuses new connections and exits 0", async () => {
  const serve = await startServe(["--parallel", "1"]);
  try {
    assert.equal((await fetch(`${serve.url}/health`)).status, 200);
    let refusedDuringDrain: boolean | undefined;
    const events = await streamChat(serve.url, 120, (index) => {
      if (index === 2) {
        serve.child.kill("SIGTERM");
        // give the signal a moment to arrive, then try a new connection
        setTimeout(() => {
          void fetch(`${serve.url}/health`).then(
            (response) => (refusedDuringDrain = response.status === 503),
            () => (refusedDuringDrain = true),
          );
        }, 300);
      }
    });
    assert.equal(events[events.length - 1], "[DONE]");
    assert.equal(JSON.parse(events[events.length - 2]!).usage.completion_tokens, 120, "the stream was finished, not cut");
    assert.equal(await serve.exited, 0);
    assert.equal(refusedDuringDrain, true, "a new request during the drain was not served");
    assert.ok(serve.lines.some((line) => /^Drained: 1 request finished$/.test(line)), serve.lines.join("\n"));
  } finally {
    serve.child.kill("SIGKILL");
  }
});

test("a stream still running at the shutdown timeout ends with an error event and [DONE], and serve exits 0", async () => {
  const serve = await startServe(["--parallel", "1", "--shutdown-timeout", "0.5", "--max-tokens", "100000"]);
  try {
    const started = performance.now();
    let signalledAt = 0;
    const events = await streamChat(serve.url, 3000, (index) => {
      if (index === 2) {
        signalledAt = performance.now();
        serve.child.kill("SIGTERM");
      }
    });
    const cutAfter = performance.now() - signalledAt;
    assert.equal(events[events.length - 1], "[DONE]");
    assert.equal(JSON.parse(events[events.length - 2]!).error.code, "shutting_down");
    assert.ok(cutAfter >= 400 && cutAfter < 10_000, `cut ${cutAfter.toFixed(0)} ms after the signal (${(performance.now() - started).toFixed(0)} ms in all)`);
    assert.equal(await serve.exited, 0);
    assert.ok(serve.lines.some((line) => /1 generation cut at the timeout/.test(line)), serve.lines.join("\n"));
  } finally {
    serve.child.kill("SIGKILL");
  }
});
