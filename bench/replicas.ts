import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import { ServeProcess, startServe } from "./serve-process.js";

// Two `smallthinker serve` replicas behind nginx (run in the foreground on loopback with a config
// written to a temporary folder), under a load of streamed chats, while each replica in turn is
// sent SIGTERM (it drains: finishes its requests, refuses new connections, exits 0) and is started
// again (its /health says 503 while it loads). nginx retries a request on the other replica when
// one refuses the connection or answers 503 (proxy_next_upstream ... http_503 non_idempotent,
// which is safe here: a 503 comes before any generation). Every request must succeed.
//   node dist/bench/replicas.js [--model FILE] [--clients N] [--max-tokens T] [--restarts R]

const HELP = `node dist/bench/replicas.js [--model FILE] [--clients N] [--max-tokens T] [--restarts R]
  --model FILE     SmallThinker GGUF (default: the built-in demo model)
  --clients N      concurrent clients, each sending streamed chats one after another (default 4)
  --max-tokens T   tokens per request (default 24)
  --restarts R     rolling restarts (each replica once per round; default 1)
Needs nginx (Debian: apt-get install -y nginx); it is run as a foreground process, not the service.`;

const MODEL_ID = "bench";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function nginxConfig(dir: string, listen: number, replicas: number[]): string {
  return `# written by bench/replicas.ts
daemon off;
master_process on;
worker_processes 1;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  log_format upstreams '$status|$upstream_addr|$upstream_status|$request_time';
  access_log ${dir}/access.log upstreams;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream smallthinker {
${replicas.map((port) => `    server 127.0.0.1:${port} max_fails=1 fail_timeout=2s;`).join("\n")}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://smallthinker;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # the replicas listen on loopback and answer only loopback names (a DNS-rebinding defence)
      proxy_set_header Host localhost;
      # server-sent events pass as they are produced
      proxy_buffering off;
      proxy_read_timeout 300s;
      # a replica that refuses the connection (draining, or not started) or answers 503 (loading,
      # draining) has not started the generation: the request goes to the other one
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 4;
      proxy_next_upstream_timeout 60s;
    }
  }
}
`;
}

interface Outcome {
  ok: boolean;
  error?: string;
}

/** One streamed chat through nginx: a success only with every event up to [DONE] and the usage asked for. */
async function chat(client: OpenAI, maxTokens: number, seed: number): Promise<Outcome> {
  try {
    const stream = await client.chat.completions.create({
      model: MODEL_ID, messages: [{ role: "user", content: `Request ${seed}: tell me about rivers.` }], max_tokens: maxTokens, seed, ignore_eos: true,
      stream: true, stream_options: { include_usage: true },
    } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    let finish: string | null = null;
    let tokens = -1;
    for await (const chunk of stream) {
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
    if (finish !== "length" || tokens !== maxTokens) return { ok: false, error: `incomplete stream: finish ${finish}, ${tokens} tokens` };
    return { ok: true };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: "string" }, clients: { type: "string" }, "max-tokens": { type: "string" }, restarts: { type: "string" }, help: { type: "boolean", short: "h" } } });
  if (values.help) {
    console.log(HELP);
    return;
  }
  try {
    execFileSync("nginx", ["-v"], { stdio: "ignore" });
  } catch {
    throw new Error("nginx is not installed (Debian: apt-get update && apt-get install -y nginx)");
  }
  const clients = Number(values.clients ?? 4);
  const maxTokens = Number(values["max-tokens"] ?? 24);
  const restarts = Number(values.restarts ?? 1);
  const dir = mkdtempSync(join(tmpdir(), "smallthinker-replicas-"));
  const started = performance.now();
  const at = () => `${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s`;
  const events: string[] = [];
  const note = (line: string) => {
    events.push(`${at()}  ${line}`);
    console.log(`${at()}  ${line}`);
  };
  const ports = [await freePort(), await freePort()];
  const listen = await freePort();
  const args = (port: number) => ["--port", String(port), "--alias", MODEL_ID, ...(values.model ? ["-m", values.model] : [])];
  const replicas: ServeProcess[] = [];
  let nginx: ChildProcess | undefined;
  let stopLoad = false;
  try {
    for (const port of ports) replicas.push(await startServe(args(port)));
    note(`replicas ready on ports ${ports.join(" and ")} (${replicas[0]!.parallel} parallel sequences each)`);
    writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, listen, ports));
    nginx = spawn("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: ["ignore", "ignore", "pipe"] });
    const nginxExited = new Promise<number | null>((resolve) => nginx!.once("exit", resolve));
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${listen}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      if (nginx.exitCode !== null) throw new Error(`nginx exited: ${readFileSync(join(dir, "error.log"), "utf8")}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    note(`nginx on 127.0.0.1:${listen} in front of both`);

    const client = new OpenAI({ baseURL: `http://127.0.0.1:${listen}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
    const outcomes: Outcome[] = [];
    let seed = 0;
    const load = Promise.all(
      Array.from({ length: clients }, async () => {
        while (!stopLoad) outcomes.push(await chat(client, maxTokens, seed++));
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 3000));
    for (let round = 0; round < restarts; round++) {
      for (const [index, port] of ports.entries()) {
        const replica = replicas[index]!;
        note(`SIGTERM to replica ${index + 1} (port ${port})`);
        replica.child.kill("SIGTERM");
        const code = await replica.exited;
        const drained = replica.lines.find((line) => line.startsWith("Drained:"));
        note(`replica ${index + 1} exited with code ${code} (${drained ?? "no drain summary"})`);
        const restarted = startServe(args(port));
        note(`replica ${index + 1} starting again (503 from /health until it has loaded)`);
        replicas[index] = await restarted;
        note(`replica ${index + 1} ready again`);
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    }
    stopLoad = true;
    await load;
    nginx.kill("SIGQUIT");
    await nginxExited;
    nginx = undefined;

    const failed = outcomes.filter((o) => !o.ok);
    const log = readFileSync(join(dir, "access.log"), "utf8").trim().split("\n").filter(Boolean);
    // $upstream_status lists every attempt: "503, 200" is a 503 from one replica, then the other's 200
    const attempts = log.map((line) => line.split("|")[2]!.split(/,\s*/));
    const retried = attempts.filter((list) => list.length > 1);
    const upstreamStatuses = new Map<string, number>();
    for (const status of attempts.flat()) upstreamStatuses.set(status, (upstreamStatuses.get(status) ?? 0) + 1);
    console.log(`\n${outcomes.length} streamed chats of ${maxTokens} tokens by ${clients} clients through nginx, ${restarts} rolling restart${restarts === 1 ? "" : "s"} of 2 replicas: ${failed.length} failed`);
    if (failed.length) console.log(`failures: ${[...new Set(failed.map((f) => f.error))].slice(0, 5).join("; ")}`);
    console.log(`nginx passed ${retried.length} of ${log.length} requests on to the other replica; replicas' answers: ${[...upstreamStatuses].sort().map(([status, count]) => `${status} × ${count}`).join(", ")} (502: nginx's record of a refused connection)`);
    console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    if (failed.length > 0) process.exitCode = 1;
  } finally {
    stopLoad = true;
    nginx?.kill("SIGQUIT");
    for (const replica of replicas) replica.child.kill("SIGTERM");
    await Promise.all(replicas.map((replica) => replica.exited));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(`replicas test failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
