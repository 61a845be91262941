import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A Hugging Face hub on loopback, answering what a model download asks of it: the model-info API
 * (the commit), the tree listing (paths, sizes, LFS SHA-256s), resolve/<rev>/<file> with a
 * redirect to storage on another port (another origin, as the real CDN is), and storage serving
 * bytes with Range. Headers as the hub sends them: X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag.
 */

export interface FakeFile {
  path: string;
  content: Uint8Array;
}

export interface FakeRepo {
  name: string;
  files: FakeFile[];
  /** Answers only requests with this bearer token. */
  token?: string;
}

export interface RecordedRequest {
  port: "hub" | "storage";
  method: string;
  path: string;
  range: string | undefined;
  authorization: string | undefined;
}

/** Misbehaviour, changed by tests between requests. */
export interface StorageFaults {
  /** Close the connection after this many bytes of a response, for the next `cutTimes` responses. */
  cutAfter?: number;
  cutTimes?: number;
  /** Serve these files with one byte changed. */
  corrupt?: Set<string>;
  /** Answer Range requests with the whole file (200), as some servers do. */
  ignoreRange?: boolean;
}

export interface FakeHub {
  url: string;
  commit: string;
  requests: RecordedRequest[];
  faults: StorageFaults;
  sha256(path: string): string;
  close(): Promise<void>;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const gitOid = (bytes: Uint8Array) => createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");

export async function startFakeHub(repos: FakeRepo[]): Promise<FakeHub> {
  const commit = createHash("sha1").update("fake commit").digest("hex");
  const requests: RecordedRequest[] = [];
  const faults: StorageFaults = {};
  const blobs = new Map<string, { file: FakeFile; repo: FakeRepo }>();
  for (const repo of repos) for (const file of repo.files) blobs.set(sha256(file.content), { file, repo });
  let storageUrl = "";

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  const findRepo = (req: IncomingMessage, res: ServerResponse, name: string): FakeRepo | undefined => {
    const repo = repos.find((r) => r.name === name);
    const allowed = repo && (!repo.token || req.headers.authorization === `Bearer ${repo.token}`);
    if (!allowed) {
      // the hub answers 401 for both unknown and private repositories, so as not to reveal which exist
      json(res, 401, { error: "Invalid username or password." });
      return undefined;
    }
    return repo;
  };
  const revisionOk = (revision: string) => [commit, "main", "HEAD"].includes(decodeURIComponent(revision));

  const hub = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, "http://hub");
    let match: RegExpExecArray | null;
    if ((match = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname))) {
      const repo = findRepo(req, res, match[1]!);
      if (!repo) return;
      if (!revisionOk(match[2]!)) return json(res, 404, { error: "Invalid rev id" });
      return json(res, 200, { _id: "0123456789abcdef", id: repo.name, sha: commit, private: !!repo.token, gated: false, downloads: 0, likes: 0, lastModified: "2026-01-01T00:00:00.000Z" });
    }
    if ((match = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname))) {
      const repo = findRepo(req, res, match[1]!);
      if (!repo) return;
      if (!revisionOk(match[2]!)) return json(res, 404, { error: "Invalid rev id" });
      return json(
        res,
        200,
        repo.files.map((f) => ({ type: "file", oid: gitOid(f.content), size: f.content.length, path: f.path, lfs: { oid: sha256(f.content), size: f.content.length, pointerSize: 134 } })),
      );
    }
    if ((match = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname))) {
      const repo = findRepo(req, res, match[1]!);
      if (!repo) return;
      const path = decodeURIComponent(match[3]!);
      const file = repo.files.find((f) => f.path === path);
      if (!revisionOk(match[2]!) || !file) {
        res.writeHead(404, { "x-error-code": "EntryNotFound" }).end();
        return;
      }
      const sha = sha256(file.content);
      res.writeHead(302, {
        location: `${storageUrl}/blobs/${sha}?signature=fake`,
        "x-repo-commit": commit,
        "x-linked-etag": `"${sha}"`,
        "x-linked-size": String(file.content.length),
        etag: `"${gitOid(file.content)}"`,
      });
      res.end();
      return;
    }
    json(res, 404, { error: "not found" });
  };

  const storage = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, "http://storage");
    const blob = blobs.get(url.pathname.replace(/^\/blobs\//, ""));
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    let content = blob.file.content;
    if (faults.corrupt?.has(blob.file.path)) {
      content = content.slice();
      content[content.length >> 1] ^= 0x40;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = range && !faults.ignoreRange ? Number(range[1]) : 0;
    if (start >= content.length && content.length > 0) {
      res.writeHead(416, { "content-range": `bytes */${content.length}` }).end();
      return;
    }
    const body = content.subarray(start);
    const headers = { "accept-ranges": "bytes", etag: `"${sha256(blob.file.content)}"`, "content-length": String(body.length), "content-type": "application/octet-stream" };
    if (start > 0) res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${content.length - 1}/${content.length}` });
    else res.writeHead(200, headers);
    if (faults.cutAfter !== undefined && (faults.cutTimes ?? 1) > 0) {
      faults.cutTimes = (faults.cutTimes ?? 1) - 1;
      // part of the body, then the connection drops, as a flaky network does (after a pause: a
      // socket closed at once may reach the client before the bytes sent ahead of it are read)
      res.write(body.subarray(0, faults.cutAfter), () => setTimeout(() => res.destroy(), 100));
      return;
    }
    res.end(body);
  };

  const listen = (handler: (req: IncomingMessage, res: ServerResponse) => void, port: RecordedRequest["port"]) =>
    new Promise<Server>((resolve) => {
      const server = createServer((req, res) => {
        requests.push({ port, method: req.method!, path: req.url!, range: req.headers.range, authorization: req.headers.authorization });
        handler(req, res);
      });
      server.listen(0, "127.0.0.1", () => resolve(server));
    });
  const hubServer = await listen(hub, "hub");
  const storageServer = await listen(storage, "storage");
  storageUrl = `http://127.0.0.1:${(storageServer.address() as AddressInfo).port}`;
  return {
    url: `http://127.0.0.1:${(hubServer.address() as AddressInfo).port}`,
    commit,
    requests,
    faults,
    sha256: (path) => sha256(repos.flatMap((r) => r.files).find((f) => f.path === path)!.content),
    close: async () => {
      for (const server of [hubServer, storageServer]) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}
