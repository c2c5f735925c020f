import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ensemble } from "../src/engine/ensemble.js";
import type { GenerationEnd } from "../src/server/app.js";
import { PAIR } from "./helpers/models.js";
import { startServer, type RunningServer } from "./helpers/server.js";

const KEY = "sk-chorus-test";
const PROMPT = "Once upon a time, there was a little";

describe("OpenAI-compatible server, driven by the openai client", () => {
  let ensemble: Ensemble;
  let served: RunningServer;
  let client: OpenAI;
  const ends: GenerationEnd[] = [];

  before(async () => {
    ensemble = await Ensemble.create({ members: PAIR, threads: 1, maxTokens: 32 });
    served = await startServer({ models: [{ id: "pair", ensemble }], apiKey: KEY, queueSize: 4, bodyLimit: 64 * 1024, onGenerationEnd: (e) => ends.push(e) });
    client = served.client();
  });
  after(async () => {
    await served.close();
    await ensemble.dispose();
  });

  test("GET /v1/models lists the ensemble with its members", async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["pair"]);
    assert.deepEqual((models.data[0] as unknown as { members: string[] }).members, ["s260k", "ts656k"]);
    // The defaults a request's `ensemble` fields start from: the config's (PAIR's s260k is primary; no gate configured).
    assert.deepEqual((models.data[0] as unknown as { ensemble: unknown }).ensemble, { method: "gac", weights: [1, 1], gate: null, primary: "s260k" });
  });

  test("completions: the text the engine generates, with usage; streaming gives the same text and ends in [DONE]", async () => {
    const expected = await ensemble.generate({ text: PROMPT }, { maxTokens: 24 });
    const response = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 24, temperature: 0 });
    assert.equal(response.object, "text_completion");
    assert.equal(response.choices[0]!.text, expected.text);
    assert.equal(response.choices[0]!.finish_reason, expected.finishReason);
    assert.equal(response.usage!.completion_tokens, expected.completionTokens);
    assert.equal(expected.completionTokens, 24, "max_tokens counts the primary member's tokens");
    const promptTokens = ensemble.members[0]!.promptTokens({ text: PROMPT });
    assert.equal(response.usage!.prompt_tokens, promptTokens.prefix.length + promptTokens.text.ids.length);

    const stream = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 24, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.choices[0]) {
        text += chunk.choices[0].text;
        finish = chunk.choices[0].finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, expected.text);
    assert.equal(finish, expected.finishReason);
    assert.ok(chunks > 5, `text arrives in pieces (${chunks} chunks)`);
    assert.equal(usage?.completion_tokens, expected.completionTokens);

    const raw = await fetch(`${served.url}/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "pair", prompt: PROMPT, max_tokens: 4, stream: true }),
    });
    assert.equal(raw.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const body = await raw.text();
    assert.ok(body.endsWith("data: [DONE]\n\n"), body.slice(-80));
  });

  test("non-ASCII text arrives as the engine wrote it, streamed and not", async () => {
    // The pair continues this TinyStories line with a closing curly quote (3 UTF-8 bytes).
    const prompt = "He shouted to the swan, \u201cCan you help me to cross the river?";
    const expected = await ensemble.generate({ text: prompt }, { maxTokens: 6 });
    assert.match(expected.text, /[^\x00-\x7f]/, "the expected text has a non-ASCII character");
    const response = await client.completions.create({ model: "pair", prompt, max_tokens: 6 });
    assert.equal(response.choices[0]!.text, expected.text);
    const stream = await client.completions.create({ model: "pair", prompt, max_tokens: 6, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, expected.text);
  });

  test("chat completions: rendered through each member's template (plain text here), streamed and not", async () => {
    const messages = [{ role: "user" as const, content: "Tell me a story about a cat." }];
    const expected = await ensemble.generate({ messages }, { maxTokens: 20 });
    const response = await client.chat.completions.create({ model: "pair", messages, max_tokens: 20 });
    assert.equal(response.object, "chat.completion");
    assert.equal(response.choices[0]!.message.role, "assistant");
    assert.equal(response.choices[0]!.message.content, expected.text);
    const stream = await client.chat.completions.create({ model: "pair", messages, max_tokens: 20, stream: true });
    let text = "";
    let role: string | undefined;
    for await (const chunk of stream) {
      role ??= chunk.choices[0]?.delta.role;
      text += chunk.choices[0]?.delta.content ?? "";
    }
    assert.equal(role, "assistant");
    assert.equal(text, expected.text);
  });

  test("the ensemble object overrides the config per request and returns the trace", async () => {
    const only = await ensemble.generate({ text: PROMPT }, { maxTokens: 12, weights: [1, 0] });
    const body = { model: "pair", prompt: PROMPT, max_tokens: 12, ensemble: { weights: [1, 0], method: "gac", trace: true } };
    const response = (await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming)) as OpenAI.Completion & {
      ensemble: { steps: number; members: { name: string; weight: number }[]; trace: { text: string; trace: { members: { name: string; top: unknown[] }[]; winner: { text: string } } }[] };
    };
    assert.equal(response.choices[0]!.text, only.text);
    assert.deepEqual(response.ensemble.members.map((m) => m.weight), [1, 0]);
    assert.equal(response.ensemble.trace.length, response.ensemble.steps);
    const step = response.ensemble.trace[0]!;
    assert.deepEqual(step.trace.members.map((m) => m.name), ["s260k"]);
    assert.ok(step.trace.members[0]!.top.length > 0);
    assert.equal(step.trace.winner.text, step.text);
  });

  test("ensemble.only runs one member alone; an unknown name, or only with weights, is a 400 naming ensemble.only", async () => {
    const alone = await ensemble.generate({ text: PROMPT }, { maxTokens: 10, only: "ts656k" });
    const body = { model: "pair", prompt: PROMPT, max_tokens: 10, ensemble: { only: "ts656k", trace: true } };
    const response = (await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming)) as OpenAI.Completion & {
      ensemble: { members: { name: string; weight: number }[]; trace: { trace: { members: { name: string }[] } }[] };
    };
    assert.equal(response.choices[0]!.text, alone.text);
    assert.deepEqual(response.ensemble.members.map((m) => m.weight), [0, 1]);
    assert.ok(response.ensemble.trace.every((s) => s.trace.members.map((m) => m.name).join() === "ts656k"));
    for (const [ensembleField, message] of [
      [{ only: "nope" }, "ensemble.only: no member is named 'nope'; members: s260k, ts656k"],
      [{ only: "s260k", weights: [1, 0] }, "ensemble.only: send either `only` (one member alone) or `weights`, not both"],
    ] as const) {
      await assert.rejects(client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 4, ensemble: ensembleField } as OpenAI.CompletionCreateParamsNonStreaming), (e: unknown) => {
        assert.ok(e instanceof OpenAI.BadRequestError);
        assert.equal(e.param, "ensemble.only");
        assert.equal(e.message, `400 ${message}`);
        return true;
      });
    }
  });

  test("errors come in OpenAI's shape with the right status", async () => {
    await assert.rejects(client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: -3 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, "max_tokens");
      assert.match(e.message, /max_tokens/);
      return true;
    });
    await assert.rejects(client.completions.create({ model: "nope", prompt: PROMPT }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, "model_not_found");
      return true;
    });
    await assert.rejects(served.client("wrong").models.list(), OpenAI.AuthenticationError);
    const noKey = await fetch(`${served.url}/v1/models`);
    assert.equal(noKey.status, 401);
    assert.equal(((await noKey.json()) as { error: { code: string } }).error.code, "invalid_api_key");
    const weights = { model: "pair", prompt: PROMPT, ensemble: { weights: [1, 2, 3] } };
    await assert.rejects(client.completions.create(weights as OpenAI.CompletionCreateParamsNonStreaming), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, "ensemble.weights");
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: "pair", messages: [{ role: "user", content: 5 as unknown as string }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(String(e.param), /^messages\[0\]\.content/);
      return true;
    });
    const long = "the cat sat on the mat and ".repeat(200);
    await assert.rejects(client.completions.create({ model: "pair", prompt: long, stream: true }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, "context_length_exceeded");
      assert.match(e.message, /context holds 512/);
      return true;
    });

    const post = (body: string, type = "application/json") =>
      fetch(`${served.url}/v1/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": type }, body });
    const malformed = await post('{"model": "pair", "prompt": ');
    assert.equal(malformed.status, 400);
    assert.match(((await malformed.json()) as { error: { message: string } }).error.message, /not valid JSON/);
    const huge = await post(JSON.stringify({ model: "pair", prompt: "x".repeat(100 * 1024) }));
    assert.equal(huge.status, 413);
    assert.match(((await huge.json()) as { error: { message: string } }).error.message, /larger than 65536 bytes/);
    const notFound = await fetch(`${served.url}/v1/nothing`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(notFound.status, 404);
    assert.equal(((await notFound.json()) as { error: { type: string } }).error.type, "not_found_error");
  });

  test("a client that disconnects cancels its generation at once, and the ensemble serves the next request as before", async () => {
    const reference = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 16 });
    ends.length = 0;
    const controller = new AbortController();
    const stream = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 400, stream: true }, { signal: controller.signal });
    let seen = 0;
    try {
      for await (const chunk of stream) {
        // Chunks that arrived with the third one are already parsed: stop reading once the client has hung up.
        if (chunk.choices[0]?.text && ++seen === 3) {
          controller.abort();
          break;
        }
      }
    } catch (error) {
      assert.ok(error instanceof OpenAI.APIUserAbortError, String(error));
    }
    assert.equal(seen, 3);
    const deadline = Date.now() + 5000;
    while (ends.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(ends[0]?.outcome, "cancelled");
    assert.ok(ends[0]!.steps < 60, `stopped after ${ends[0]!.steps} of 400 steps`);
    const again = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 16 });
    assert.equal(again.choices[0]!.text, reference.choices[0]!.text);
  });

  test("drain with no grace: the running stream ends with a shutting_down error event and [DONE], waiting requests get 503", async () => {
    const second = await startServer({ models: [{ id: "pair", ensemble }] });
    const post = () =>
      fetch(`${second.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "pair", prompt: PROMPT, max_tokens: 300, stream: true }),
      });
    const running = await post();
    const reader = running.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = (await reader.read()).value ?? "";
    const waiting = post();
    await new Promise((r) => setTimeout(r, 50));
    const drained = second.server.drain(0);
    assert.equal((await waiting).status, 503);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += value;
    }
    await drained;
    const events = body.split("\n\n").filter((e) => e.startsWith("data: "));
    assert.equal(events.at(-1), "data: [DONE]");
    assert.equal((JSON.parse(events.at(-2)!.slice(6)) as { error: { code: string } }).error.code, "shutting_down");
    const again = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 4 });
    assert.equal(again.choices[0]!.finish_reason, "length", "the ensemble is free for the other server");
  });

  test("load: 20 concurrent streaming clients each complete or get 429; nothing leaks", async () => {
    const reference = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 8 });
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, async () => {
        try {
          const stream = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 8, stream: true });
          let text = "";
          for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
          return text === reference.choices[0]!.text ? "completed" : `wrong text ${JSON.stringify(text)}`;
        } catch (e) {
          return e instanceof OpenAI.RateLimitError ? "429" : `error ${(e as Error).message}`;
        }
      }),
    );
    const completed = outcomes.filter((o) => o === "completed").length;
    const limited = outcomes.filter((o) => o === "429").length;
    assert.equal(completed + limited, 20, outcomes.join(", "));
    assert.ok(completed >= 5 && limited >= 1, `completed ${completed}, 429 ${limited}`);
    const health = (await (await fetch(`${served.url}/health`)).json()) as { status: string; models: Record<string, { running: number; waiting: number }> };
    assert.deepEqual(health, { status: "ok", models: { pair: { running: 0, waiting: 0, parallel: 1, backend: JSON.parse(JSON.stringify(ensemble.backend)) } } });
    const after = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 8 });
    assert.equal(after.choices[0]!.text, reference.choices[0]!.text);
  });

  test("sampling's top_k per request; UniTE's k as ensemble.unite.k; the old ensemble.topK is refused with the new name", async () => {
    const greedy = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 12, temperature: 0 });
    // top_k 1 leaves only the best text, so a hot temperature still gives the greedy answer.
    for (const seed of [1, 2, 3]) {
      const hot = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 12, temperature: 2, seed, top_k: 1 } as OpenAI.CompletionCreateParamsNonStreaming);
      assert.equal(hot.choices[0]!.text, greedy.choices[0]!.text, `seed ${seed}`);
    }
    const post = (body: object) =>
      fetch(`${served.url}/v1/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify({ model: "pair", prompt: PROMPT, max_tokens: 4, ...body }) });
    assert.equal((await post({ ensemble: { method: "unite", unite: { k: 3 } } })).status, 200);
    const old = await post({ ensemble: { method: "unite", topK: 3 } });
    assert.equal(old.status, 400);
    const error = ((await old.json()) as { error: { message: string; param: string } }).error;
    assert.equal(error.param, "ensemble.topK");
    assert.match(error.message, /ensemble\.topK is now ensemble\.unite\.k \(UniTE's k\); for sampling's top-k send top_k/);
  });
});
