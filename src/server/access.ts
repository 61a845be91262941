import { createHash, timingSafeEqual } from "node:crypto";
import { IncomingMessage, ServerResponse } from "node:http";
import { BlockList, isIPv6 } from "node:net";
import { ApiError } from "./errors.js";
import { shorten } from "./fields.js";

/**
 * Who may use the server, checked before any route: the Host a request is addressed to (while the
 * server listens on a loopback address), the browser origin it comes from (CORS), and the API key.
 */
export interface AccessOptions {
  /** Require `Authorization: Bearer <apiKey>` on every route but /health. */
  apiKey?: string;
  /** Browser origins allowed to call the API ("https://app.example", or "*" for any); none by default. */
  corsOrigins?: readonly string[];
  /**
   * Host names (any port) requests may be addressed to, besides loopback names and the listening
   * host; "*" allows any. Given, the Host header is checked wherever the server listens; not given,
   * only while it listens on a loopback address.
   */
  allowedHosts?: readonly string[];
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** A Host header is a name or address and a port: anything else (user info, a path) is refused outright. */
const HOST_HEADER = /^(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::\d*)?$/;

/** The host name a Host header names, as a browser would have resolved it (lower case, IPv4 and IPv6 normalized); undefined if it is not one. */
function hostnameOf(header: string): string | undefined {
  if (!HOST_HEADER.test(header)) return undefined;
  try {
    return new URL(`http://${header}`).hostname;
  } catch {
    return undefined;
  }
}

/** localhost, 127.0.0.0/8, ::1 (an IPv4-mapped 127.x too), in any spelling a URL accepts. */
export function isLoopbackHost(host: string): boolean {
  const hostname = hostnameOf(isIPv6(host) ? `[${host}]` : host);
  if (hostname === undefined) return false;
  if (hostname === "localhost" || hostname === "localhost.") return true;
  const address = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  if (isIPv6(address)) return LOOPBACK.check(address, "ipv6");
  return /^\d+\.\d+\.\d+\.\d+$/.test(address) && LOOPBACK.check(address, "ipv4");
}

/** "*" or origins as browsers send them: scheme://host[:port], lower case, no path. */
function normalizeOrigin(origin: string): string {
  if (origin === "*") return origin;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new RangeError(`"${origin}" is not an origin (such as https://app.example or http://localhost:3000)`);
  }
  if (url.origin === "null" || url.origin !== origin.replace(/\/$/, "").toLowerCase()) {
    throw new RangeError(`"${origin}" is not an origin (scheme://host[:port], without a path), such as ${url.origin === "null" ? "https://app.example" : url.origin}`);
  }
  return url.origin;
}

const PREFLIGHT_MAX_AGE_SECONDS = 600;
const ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS";
/** What the openai client and browsers' fetch need when the preflight does not say. */
const DEFAULT_ALLOWED_HEADERS = "authorization, content-type";
const HEADER_LIST = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;

export class AccessControl {
  private readonly keyDigest: Buffer | undefined;
  private readonly origins: ReadonlySet<string> | undefined;
  /** undefined: any Host is answered. */
  private readonly hosts: ReadonlySet<string> | undefined;
  private readonly anyHost: boolean;

  /** Throws a RangeError naming a malformed origin or host. */
  constructor(options: AccessOptions, listeningHost: string) {
    if (options.apiKey !== undefined && options.apiKey === "") throw new RangeError("the API key is empty");
    this.keyDigest = options.apiKey === undefined ? undefined : digest(options.apiKey);
    this.origins = options.corsOrigins && new Set(options.corsOrigins.map(normalizeOrigin));
    const listed = options.allowedHosts?.map((host) => host.trim().toLowerCase()) ?? [];
    this.anyHost = listed.includes("*");
    const checked = options.allowedHosts !== undefined || isLoopbackHost(listeningHost);
    if (!checked || this.anyHost) {
      this.hosts = undefined;
    } else {
      const names = [...listed, listeningHost].map((host) => {
        const hostname = hostnameOf(isIPv6(host) ? `[${host}]` : host);
        if (hostname === undefined) throw new RangeError(`"${host}" is not a host name or address`);
        return hostname;
      });
      this.hosts = new Set(names);
    }
  }

  /**
   * Refuses (throws the ApiError) or lets the request through, setting the CORS headers it needs on
   * the response; true when it was a CORS preflight, which this answered.
   */
  admit(request: IncomingMessage, response: ServerResponse, path: string): boolean {
    this.checkHost(request.headers.host);
    if (this.corsPreflight(request, response)) return true;
    if (this.keyDigest && path !== "/health") this.checkKey(request.headers.authorization);
    return false;
  }

  /** DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1 sends Host: attacker.example. */
  private checkHost(header: string | undefined): void {
    if (!this.hosts) return;
    const hostname = header === undefined ? undefined : hostnameOf(header);
    if (hostname !== undefined && (this.hosts.has(hostname) || isLoopbackHost(hostname))) return;
    const named = header === undefined ? "A request without a Host header" : `The Host ${JSON.stringify(shorten(header))}`;
    const others = [...this.hosts].filter((host) => !isLoopbackHost(host));
    throw new ApiError(403, `${named} is not allowed: this server answers requests addressed to ${["localhost", "127.0.0.1", "[::1]", ...others].join(", ")} (any port). Start it with --allowed-hosts to add a name.`, {
      type: "invalid_request_error",
      code: "host_not_allowed",
    });
  }

  /** Sets Access-Control-Allow-Origin for an allowed origin; answers a preflight (true), or refuses one from another origin. */
  private corsPreflight(request: IncomingMessage, response: ServerResponse): boolean {
    if (!this.origins) return false;
    response.setHeader("vary", "Origin");
    const origin = request.headers.origin;
    const allowed = origin !== undefined && (this.origins.has("*") || this.origins.has(origin.toLowerCase()));
    if (allowed) response.setHeader("access-control-allow-origin", this.origins.has("*") ? "*" : origin);
    const isPreflight = request.method === "OPTIONS" && origin !== undefined && request.headers["access-control-request-method"] !== undefined;
    if (!isPreflight) return false;
    if (!allowed) {
      throw new ApiError(403, `The origin ${JSON.stringify(shorten(origin))} is not allowed to call this server (see --cors).`, { type: "invalid_request_error", code: "origin_not_allowed" });
    }
    const requested = request.headers["access-control-request-headers"];
    response.writeHead(204, {
      "access-control-allow-methods": ALLOWED_METHODS,
      // the openai client sends its own x-stainless-* headers: the ones asked for are allowed
      "access-control-allow-headers": requested !== undefined && HEADER_LIST.test(requested) ? requested : DEFAULT_ALLOWED_HEADERS,
      "access-control-max-age": String(PREFLIGHT_MAX_AGE_SECONDS),
      vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
      "content-length": "0",
    });
    response.end();
    return true;
  }

  private checkKey(header: string | undefined): void {
    const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) {
      throw unauthorized(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        null,
      );
    }
    // digests of equal length, compared in constant time: neither the key nor its length leaks through timing
    if (!timingSafeEqual(digest(match[1]!), this.keyDigest!)) throw unauthorized("Incorrect API key provided.", "invalid_api_key");
  }
}

/** Throws the RangeError startServer would, naming a malformed origin or host: for checking options before loading a model. */
export function checkAccessOptions(options: AccessOptions, listeningHost: string): void {
  new AccessControl(options, listeningHost);
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function unauthorized(message: string, code: string | null): ApiError {
  return new ApiError(401, message, { type: "invalid_request_error", code, headers: { "www-authenticate": "Bearer" } });
}
