import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Ensemble } from "../src/engine/ensemble.js";
import { createServer } from "../src/server/app.js";
import { PAIR } from "./helpers/models.js";
import { rawRequest } from "./helpers/raw-http.js";
import { startServer, type RunningServer } from "./helpers/server.js";

const KEY = "sk-harden";
const body = JSON.stringify({ model: "pair", prompt: "Once upon a time", max_tokens: 2 });
const json = { "content-type": "application/json" };

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

  test("an empty API key is refused when the server is created, not read as 'no authentication'", () => {
    assert.throws(() => createServer({ models: [{ id: "pair", ensemble }], apiKey: "" }), /API key is empty/);
    assert.throws(() => createServer({ models: [{ id: "pair", ensemble }], apiKey: " key" }), /whitespace/);
  });
});
