import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { loadModel, Model } from "../src/engine/model.js";
import { startServer, RunningServer, type ServerOptions } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";

/** Access control: the API key, CORS for browsers, and the Host check against DNS rebinding. */

const MODEL_ID = "tiny-test";
const KEY = "sk-local-4f1c9e";

let model: Model;
const servers: RunningServer[] = [];

before(async () => {
  model = await loadModel(testModel({ preset: "tiny", shape: { tiedOutput: false } }), { contextSize: 256 });
});

after(async () => {
  for (const server of servers) await server.close();
  await model.close();
});

async function serve(options: Partial<ServerOptions> = {}): Promise<RunningServer> {
  const server = await startServer({ model, modelId: MODEL_ID, port: 0, ...options });
  servers.push(server);
  return server;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** A raw request, so that Host and Origin are exactly what the test says. */
function send(server: RunningServer, { method = "GET", path = "/v1/models", headers = {}, body }: { method?: string; path?: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: "127.0.0.1", port: server.port, method, path, headers, agent: false, setHost: !("host" in headers) }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, headers: response.headers, text }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

function errorOf(answer: Answer): { message: string; type: string; param: string | null; code: string | null } {
  const parsed = JSON.parse(answer.text) as { error: { message: string; type: string; param: string | null; code: string | null } };
  assert.deepEqual(Object.keys(parsed.error).sort(), ["code", "message", "param", "type"]);
  return parsed.error;
}

const CHAT_BODY = JSON.stringify({ model: MODEL_ID, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });

test("with an API key, every route but /health needs Authorization: Bearer KEY, else a 401 in OpenAI's shape", async () => {
  const server = await serve({ apiKey: KEY });
  const missing = await send(server, {});
  assert.equal(missing.status, 401);
  assert.equal(missing.headers["www-authenticate"], "Bearer");
  assert.match(errorOf(missing).message, /didn't provide an API key/);
  for (const header of [`Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`, "Bearer x", `Bearer ${"k".repeat(5000)}`, `Basic ${KEY}`, KEY, `Bearer`]) {
    const wrong = await send(server, { headers: { authorization: header } });
    assert.equal(wrong.status, 401, header.slice(0, 40));
    assert.ok(!wrong.text.includes(KEY), "the key is never echoed");
  }
  assert.equal(errorOf(await send(server, { headers: { authorization: "Bearer nope" } })).code, "invalid_api_key");
  for (const [method, path] of [["POST", "/v1/chat/completions"], ["POST", "/v1/completions"], ["GET", "/v1/models/tiny-test"], ["GET", "/nowhere"], ["DELETE", "/v1/models"]]) {
    assert.equal((await send(server, { method: method!, path: path!, headers: { "content-type": "application/json" }, body: method === "POST" ? CHAT_BODY : undefined })).status, 401, `${method} ${path}`);
  }
  assert.equal((await send(server, { path: "/health" })).status, 200, "/health is open, for load balancers");
  assert.equal((await send(server, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  assert.equal((await send(server, { headers: { authorization: `bearer  ${KEY} ` } })).status, 200, "the scheme is case-insensitive");
});

test("the official openai client works with the key, and reports a wrong one as an AuthenticationError", async () => {
  const server = await serve({ apiKey: KEY });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
  assert.deepEqual((await client.models.list()).data.map((entry) => entry.id), [MODEL_ID]);
  const reply = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });
  assert.equal(reply.choices.length, 1);
  let streamed = "";
  for await (const chunk of await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: "user", content: "Hi" }], max_tokens: 3, stream: true })) {
    streamed += chunk.choices[0]?.delta.content ?? "";
  }
  assert.ok(streamed.length > 0);
  const intruder = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-guess", maxRetries: 0 });
  await assert.rejects(intruder.models.list(), (error: unknown) => error instanceof OpenAI.AuthenticationError && error.code === "invalid_api_key");
});

test("CORS: a preflight from an allowed origin gets 204 with the allowed methods, headers and max age; others get 403", async () => {
  const origin = "http://app.example:3000";
  const server = await serve({ corsOrigins: [origin, "https://other.example"], apiKey: KEY });
  const preflight = (from: string) =>
    send(server, {
      method: "OPTIONS",
      path: "/v1/chat/completions",
      headers: { origin: from, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, x-stainless-os" },
    });
  const allowed = await preflight(origin);
  assert.equal(allowed.status, 204);
  assert.equal(allowed.headers["access-control-allow-origin"], origin);
  assert.match(String(allowed.headers["access-control-allow-methods"]), /\bPOST\b/);
  assert.match(String(allowed.headers["access-control-allow-methods"]), /\bGET\b/);
  assert.equal(allowed.headers["access-control-allow-headers"], "authorization, content-type, x-stainless-os");
  assert.equal(allowed.headers["access-control-max-age"], "600");
  assert.match(String(allowed.headers.vary), /Origin/);
  assert.equal(allowed.text, "");

  const refused = await preflight("http://attacker.example");
  assert.equal(refused.status, 403);
  assert.equal(refused.headers["access-control-allow-origin"], undefined);
  assert.equal(errorOf(refused).code, "origin_not_allowed");

  // the request itself: the origin is allowed to read the answer, the other is not told it may
  const call = await send(server, { method: "POST", path: "/v1/chat/completions", headers: { origin, "content-type": "application/json", authorization: `Bearer ${KEY}` }, body: CHAT_BODY });
  assert.equal(call.status, 200);
  assert.equal(call.headers["access-control-allow-origin"], origin);
  assert.match(String(call.headers.vary), /Origin/);
  const unauthorized = await send(server, { headers: { origin } });
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.headers["access-control-allow-origin"], origin, "a browser app can read why it was refused");
  const foreign = await send(server, { headers: { origin: "http://attacker.example", authorization: `Bearer ${KEY}` } });
  assert.equal(foreign.headers["access-control-allow-origin"], undefined);
});

test("CORS is off by default, and * allows any origin", async () => {
  const closed = await serve();
  const preflight = { method: "OPTIONS", path: "/v1/chat/completions", headers: { origin: "http://app.example", "access-control-request-method": "POST" } };
  const refused = await send(closed, preflight);
  assert.equal(refused.status, 405);
  assert.equal(refused.headers["access-control-allow-origin"], undefined);
  assert.equal((await send(closed, { headers: { origin: "http://app.example" } })).headers["access-control-allow-origin"], undefined);

  const open = await serve({ corsOrigins: ["*"] });
  const allowed = await send(open, preflight);
  assert.equal(allowed.status, 204);
  assert.equal(allowed.headers["access-control-allow-origin"], "*");
  assert.equal(allowed.headers["access-control-allow-headers"], "authorization, content-type", "when the preflight names none");
  assert.equal((await send(open, { headers: { origin: "http://anything.example" } })).headers["access-control-allow-origin"], "*");

  await assert.rejects(serve({ corsOrigins: ["app.example"] }), /is not an origin/);
  await assert.rejects(serve({ corsOrigins: ["http://app.example/path"] }), /without a path/);
});

test("on a loopback address, a request addressed to another host is refused with 403 (DNS rebinding)", async () => {
  const server = await serve();
  for (const host of ["attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example", "attacker.example@127.0.0.1", "192.168.1.10", "[::2]", "localhost.attacker.example"]) {
    for (const path of ["/v1/models", "/health"]) {
      const refused = await send(server, { path, headers: { host } });
      assert.equal(refused.status, 403, `${host} ${path}`);
      assert.equal(errorOf(refused).code, "host_not_allowed");
    }
  }
  const post = await send(server, { method: "POST", path: "/v1/chat/completions", headers: { host: "attacker.example", "content-type": "application/json" }, body: CHAT_BODY });
  assert.equal(post.status, 403, "nothing is generated for it");
  for (const host of ["localhost", "LOCALHOST:8080", "127.0.0.1", `127.0.0.1:${server.port}`, "127.5.6.7:80", "[::1]", "[::1]:8080", "[0:0:0:0:0:0:0:1]"]) {
    assert.equal((await send(server, { headers: { host } })).status, 200, host);
  }
  // HTTP/1.0 lets a client leave Host out: refused too
  const withoutHost = await new Promise<string>((resolve, reject) => {
    const socket = connect(server.port, "127.0.0.1", () => socket.end("GET /v1/models HTTP/1.0\r\n\r\n"));
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
  });
  assert.match(withoutHost, /^HTTP\/1\.[01] 403 /);
});

test("--allowed-hosts adds names (or * any); a server on every interface checks Host only when given the list", async () => {
  const listed = await serve({ allowedHosts: ["my.box", "Inference.LAN"] });
  assert.equal((await send(listed, { headers: { host: "my.box:8080" } })).status, 200);
  assert.equal((await send(listed, { headers: { host: "inference.lan" } })).status, 200);
  assert.equal((await send(listed, { headers: { host: "localhost" } })).status, 200);
  assert.equal((await send(listed, { headers: { host: "attacker.example" } })).status, 403);
  const any = await serve({ allowedHosts: ["*"] });
  assert.equal((await send(any, { headers: { host: "attacker.example" } })).status, 200);

  const everywhere = await serve({ host: "0.0.0.0" });
  assert.equal((await send(everywhere, { headers: { host: "192.168.1.10:8080" } })).status, 200, "listening on every interface, it is meant to be reached by other names");
  const everywhereListed = await serve({ host: "0.0.0.0", allowedHosts: ["my.box"] });
  assert.equal((await send(everywhereListed, { headers: { host: "my.box" } })).status, 200);
  assert.equal((await send(everywhereListed, { headers: { host: "192.168.1.10" } })).status, 403);
});

test("smallthinker serve takes the key from SMALLTHINKER_API_KEY, and --cors, --allowed-hosts and --strict-model", async () => {
  const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const child = spawn(
    process.execPath,
    [cli, "serve", "-m", testModel({ preset: "tiny", shape: { tiedOutput: false } }), "--port", "0", "--alias", "cli-test", "--cors", "http://app.example", "--allowed-hosts", "my.box", "--strict-model", "-t", "1"],
    { env: { ...process.env, SMALLTHINKER_API_KEY: KEY }, stdio: ["ignore", "ignore", "pipe"] },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let stderr = "";
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (chunk: string) => {
        stderr += chunk;
        const match = /Serving "cli-test" at (http:\/\/\S+)\/v1 .*API key required/.exec(stderr);
        if (match) resolve(match[1]!);
      });
      child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    const get = (path: string, headers: Record<string, string> = {}) => fetch(`${url}${path}`, { headers });
    assert.equal((await get("/v1/models")).status, 401);
    assert.equal((await get("/v1/models", { authorization: `Bearer ${KEY}` })).status, 200);
    assert.equal((await get("/health")).status, 200);
    const preflight = await fetch(`${url}/v1/models`, { method: "OPTIONS", headers: { origin: "http://app.example", "access-control-request-method": "GET" } });
    assert.equal(preflight.status, 204);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0 });
    await assert.rejects(client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }), (error: unknown) => error instanceof OpenAI.NotFoundError);
    const reply = await client.chat.completions.create({ model: "cli-test", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
    assert.equal(reply.model, "cli-test");
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }
});

test("smallthinker serve names a malformed --cors or --allowed-hosts entry before loading the model", async () => {
  const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  for (const [flag, value, message] of [["--cors", "app.example", /"app.example" is not an origin/], ["--allowed-hosts", "my box", /"my box" is not a host name/]] as const) {
    const child = spawn(process.execPath, [cli, "serve", "-m", "/nonexistent/model.gguf", flag, value], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => (stderr += chunk));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.notEqual(code, 0);
    assert.match(stderr, message);
    assert.ok(!stderr.includes("nonexistent"), "the model was not opened");
  }
});
