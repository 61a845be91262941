import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BenchJob, EngineMeasurement } from "./measure.js";

export type ChildOutcome = { measurement: EngineMeasurement } | { failure: string; killed: boolean };

/**
 * Runs one benchmark job in a fresh process (so its peak memory is its own). `wrapper` is a shell
 * command run before the benchmark process replaces it (e.g. joining a cgroup); the child is then
 * started as `sh -c "<wrapper> && exec node child.js JOB"`.
 */
export function runBenchChild(job: BenchJob, wrapper?: string): Promise<ChildOutcome> {
  const script = fileURLToPath(new URL("./child.js", import.meta.url));
  const args = [script, JSON.stringify(job)];
  const child = wrapper
    ? spawn("sh", ["-c", `${wrapper} && exec "$0" "$@"`, process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" } })
    : spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" } });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  child.stderr.on("data", (chunk) => (err += chunk));
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) resolve({ measurement: JSON.parse(line) as EngineMeasurement });
      else resolve({ failure: signal ? `killed (${signal})` : `exit ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`, killed: signal !== null });
    });
  });
}
