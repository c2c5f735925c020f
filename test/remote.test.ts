import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ensemble, type MemberSpec } from "../src/engine/ensemble.js";
import { RemoteMember, sparseFromLogprobs } from "../src/members/remote.js";
import { LlamaMember } from "../src/members/llama.js";
import { MemberError } from "../src/members/member.js";
import { S260K, TS656K } from "./helpers/models.js";
import { VllmDouble } from "./helpers/vllm-double.js";
import { startServer } from "./helpers/server.js";

const PROMPTS = ["Once upon a time, there was a little", "The dog ran to the park and"];

describe("remote members over vLLM's wire format", () => {
  let double: VllmDouble;
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
    double = await VllmDouble.start({ modelPath: TS656K, servedName: "tinystories-656k", maxLogprobs: 2048 });
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

  test("a failing remote member: 503 through the server with onFailure: fail; the ensemble goes on without it with drop", async () => {
    const spare = await VllmDouble.start({ modelPath: TS656K, servedName: "tinystories-656k", maxLogprobs: 2048 });
    const base = { threads: 1, maxTokens: 12 };
    const s260k = { name: "s260k", model: S260K, primary: true };
    const failing = await Ensemble.create({ ...base, members: [s260k, { ...remoteSpec(), url: spare.url, retries: 1 }] });
    const dropping = await Ensemble.create({ ...base, members: [s260k, { ...remoteSpec(), url: spare.url, onFailure: "drop" }] });
    const alone = await Ensemble.create({ ...base, members: [s260k] });
    const served = await startServer({ models: [{ id: "failing", ensemble: failing }, { id: "dropping", ensemble: dropping }] });
    try {
      await spare.stop();
      const client = served.client();
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
