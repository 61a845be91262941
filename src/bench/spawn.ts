import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BandwidthJob, BenchJob, EngineMeasurement } from "./measure.js";

export type ChildOutcome<T = EngineMeasurement> = { measurement: T } | { failure: string; killed: boolean };

/**
 * Runs one benchmark job in a fresh process (so its peak memory is its own). `wrapper` is a shell
 * command run before the benchmark process replaces it (e.g. joining a cgroup); the child is then
 * started as `sh -c "<wrapper> && exec node child.js JOB"`.
 */
export function runBenchChild(job: BenchJob, wrapper?: string): Promise<ChildOutcome> {
  return runChild(job, wrapper);
}

/** The read-bandwidth probe in a process of its own (its buffer never counts in an engine's memory). */
export function runBandwidthChild(job: BandwidthJob): Promise<ChildOutcome<{ bytesPerSecond: number }>> {
  return runChild(job);
}

function runChild<T>(job: BenchJob | BandwidthJob, wrapper?: string): Promise<ChildOutcome<T>> {
  const script = fileURLToPath(new URL("./child.js", import.meta.url));
  const args = [script, JSON.stringify(job)];
  const env = { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" };
  const child = wrapper
    ? spawn("sh", ["-c", `${wrapper} && exec "$0" "$@"`, process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"], env })
    : spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  child.stderr.on("data", (chunk) => (err += chunk));
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) resolve({ measurement: JSON.parse(line) as T });
      else resolve({ failure: signal ? `killed (${signal})` : `exit ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`, killed: signal !== null });
    });
  });
}
