import http from "node:http";
import https from "node:https";
import { MemberRejectedError, MemberUnavailableError } from "./member.js";

export interface HttpOptions {
  readonly timeoutMs?: number;
  readonly retries?: number;
  /** Sent as a bearer token. */
  readonly apiKey?: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = 2;
const BACKOFF_MS = 200;
/** Connections kept open to one server: a step's look-ups go out together (see the dialects). */
const MAX_SOCKETS = 8;

interface Exchange {
  readonly method: "GET" | "POST";
  readonly body?: string;
}

/**
 * Why one exchange failed. `unreachable` and `failing` (5xx, 429) may pass and are retried; a
 * `rejected` request (any other 4xx) or an unreadable answer would fail the same way again.
 */
type FailureKind = "unreachable" | "failing" | "rejected";

class ExchangeError extends Error {
  attempts = 1;
  /** The connection was reset or closed under the request. */
  reset = false;
  constructor(
    message: string,
    readonly kind: FailureKind,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * JSON over HTTP to one member's server: timeouts, retries with exponential backoff on failures
 * that may pass, and errors that say which kind of failure it was — `MemberUnavailableError`
 * (unreachable, or failing after its retries: what `onFailure: drop` covers) or
 * `MemberRejectedError` (the server refused the request: a configuration problem).
 *
 * Node's own `http` client over kept-alive connections, not `fetch`: a step is one small request,
 * and on loopback fetch's streams cost about as much again as the server's answer (see README,
 * "Remote members").
 */
export class RemoteHttp {
  private readonly url: URL;
  private readonly agent: http.Agent;

  constructor(
    readonly member: string,
    readonly base: string,
    private readonly options: HttpOptions,
  ) {
    this.url = new URL(base);
    const Agent = this.url.protocol === "https:" ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  }

  get(path: string): Promise<unknown> {
    return this.exchange(path, { method: "GET" });
  }

  post(path: string, body: unknown): Promise<unknown> {
    return this.exchange(path, { method: "POST", body: JSON.stringify(body) });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  /** Like `get`, but an HTTP refusal (a 4xx, an answer that is not JSON) comes back as its message, for probing which server this is. */
  async probe(path: string): Promise<{ ok: true; body: unknown } | { ok: false; message: string }> {
    try {
      return { ok: true, body: await this.attempt(path, { method: "GET" }) };
    } catch (error) {
      if (!(error instanceof ExchangeError)) throw error;
      if (error.kind === "rejected" && error.status !== undefined) return { ok: false, message: error.message };
      throw this.failed("GET", path, error);
    }
  }

  private async exchange(path: string, init: Exchange): Promise<unknown> {
    try {
      return await this.attempt(path, init);
    } catch (error) {
      throw error instanceof ExchangeError ? this.failed(init.method, path, error) : error;
    }
  }

  /** Tries, and tries again with backoff while the failure may pass; throws the last failure. */
  private async attempt(path: string, init: Exchange): Promise<unknown> {
    const retries = this.options.retries ?? DEFAULT_RETRIES;
    let staleRetried = false;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS * 2 ** (attempt - 1)));
      try {
        return await this.once(path, init);
      } catch (error) {
        if (!(error instanceof ExchangeError)) throw error;
        error.attempts = attempt + 1;
        // A kept-alive connection the server closed while idle fails at once with a reset: one
        // more try on a fresh connection, whatever `retries` says.
        if (error.reset && !staleRetried) {
          staleRetried = true;
          attempt--;
          continue;
        }
        if (error.kind === "rejected" || attempt >= retries) throw error;
      }
    }
  }

  private failed(method: string, path: string, error: ExchangeError): Error {
    const tries = error.attempts > 1 ? ` (after ${error.attempts} tries)` : "";
    const message = `${method} ${this.base}${path}: ${error.message}${tries}`;
    if (error.kind === "rejected") return new MemberRejectedError(this.member, message);
    return new MemberUnavailableError(this.member, message, error.kind === "unreachable" || error.status === 503);
  }

  private async once(path: string, init: Exchange): Promise<unknown> {
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let answer: { status: number; text: string };
    try {
      answer = await this.send(path, init, timeoutMs);
    } catch (error) {
      const e = error as Error & { code?: string; errors?: { code?: string }[] };
      if (e.name === "TimeoutError" || e.name === "AbortError") throw new ExchangeError(`no answer within ${timeoutMs} ms (raise timeoutMs)`, "unreachable");
      // Node reports a refused connection tried over IPv4 and IPv6 as an AggregateError.
      const code = e.code ?? e.errors?.find((x) => x.code)?.code;
      const failure = new ExchangeError(`cannot reach the server: ${code ?? e.message}`, "unreachable");
      failure.reset = code === "ECONNRESET" || code === "EPIPE";
      throw failure;
    }
    const { status, text } = answer;
    if (status < 200 || status >= 300) {
      const kind = status >= 500 || status === 429 ? "failing" : "rejected";
      throw new ExchangeError(`HTTP ${status}: ${serverMessage(text)}`, kind, status);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new ExchangeError(`the answer is not JSON: ${text.slice(0, 120)}`, "rejected", status);
    }
  }

  /** One request and its whole answer, or the error that stopped it (a network error, or the timeout's abort). */
  private send(path: string, { method, body }: Exchange, timeoutMs: number): Promise<{ status: number; text: string }> {
    const headers: Record<string, string | number> = {};
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(body);
    }
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    const request = this.url.protocol === "https:" ? https.request : http.request;
    const prefix = this.url.pathname.replace(/\/+$/, "");
    return new Promise((resolve, reject) => {
      const req = request(
        { protocol: this.url.protocol, hostname: this.url.hostname.replace(/^\[|\]$/g, ""), port: this.url.port, path: prefix + path, method, headers, agent: this.agent, signal: AbortSignal.timeout(timeoutMs) },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          response.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }
}

/**
 * The message in an error body, in the shapes servers use: `{error: {message}}` (vLLM ≥ 0.10.1,
 * llama.cpp, OpenAI), `{message}` (older vLLM), `{detail}` (FastAPI), `{error: "…"}`; else the text.
 */
export function serverMessage(text: string): string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return text.slice(0, 300) || "(empty body)";
  }
  const record = (value: unknown) => (value !== null && typeof value === "object" ? (value as Record<string, unknown>) : undefined);
  const top = record(body);
  const nested = record(top?.error);
  const candidates = [nested?.message, top?.message, top?.error, top?.detail];
  const found = candidates.find((c) => typeof c === "string" && c.length > 0) as string | undefined;
  if (found) return found.slice(0, 500);
  const detail = top?.detail;
  if (Array.isArray(detail)) return JSON.stringify(detail).slice(0, 500);
  return text.slice(0, 300);
}
