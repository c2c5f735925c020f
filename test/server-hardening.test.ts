import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { Ensemble } from "../src/engine/ensemble.js";
import { createServer, type RequestEnd } from "../src/server/app.js";
import { PAIR } from "./helpers/models.js";
import { rawRequest } from "./helpers/raw-http.js";
import { startServer, type RunningServer } from "./helpers/server.js";

const KEY = "sk-harden";
const body = JSON.stringify({ model: "pair", prompt: "Once upon a time", max_tokens: 2 });
const json = { "content-type": "application/json" };

/**
 * Opens a connection, sends a request's headers, waits for the server's `100 Continue` (so the
 * server is known to have taken the request in), sends part of the body, then nothing more.
 * `received`: everything the server sent after that, once it closes the connection.
 */
function halfSentRequest(url: string): Promise<{ socket: net.Socket; received: Promise<string> }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(`POST /v1/completions HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`);
    });
    socket.setEncoding("utf8");
    let data = "";
    const received = new Promise<string>((done) => socket.on("close", () => done(data)));
    socket.on("data", (chunk: string) => {
      data += chunk;
      const end = data.indexOf("\r\n\r\n");
      if (data.startsWith("HTTP/1.1 100") && end >= 0) {
        data = data.slice(end + 4);
        socket.write(`{"model": "pair", `);
        resolve({ socket, received });
      }
    });
    socket.on("error", () => undefined);
    socket.once("error", reject);
  });
}

/**
 * Sends `body` to /v1/completions and, until the answer comes, asks /health every 20 ms; returns
 * the answer and the longest a /health reply took from when it was due. The server runs in this
 * process, so while its event loop is stuck the poll is stuck too and the wait counts.
 */
async function refusedWhileHealthy(url: string, body: string): Promise<{ status: number; answer: { error: { code: string; message: string } }; slowestHealthMs: number }> {
  let done = false;
  let slowest = 0;
  const polling = (async () => {
    while (!done) {
      const due = performance.now() + 20;
      await new Promise((r) => setTimeout(r, 20));
      assert.equal((await rawRequest(url, "GET", "/health")).status, 200);
      slowest = Math.max(slowest, performance.now() - due);
    }
  })();
  const response = await rawRequest(url, "POST", "/v1/completions", { headers: json, body }).finally(() => (done = true));
  await polling;
  return { status: response.status, answer: JSON.parse(response.body) as { error: { code: string; message: string } }, slowestHealthMs: slowest };
}

/** `promise`, or a rejection naming `what` after `ms` (so a hang fails the test instead of stalling it). */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

describe("server hardening", () => {
  let ensemble: Ensemble;
  let served: RunningServer;

  before(async () => {
    ensemble = await Ensemble.create({ members: PAIR, threads: 1, maxTokens: 8 });
    served = await startServer({ models: [{ id: "pair", ensemble }], apiKey: KEY });
  });
  after(async () => {
    await served.close();
    await ensemble.dispose();
  });

  test("the API key is checked on the route the router matched: percent-encoded and absolute-form targets need it too", async () => {
    const { port } = new URL(served.url);
    const targets = ["/v1/completions", "/%761/completions", "/v%31/completions", "/v1/%63ompletions", `http://127.0.0.1:${port}/v1/completions`, `http://example.com/v1/completions`];
    for (const target of targets) {
      const anonymous = await rawRequest(served.url, "POST", target, { headers: json, body });
      assert.equal(anonymous.status, 401, `${target} without a key: ${anonymous.body}`);
      assert.equal((JSON.parse(anonymous.body) as { error: { code: string } }).error.code, "invalid_api_key");
      const keyed = await rawRequest(served.url, "POST", target, { headers: { ...json, authorization: `Bearer ${KEY}` }, body });
      assert.equal(keyed.status, 200, `${target} with the key: ${keyed.body}`);
    }
    for (const header of [`Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`, "Bearer ", `Basic ${KEY}`, KEY]) {
      const wrong = await rawRequest(served.url, "GET", "/%761/models", { headers: { authorization: header } });
      assert.equal(wrong.status, 401, header);
    }
    // The scheme is case-insensitive (RFC 7235).
    assert.equal((await rawRequest(served.url, "GET", "/v1/models", { headers: { authorization: `bearer ${KEY}` } })).status, 200);
    // The trace page and /health stay open.
    assert.equal((await rawRequest(served.url, "GET", "/health")).status, 200);
    assert.equal((await rawRequest(served.url, "GET", "/")).status, 200);
  });

  test("a generation that fills a member's context answers 200 with finish_reason 'length' and its text (it was 502 member_failed)", async () => {
    const request = { model: "pair", prompt: "Lily and Ben", max_tokens: 600, temperature: 0.5, seed: 13 };
    const answer = await rawRequest(served.url, "POST", "/v1/completions", { headers: { ...json, authorization: `Bearer ${KEY}` }, body: JSON.stringify(request) });
    assert.equal(answer.status, 200, answer.body);
    const completion = JSON.parse(answer.body) as { choices: { text: string; finish_reason: string }[] };
    assert.equal(completion.choices[0]!.finish_reason, "length");
    assert.ok(completion.choices[0]!.text.length > 1000);
  });

  test("an empty API key is refused when the server is created, not read as 'no authentication'", () => {
    assert.throws(() => createServer({ models: [{ id: "pair", ensemble }], apiKey: "" }), /API key is empty/);
    assert.throws(() => createServer({ models: [{ id: "pair", ensemble }], apiKey: " key" }), /whitespace/);
  });

  test("a client that sends its request too slowly gets 408 and is disconnected", async () => {
    const slow = await startServer({ models: [{ id: "pair", ensemble }], requestTimeout: 500 });
    const client = await halfSentRequest(slow.url);
    try {
      const started = Date.now();
      const answer = await within(10_000, "the slow request's answer", client.received);
      assert.match(answer, /^HTTP\/1\.1 408/);
      assert.ok(Date.now() - started < 5000, `disconnected after ${Date.now() - started} ms`);
    } finally {
      client.socket.destroy();
      await slow.close();
    }
  });

  test("a drain closes connections that are still sending a request when its grace ends", async () => {
    const second = await startServer({ models: [{ id: "pair", ensemble }] });
    const clients = await Promise.all(Array.from({ length: 3 }, () => halfSentRequest(second.url)));
    try {
      const started = Date.now();
      await within(10_000, "the drain", second.server.drain(300));
      assert.ok(Date.now() - started < 5000, `drained in ${Date.now() - started} ms`);
      for (const client of clients) await within(5000, "the client's disconnection", client.received);
    } finally {
      for (const client of clients) client.socket.destroy();
    }
  });

  test("every request is reported once when it ends, with its status and, when it failed, the reason", async () => {
    const ends: RequestEnd[] = [];
    const logged = await startServer({ models: [{ id: "pair", ensemble }], apiKey: KEY, bodyLimit: 2048, onRequestEnd: (e) => ends.push(e) });
    const auth = { ...json, authorization: `Bearer ${KEY}` };
    const waitFor = async (n: number) => {
      const deadline = Date.now() + 10_000;
      while (ends.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(ends.length, n, JSON.stringify(ends));
      return ends.at(-1)!;
    };
    try {
      await rawRequest(logged.url, "GET", "/health");
      assert.deepEqual({ ...(await waitFor(1)), ms: 0 }, { method: "GET", url: "/health", status: 200, ms: 0, reason: undefined, generation: undefined });
      await rawRequest(logged.url, "POST", "/v1/completions", { headers: json, body });
      assert.match((await waitFor(2)).reason!, /^invalid_api_key: missing API key/);
      await rawRequest(logged.url, "POST", "/v1/completions", { headers: auth, body: "{" });
      assert.match((await waitFor(3)).reason!, /^FST_ERR_CTP_INVALID_JSON_BODY: the request body is not valid JSON/);
      await rawRequest(logged.url, "POST", "/v1/completions", { headers: auth, body: JSON.stringify({ model: "pair", prompt: "x".repeat(4000) }) });
      assert.equal((await waitFor(4)).status, 413);
      await rawRequest(logged.url, "GET", "/nowhere");
      assert.match((await waitFor(5)).reason!, /^not_found_error: no route GET \/nowhere/);
      await rawRequest(logged.url, "POST", "/v1/completions", { headers: auth, body: JSON.stringify({ model: "pair", prompt: "中".repeat(600) }) });
      const tooLong = await waitFor(6);
      assert.equal(tooLong.status, 400);
      assert.match(tooLong.reason!, /^context_length_exceeded: member 's260k'/);
      await rawRequest(logged.url, "POST", "/v1/completions", { headers: auth, body: JSON.stringify({ model: "pair", prompt: "Once upon a time", max_tokens: 3, stream: true }) });
      const streamed = await waitFor(7);
      assert.equal(streamed.status, 200);
      assert.equal(streamed.reason, undefined);
      assert.deepEqual({ ...streamed.generation!, ms: 0, steps: 0 }, { model: "pair", stream: true, steps: 0, outcome: "done", ms: 0, dropped: [] });
      assert.ok(streamed.generation!.steps >= 3, `${streamed.generation!.steps} steps for 3 tokens`);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(ends.length, 7, "one report per request");
    } finally {
      await logged.close();
    }
  });

  test("a 900 KB CJK prompt is refused in milliseconds, from its length alone, and /health keeps answering", async () => {
    const open = await startServer({ models: [{ id: "pair", ensemble }] });
    try {
      const prompt = "中文字符測試".repeat(51_200); // 921 600 bytes, under the default 1 MiB body limit
      const started = performance.now();
      const { status, answer, slowestHealthMs } = await refusedWhileHealthy(open.url, JSON.stringify({ model: "pair", prompt }));
      assert.equal(status, 400);
      assert.equal(answer.error.code, "context_length_exceeded");
      assert.ok(slowestHealthMs < 1000, `/health took ${Math.round(slowestHealthMs)} ms`);
      assert.match(answer.error.message, /member 's260k': the prompt is at least 131\d{3} tokens \(921600 bytes, and no token of this member spells more than 7\) but this member's context holds 512/);
      assert.ok(performance.now() - started < 10_000, `refused after ${Math.round(performance.now() - started)} ms`);
    } finally {
      await open.close();
    }
  });

  test("a prompt that passes the length bound but is slow to tokenize (CJK byte by byte on s260k) stops at the context, and /health keeps answering", async () => {
    // A 32k context lets 150 KB of CJK pass the bound (at least 21 943 tokens); whole, it took llama.cpp seconds to tokenize, twice.
    const roomy = await Ensemble.create({ members: PAIR, threads: 1, contextSize: 32_768 });
    const open = await startServer({ models: [{ id: "pair", ensemble: roomy }] });
    try {
      const prompt = "中文字符測試".repeat(8_534); // 153 612 bytes
      const { status, answer, slowestHealthMs } = await refusedWhileHealthy(open.url, JSON.stringify({ model: "pair", prompt }));
      assert.equal(status, 400);
      assert.equal(answer.error.code, "context_length_exceeded");
      assert.ok(slowestHealthMs < 1000, `/health took ${Math.round(slowestHealthMs)} ms`);
      assert.match(answer.error.message, /member 's260k': the prompt is more than 32768 tokens but this member's context holds 32768/);
    } finally {
      await open.close();
      await roomy.dispose();
    }
  });
});
