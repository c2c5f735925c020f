import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ensemble, type MemberSpec } from "../src/engine/ensemble.js";
import { RemoteMember, sparseFromLogprobs } from "../src/members/remote.js";
import { LlamaMember } from "../src/members/llama.js";
import { MemberError, MemberRejectedError, MemberUnavailableError } from "../src/members/member.js";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { S260K, TS656K } from "./helpers/models.js";
import { loadEnsembleConfig, parseEnsembleConfig } from "../src/config/load.js";
import { ConfigError } from "../src/config/schema.js";
import { ServerDouble } from "./helpers/server-double.js";
import { startServer } from "./helpers/server.js";

const PROMPTS = ["Once upon a time, there was a little", "The dog ran to the park and"];

describe("remote members over vLLM's and llama.cpp server's wire formats", () => {
  let double: ServerDouble;
  const remoteSpec = (extra: Partial<MemberSpec> = {}): MemberSpec => ({
    name: "ts656k",
    url: `${double.url}/v1`,
    api: "vllm",
    model: "tinystories-656k",
    tokenizer: TS656K,
    maxLogprobs: 2048,
    retries: 0,
    ...extra,
  });

  before(async () => {
    double = await ServerDouble.start({ modelPath: TS656K, servedName: "tinystories-656k", maxLogprobs: 2048 });
  });
  after(async () => {
    await double.dispose();
  });

  test("a remote member's distribution equals the same model's in-process one", async () => {
    const remote = await RemoteMember.connect({ name: "r", url: double.url, model: "tinystories-656k", tokenizerPath: TS656K, maxLogprobs: 2048 });
    const local = await LlamaMember.load({ name: "l", modelPath: TS656K, contextSize: 512 });
    try {
      assert.equal(remote.contextSize, 512);
      const p = remote.promptTokens({ text: PROMPTS[0]! });
      assert.deepEqual(p, local.promptTokens({ text: PROMPTS[0]! }));
      const tokens = [...p.prefix, ...p.text.ids];
      const request = { position: tokens.length - 1, topK: 40 };
      const [r] = await remote.distributions(tokens, [request]);
      const [l] = await local.distributions(tokens, [request]);
      assert.deepEqual([...r!.ids.slice(0, 40)], [...l!.ids.slice(0, 40)]);
      for (let i = 0; i < 40; i++) assert.ok(Math.abs(r!.probs[i]! - l!.probs[i]!) < 1e-5, `prob ${i}`);
      assert.ok(Math.abs(r!.unlistedMass - l!.unlistedMass) < 1e-4);
      assert.equal(r!.unlistedMax, r!.probs[39]);
      const [full] = await remote.distributions(tokens, [{ position: tokens.length - 1, topK: 5, full: true }]);
      assert.equal(full!.complete, true);
      assert.equal(full!.ids.length, remote.vocabulary.size);
    } finally {
      await remote.dispose();
      await local.dispose();
    }
  });

  test("config: a remote member has url and tokenizer (resolved like model paths); its model is the served name", () => {
    const config = parseEnsembleConfig({ method: "gac", members: [{ name: "r", url: "http://gpu-box:8000/v1", model: "meta-llama/Llama-3.1-8B", tokenizer: TS656K, onFailure: "drop" }] });
    assert.equal(config.members[0]!.model, "meta-llama/Llama-3.1-8B");
    assert.equal(config.members[0]!.tokenizer, TS656K);
    const messages = (raw: unknown) => {
      try {
        parseEnsembleConfig(raw);
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.issues.map((i) => `${i.path}: ${i.message}`).join("\n");
      }
      return "";
    };
    assert.match(messages({ method: "gac", members: [{ name: "r", url: "http://gpu-box:8000" }] }), /members\[0\]\.tokenizer: a member with `url` needs `tokenizer`/);
    assert.match(messages({ method: "gac", members: [{ name: "r", url: "ftp://x", tokenizer: TS656K }] }), /members\[0\]\.url/);
    assert.match(messages({ method: "gac", members: [{ name: "r", url: "http://x", tokenizer: "/no/such.gguf" }] }), /members\[0\]\.tokenizer: model file not found/);
    assert.match(messages({ method: "gac", members: [{ name: "r", url: "http://x", tokenizer: TS656K, onFailure: "skip" }] }), /members\[0\]\.onFailure/);
  });

  test("a remote member failing mid-stream ends the stream with an error event, then [DONE]", async () => {
    const spare = await ServerDouble.start({ modelPath: TS656K, servedName: "tinystories-656k", maxLogprobs: 2048 });
    const ensemble = await Ensemble.create({ threads: 1, members: [{ name: "s260k", model: S260K }, { ...remoteSpec(), url: spare.url }] });
    const served = await startServer({ models: [{ id: "mixed", ensemble }] });
    try {
      const response = await fetch(`${served.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "mixed", prompt: PROMPTS[0], max_tokens: 100, stream: true }),
      });
      assert.equal(response.status, 200);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let body = (await reader.read()).value ?? "";
      await spare.stop();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        body += value;
      }
      const events = body.split("\n\n").filter((e) => e.startsWith("data: "));
      assert.equal(events.at(-1), "data: [DONE]");
      const error = JSON.parse(events.at(-2)!.slice(6)) as { error: { code: string; message: string } };
      assert.equal(error.error.code, "member_failed");
      assert.match(error.error.message, /member 'ts656k'/);
      const next = await served.client().completions.create({ model: "mixed", prompt: PROMPTS[0]!, max_tokens: 2 }).catch((e: unknown) => e);
      assert.ok(next instanceof OpenAI.APIError && next.status === 503, "the ensemble is free again and reports the member");
    } finally {
      await served.close();
      await Promise.all([ensemble.dispose(), spare.dispose()]);
    }
  });

  test("a server that wants an API key gets it from the variable apiKeyEnv names", async () => {
    const locked = await ServerDouble.start({ modelPath: TS656K, servedName: "tinystories-656k", maxLogprobs: 2048, apiKey: "sk-remote" });
    const spec = { threads: 1, maxTokens: 4, members: [{ ...remoteSpec(), url: locked.url, apiKeyEnv: "CHORUS_TEST_REMOTE_KEY" }] };
    try {
      delete process.env.CHORUS_TEST_REMOTE_KEY;
      await assert.rejects(Ensemble.create(spec), /apiKeyEnv names \$CHORUS_TEST_REMOTE_KEY, which is not set/);
      process.env.CHORUS_TEST_REMOTE_KEY = "wrong";
      await assert.rejects(Ensemble.create(spec), /GET http:\/\/127\.0\.0\.1:\d+\/v1\/models: HTTP 401/);
      process.env.CHORUS_TEST_REMOTE_KEY = "sk-remote";
      const ensemble = await Ensemble.create(spec);
      const result = await ensemble.generate({ text: PROMPTS[0]! });
      assert.equal(result.steps, 4);
      await ensemble.dispose();
    } finally {
      delete process.env.CHORUS_TEST_REMOTE_KEY;
      await locked.dispose();
    }
  });

  test("sparse distribution from top log-probabilities: exact listed, bounded rest", () => {
    const d = sparseFromLogprobs(new Map([[7, Math.log(0.5)], [3, Math.log(0.2)], [9, Math.log(0.1)]]), 3, 100);
    assert.deepEqual([...d.ids], [7, 3, 9]);
    assert.ok(Math.abs(d.unlistedMass - 0.2) < 1e-12);
    assert.ok(Math.abs(d.unlistedMax - 0.1) < 1e-12);
    assert.equal(d.complete, false);
  });

  test("an ensemble with one local and one remote copy reproduces the all-local ensemble", async () => {
    const localSpec = { threads: 1, maxTokens: 24, members: [{ name: "s260k", model: S260K, primary: true }, { name: "ts656k", model: TS656K }] };
    const mixedSpec = { ...localSpec, members: [localSpec.members[0]!, remoteSpec()] };
    const local = await Ensemble.create(localSpec);
    const mixed = await Ensemble.create(mixedSpec);
    try {
      for (const prompt of PROMPTS) {
        for (const method of ["gac", "unite"] as const) {
          const a = await local.generate({ text: prompt }, { method });
          const b = await mixed.generate({ text: prompt }, { method });
          assert.equal(b.text, a.text, `${method}: ${prompt}`);
          assert.ok(b.members[1]!.evaluations > 0);
        }
      }
    } finally {
      await local.dispose();
      await mixed.dispose();
    }
  });

  test("a wrong tokenizer file is caught when connecting", async () => {
    await assert.rejects(
      RemoteMember.connect({ name: "r", url: double.url, model: "tinystories-656k", tokenizerPath: S260K }),
      (e: unknown) => e instanceof MemberError && /does not tokenize like the served model/.test(e.message),
    );
    await assert.rejects(
      RemoteMember.connect({ name: "r", url: double.url, model: "other", tokenizerPath: TS656K }),
      (e: unknown) => e instanceof MemberError && /does not serve model 'other' \(it serves: tinystories-656k\)/.test(e.message),
    );
  });

  test("a failing remote member: 502 (wrong answer) or 503 (unreachable) through the server with onFailure: fail; the ensemble goes on without it with drop", async () => {
    const spare = await ServerDouble.start({ modelPath: TS656K, servedName: "tinystories-656k", maxLogprobs: 2048 });
    const base = { threads: 1, maxTokens: 12 };
    const s260k = { name: "s260k", model: S260K, primary: true };
    const failing = await Ensemble.create({ ...base, members: [s260k, { ...remoteSpec(), url: spare.url, retries: 1 }] });
    const dropping = await Ensemble.create({ ...base, members: [s260k, { ...remoteSpec(), url: spare.url, onFailure: "drop" }] });
    const alone = await Ensemble.create({ ...base, members: [s260k] });
    const served = await startServer({ models: [{ id: "failing", ensemble: failing }, { id: "dropping", ensemble: dropping }] });
    try {
      const client = served.client();
      spare.omitLogprobs = true;
      await assert.rejects(client.completions.create({ model: "failing", prompt: PROMPTS[0]! }), (e: unknown) => {
        assert.ok(e instanceof OpenAI.APIError && e.status === 502, String(e));
        assert.match(e.message, /member 'ts656k'.*no choices\[0\]\.logprobs\.top_logprobs\[0\]/);
        return true;
      });
      await spare.stop();
      await assert.rejects(client.completions.create({ model: "failing", prompt: PROMPTS[0]! }), (e: unknown) => {
        assert.ok(e instanceof OpenAI.APIError && e.status === 503, String(e));
        assert.match(e.message, /member 'ts656k'.*cannot reach the server.*after 2 tries/);
        return true;
      });
      const response = await client.completions.create({ model: "dropping", prompt: PROMPTS[0]!, ensemble: { trace: true } } as OpenAI.CompletionCreateParamsNonStreaming);
      const expected = await alone.generate({ text: PROMPTS[0]! });
      assert.equal(response.choices[0]!.text, expected.text);
      const members = (response as unknown as { ensemble: { members: { name: string; dropped: boolean }[] } }).ensemble.members;
      assert.deepEqual(members.map((m) => m.dropped), [false, true]);
    } finally {
      await served.close();
      await Promise.all([failing.dispose(), dropping.dispose(), alone.dispose(), spare.dispose()]);
    }
  });
});

test("examples/tinystories-remote.yaml loads: the remote member's tokenizer resolved from the examples folder", async () => {
  const config = await loadEnsembleConfig(new URL("../examples/tinystories-remote.yaml", import.meta.url).pathname, { env: {} });
  const remote = config.members[1]!;
  assert.equal(remote.url, "http://127.0.0.1:8000/v1");
  assert.equal(remote.tokenizer, TS656K);
  assert.equal(remote.onFailure, "drop");
});

test("a server that is not there, or a port fetch refuses, is named as such, with the tries made", async () => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await assert.rejects(
    RemoteMember.connect({ name: "r", url: `http://127.0.0.1:${port}/v1`, tokenizerPath: TS656K, retries: 1 }),
    (e: unknown) => e instanceof MemberUnavailableError && /cannot reach the server: ECONNREFUSED \(after 2 tries\)$/.test(e.message),
  );
  await assert.rejects(
    RemoteMember.connect({ name: "r", url: "http://127.0.0.1:6000", tokenizerPath: TS656K, retries: 2 }),
    (e: unknown) => e instanceof MemberRejectedError && /fetch refuses this port .*run the server on another port$/.test(e.message),
  );
});
