import { ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** `smallthinker serve` as a child process, for the benchmarks. */

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** Every line it printed so far. */
  lines: string[];
  /** Sequences it generates at once. */
  parallel: number;
  exited: Promise<number | null>;
}

/** Starts `serve` with `args`; resolves once it says it is serving. */
export function startServe(args: string[], onLine?: (line: string) => void): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, "serve", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stderr! }).on("line", (line) => {
      lines.push(line);
      onLine?.(line);
      const ready = /^Serving ".*" at (http:\S+)\/v1 with (\d+) parallel/.exec(line);
      if (ready) resolve({ url: ready[1]!, child, lines, parallel: Number(ready[2]), exited });
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code} before it was ready:\n${lines.slice(-20).join("\n")}`)));
  });
}

/** SIGTERM, then waits for the exit; resolves with the exit code. */
export async function stopServe(serve: ServeProcess): Promise<number | null> {
  serve.child.kill("SIGTERM");
  return serve.exited;
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
