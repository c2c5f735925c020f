import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ensemble, type MemberSpec } from "../src/engine/ensemble.js";
import { LlamaMember } from "../src/members/llama.js";
import { RemoteMember } from "../src/members/remote.js";
import { MemberRejectedError } from "../src/members/member.js";
import { S260K, TS656K } from "./helpers/models.js";
import { LlamaServer, llamaServerSkip } from "./helpers/llama-server.js";
import { startServer } from "./helpers/server.js";

const PROMPTS = ["Once upon a time, there was a little", "The dog ran to the park and", "One day, a little girl named Lily saw"];
const S260K_LOCAL = { name: "s260k", model: S260K, primary: true };
const TS656K_LOCAL = { name: "ts656k", model: TS656K };

describe("remote members on a real llama.cpp server (llama-server from node-llama-cpp's source)", { skip: llamaServerSkip() }, () => {
  let server: LlamaServer;
  const remote = (extra: Partial<MemberSpec> = {}): MemberSpec => ({ name: "ts656k", url: server.url, tokenizer: TS656K, retries: 0, ...extra });

  before(async () => {
    server = await LlamaServer.start({ model: TS656K, contextSize: 512 });
  });
  after(async () => {
    await server?.stop();
  });

  test("api left out: llama.cpp is detected (GET /props); `api: vllm` against it names `api: llamacpp`", async () => {
    const member = await RemoteMember.connect({ name: "r", url: server.url, tokenizerPath: TS656K });
    try {
      assert.equal(member.api, "llamacpp");
      assert.equal(member.contextSize, 512);
      // llama-server names its model by the path it was given (or --alias).
      assert.equal(member.dialect.servedModel, TS656K);
    } finally {
      await member.dispose();
    }
    await assert.rejects(
      RemoteMember.connect({ name: "r", url: server.url, api: "vllm", tokenizerPath: TS656K }),
      (e: unknown) => e instanceof MemberRejectedError && /is llama\.cpp's llama-server, not vLLM .*set `api: llamacpp`/.test(e.message),
    );
    await assert.rejects(
      RemoteMember.connect({ name: "r", url: server.url, tokenizerPath: S260K }),
      (e: unknown) => /the served model has 2048 tokens but the tokenizer file .* has 512/.test((e as Error).message),
    );
  });

  test("one request reads a healed step: both positions' top lists and the forced healed token, equal to the in-process ones", async () => {
    for (const maxLogprobs of [undefined, 20]) {
      const member = await RemoteMember.connect({ name: "r", url: server.url, tokenizerPath: TS656K, maxLogprobs });
      const local = await LlamaMember.load({ name: "l", modelPath: TS656K, contextSize: 512 });
      try {
        const p = local.promptTokens({ text: PROMPTS[1]! });
        const tokens = [...p.prefix, ...p.text.ids];
        const tail = tokens[tokens.length - 1]!;
        const requests = [
          { position: tokens.length - 2, topK: 128, extraIds: [tail] },
          { position: tokens.length - 1, topK: 128 },
        ];
        const r = await member.distributions(tokens, requests);
        const l = await local.distributions(tokens, requests);
        const listed = maxLogprobs ?? 128;
        for (const [i, d] of r.entries()) {
          assert.equal(d.topCount, listed);
          assert.deepEqual([...d.ids.slice(0, listed)], [...l[i]!.ids.slice(0, listed)]);
          for (let j = 0; j < listed; j++) assert.ok(Math.abs(d.probs[j]! - l[i]!.probs[j]!) < 1e-5, `position ${i}, entry ${j}`);
        }
        const exact = (d: (typeof r)[number], id: number) => d.probs[[...d.ids].indexOf(id)];
        assert.ok(Math.abs(exact(r[0]!, tail)! - exact(l[0]!, tail)!) < 1e-6, "the healed token's probability, listed or not");
      } finally {
        await Promise.all([member.dispose(), local.dispose()]);
      }
    }
  });

  test("--only: the remote member alone generates what the same model generates in-process, healing on and off, uncapped and capped at 20", async () => {
    const local = await Ensemble.create({ threads: 1, maxTokens: 40, members: [TS656K_LOCAL] });
    try {
      for (const maxLogprobs of [undefined, 20]) {
        const alone = await Ensemble.create({ threads: 1, maxTokens: 40, members: [remote({ maxLogprobs })] });
        try {
          for (const prompt of PROMPTS) {
            for (const heal of [true, false]) {
              assert.equal((await alone.generate({ text: prompt }, { heal })).text, (await local.generate({ text: prompt }, { heal })).text, `${prompt} (heal ${heal}, cap ${maxLogprobs ?? "none"})`);
            }
          }
        } finally {
          await alone.dispose();
        }
      }
    } finally {
      await local.dispose();
    }
  });

  test("GaC and UniTE with ts656k on the server reproduce the all-local ensemble token for token, healing on and off, uncapped and capped at 20", async () => {
    const local = await Ensemble.create({ threads: 1, maxTokens: 32, members: [S260K_LOCAL, TS656K_LOCAL] });
    try {
      for (const maxLogprobs of [undefined, 20]) {
        const mixed = await Ensemble.create({ threads: 1, maxTokens: 32, members: [S260K_LOCAL, remote({ maxLogprobs })] });
        try {
          for (const prompt of PROMPTS) {
            for (const method of ["gac", "unite"] as const) {
              for (const heal of [true, false]) {
                const a = await local.generate({ text: prompt }, { method, heal });
                const b = await mixed.generate({ text: prompt }, { method, heal });
                assert.equal(b.text, a.text, `${method}, heal ${heal}, cap ${maxLogprobs ?? "none"}: ${prompt}`);
                assert.equal(b.ensembledSteps, b.steps);
              }
            }
          }
        } finally {
          await mixed.dispose();
        }
      }
    } finally {
      await local.dispose();
    }
  });

  test("failure policies: a killed server is dropped (said in the response) or fails with 503; restarted with the same model it serves again; with another model it is a 502 naming the member, never text", async () => {
    const dropping = await Ensemble.create({ threads: 1, maxTokens: 24, members: [S260K_LOCAL, remote({ onFailure: "drop" })] });
    const failing = await Ensemble.create({ threads: 1, maxTokens: 24, members: [S260K_LOCAL, remote()] });
    const alone = await Ensemble.create({ threads: 1, maxTokens: 24, members: [S260K_LOCAL] });
    const local = await Ensemble.create({ threads: 1, maxTokens: 24, members: [S260K_LOCAL, TS656K_LOCAL] });
    const served = await startServer({ models: [{ id: "dropping", ensemble: dropping }, { id: "failing", ensemble: failing }] });
    const client = served.client();
    try {
      // Killed mid-generation: the generation goes on with s260k and says so.
      const steps = dropping.stream({ text: PROMPTS[0]! });
      for (let i = 0; i < 3; i++) await steps.next();
      await server.stop();
      let result;
      for (;;) {
        const next = await steps.next();
        if (next.done) {
          result = next.value;
          break;
        }
      }
      assert.equal(result.dropped.length, 1);
      assert.equal(result.dropped[0]!.member, "ts656k");
      assert.equal(result.dropped[0]!.step, 3);
      assert.match(result.dropped[0]!.reason, /cannot reach the server: ECONNREFUSED/);
      assert.equal(result.ensembledSteps, 3);

      const response = (await client.completions.create({ model: "dropping", prompt: PROMPTS[1]! })) as unknown as { choices: { text: string }[]; ensemble: { dropped: { member: string; step: number }[] } };
      assert.deepEqual(response.ensemble.dropped.map((d) => [d.member, d.step]), [["ts656k", 0]]);
      assert.equal(response.choices[0]!.text, (await alone.generate({ text: PROMPTS[1]! })).text);
      await assert.rejects(client.completions.create({ model: "failing", prompt: PROMPTS[1]! }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 503 && /member 'ts656k'.*cannot reach the server/.test(e.message));

      // Back with the same model: the member serves again, with nothing to reconnect.
      server = await LlamaServer.start({ model: TS656K, contextSize: 512, port: server.port });
      const back = await client.completions.create({ model: "failing", prompt: PROMPTS[1]! });
      assert.equal(back.choices[0]!.text, (await local.generate({ text: PROMPTS[1]! })).text);

      // Back with another model behind the same address: refused, whatever the policy.
      await server.stop();
      server = await LlamaServer.start({ model: S260K, contextSize: 512, port: server.port });
      for (const model of ["failing", "dropping"]) {
        await assert.rejects(client.completions.create({ model, prompt: PROMPTS[1]! }), (e: unknown) => {
          assert.ok(e instanceof OpenAI.APIError && e.status === 502, String(e));
          assert.match(e.message, /member 'ts656k'.*now serves '[^']*stories260K-f32\.gguf', not '[^']*TinyStories-656K-f32\.gguf'/);
          return true;
        });
      }
    } finally {
      await served.close();
      await Promise.all([dropping.dispose(), failing.dispose(), alone.dispose(), local.dispose()]);
      await server.stop();
      server = await LlamaServer.start({ model: TS656K, contextSize: 512 });
    }
  });
});
