import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ensemble, type GenerateOptions } from "../src/engine/ensemble.js";
import { LlamaMember } from "../src/members/llama.js";
import { createMembers } from "../src/members/factory.js";
import type { Member, MemberSession } from "../src/members/member.js";
import { GenerationQueue } from "../src/server/queue.js";
import { PAIR, TS656K } from "./helpers/models.js";
import { startServer } from "./helpers/server.js";

const PROMPTS = ["Once upon a time, there was a little", "The dog ran to the park and", "Lily and Ben"];

/** Each local member's sessions open now (none must be left once generations end). */
function openSessions(ensemble: Ensemble): number[] {
  return ensemble.members.map((m) => (m as LlamaMember).sessions.open);
}

/**
 * The members behind a gate: `pause()` holds every read of the sessions open now (not of those
 * opened later) until `resume()`, so a test can keep generations in flight without timing.
 */
function gated(members: readonly Member[]): { members: Member[]; pause(): void; resume(): void } {
  const live = new Set<{ held?: Promise<void> }>();
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  const wrap = (member: Member): Member =>
    new Proxy(member, {
      get(target, property) {
        if (property === "openSession") {
          return async (signal?: AbortSignal): Promise<MemberSession> => {
            const inner = await target.openSession(signal);
            const state: { held?: Promise<void> } = {};
            live.add(state);
            return {
              distributions: async (tokens, requests) => {
                await state.held;
                return inner.distributions(tokens, requests);
              },
              close: () => (live.delete(state), inner.close()),
            };
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  return {
    members: members.map(wrap),
    pause() {
      if (!gate) {
        let open!: () => void;
        gate = { promise: new Promise((resolve) => (open = resolve)), open };
      }
      for (const state of live) state.held = gate.promise;
    },
    resume() {
      gate?.open();
      gate = undefined;
      for (const state of live) state.held = undefined;
    },
  };
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("concurrent generations on one ensemble", () => {
  let ensemble: Ensemble;
  const alone = new Map<string, string>();
  const options: GenerateOptions = { maxTokens: 24 };

  before(async () => {
    ensemble = await Ensemble.create({ members: PAIR, threads: 1, contextSize: 256, parallel: 2 });
    for (const prompt of PROMPTS) alone.set(prompt, (await ensemble.generate({ text: prompt }, options)).text);
  });
  after(() => ensemble?.dispose());

  test("each local member holds `parallel` sequences of the configured context size each", async () => {
    const member = await LlamaMember.load({ name: "m", modelPath: TS656K, contextSize: 256, threads: 1, parallel: 3 });
    try {
      assert.equal(member.parallel, 3);
      assert.equal(member.contextSize, 256);
      const sessions = await Promise.all([member.openSession(), member.openSession(), member.openSession()]);
      // Three full contexts at once: every sequence holds contextSize tokens of its own.
      const tokens = (k: number) => Array.from({ length: 255 }, (_, i) => 1 + ((i * 7 + k) % 300));
      const answers = await Promise.all(sessions.map((s, k) => s.distributions(tokens(k), [{ position: 254, topK: 5 }])));
      assert.equal(answers.length, 3);
      await Promise.all(sessions.map((s) => s.close()));
      // Each session's answer is what the member gives for those tokens alone, up to float
      // rounding: llama.cpp splits a batch of three sequences into other matrix tiles than one.
      for (let k = 0; k < 3; k++) {
        const [together] = answers[k]!;
        const [single] = await member.distributions(tokens(k), [{ position: 254, topK: 5 }]);
        assert.deepEqual(together!.ids, single!.ids);
        together!.probs.forEach((p, i) => assert.ok(Math.abs(p - single!.probs[i]!) < 1e-4, `${p} vs ${single!.probs[i]}`));
      }
      assert.deepEqual(member.sessions, { open: 0, waiting: 0 });
    } finally {
      await member.dispose();
    }
  });

  test("two generations stepped in turn give exactly the texts each gives alone (greedy)", async () => {
    const [a, b] = [PROMPTS[0]!, PROMPTS[1]!];
    const first = ensemble.stream({ text: a }, options);
    const second = ensemble.stream({ text: b }, options);
    const texts = ["", ""];
    const done = [false, false];
    let both = false;
    while (!done[0] || !done[1]) {
      for (const [k, iterator] of [first, second].entries()) {
        if (done[k]) continue;
        const next = await iterator.next();
        if (next.done) {
          done[k] = true;
          assert.equal(next.value.text, texts[k]);
        } else texts[k] += next.value.text;
        if (!done[0] && !done[1]) both ||= ensemble.generations.running === 2 && openSessions(ensemble).every((n) => n === 2);
      }
    }
    assert.ok(both, "both generations held their own sessions at once");
    assert.deepEqual(texts, [alone.get(a), alone.get(b)]);
    assert.deepEqual(openSessions(ensemble), [0, 0]);
  });

  test("generations run at once under Promise.all, with other methods too, give their texts alone", async () => {
    const gac = await Promise.all(PROMPTS.slice(0, 2).map((p) => ensemble.generate({ text: p }, options)));
    assert.deepEqual(gac.map((r) => r.text), PROMPTS.slice(0, 2).map((p) => alone.get(p)));
    const uniteAlone = (await ensemble.generate({ text: PROMPTS[2]! }, { ...options, method: "unite" })).text;
    const bytesAlone = (await ensemble.generate({ text: PROMPTS[2]! }, { ...options, method: "bytes" })).text;
    const [unite, bytes] = await Promise.all([
      ensemble.generate({ text: PROMPTS[2]! }, { ...options, method: "unite" }),
      ensemble.generate({ text: PROMPTS[2]! }, { ...options, method: "bytes" }),
    ]);
    assert.equal(unite.text, uniteAlone);
    assert.equal(bytes.text, bytesAlone);
  });

  test("a cancelled generation leaves the other untouched; beyond `parallel` one waits its turn", async () => {
    const controller = new AbortController();
    const cancelled = ensemble.stream({ text: PROMPTS[0]! }, { maxTokens: 400, signal: controller.signal });
    await cancelled.next();
    const kept = ensemble.stream({ text: PROMPTS[1]! }, options);
    const keptFirst = await kept.next();
    assert.equal(keptFirst.done, false);
    // A third waits for a turn, and leaves the line when its signal aborts.
    const leaving = new AbortController();
    const third = ensemble.stream({ text: PROMPTS[2]! }, { ...options, signal: leaving.signal }).next();
    await until(() => ensemble.generations.waiting === 1, "the third generation to wait");
    leaving.abort(new Error("gave up waiting"));
    await assert.rejects(third, /gave up waiting/);
    assert.equal(ensemble.generations.waiting, 0);
    // A fourth waits, and starts when the cancelled one ends.
    const fourth = ensemble.generate({ text: PROMPTS[2]! }, options);
    await until(() => ensemble.generations.waiting === 1, "the fourth generation to wait");
    controller.abort(new Error("client went away"));
    await assert.rejects(cancelled.next(), /client went away/);
    let text = keptFirst.done ? "" : keptFirst.value.text;
    for (let next = await kept.next(); !next.done; next = await kept.next()) text += next.value.text;
    assert.equal(text, alone.get(PROMPTS[1]!));
    assert.equal((await fourth).text, alone.get(PROMPTS[2]!));
    assert.deepEqual(openSessions(ensemble), [0, 0]);
    assert.deepEqual(ensemble.generations, { running: 0, waiting: 0 });
  });

  test("sessions go back to the pool after aborts, errors and early returns: no leak over many", async () => {
    const longPrompt = "once upon a time ".repeat(200);
    const runs = Array.from({ length: 24 }, async (_, k) => {
      const controller = new AbortController();
      const kind = k % 4;
      try {
        if (kind === 3) {
          // Longer than the context: refused once the sessions are open.
          await ensemble.generate({ text: longPrompt }, options);
          return "no error";
        }
        const steps = ensemble.stream({ text: PROMPTS[k % 3]! }, { maxTokens: 200, signal: controller.signal });
        let n = 0;
        for await (const _ of steps) {
          if (++n === 1 + (k % 5)) {
            if (kind === 0) controller.abort(new Error("abort"));
            else if (kind === 1) break;
            else throw new Error("thrown by the caller");
          }
        }
        return kind === 1 ? "returned" : "no error";
      } catch (error) {
        return (error as Error).name === "ContextOverflowError" ? "overflow" : (error as Error).message;
      }
    });
    const outcomes = await Promise.all(runs);
    assert.deepEqual(
      [...new Set(outcomes)].sort(),
      ["abort", "overflow", "returned", "thrown by the caller"],
    );
    assert.deepEqual(openSessions(ensemble), [0, 0]);
    assert.deepEqual(ensemble.generations, { running: 0, waiting: 0 });
    assert.equal((await ensemble.generate({ text: PROMPTS[0]! }, options)).text, alone.get(PROMPTS[0]!));
  });
});

describe("the server runs `parallel` generations at once", () => {
  test("two streams are in flight together, a third waits, a fourth gets 429; a disconnect ends only its own", async () => {
    const loaded = await createMembers(PAIR, { threads: 1, contextSize: 256, parallel: 2 });
    const gate = gated(loaded);
    const ensemble = Ensemble.fromMembers({ members: PAIR, parallel: 2 }, gate.members);
    const served = await startServer({ models: [{ id: "pair", ensemble }], queueSize: 1 });
    try {
      const client = served.client();
      const reference = (await client.completions.create({ model: "pair", prompt: PROMPTS[1]!, max_tokens: 24 })).choices[0]!.text;
      const health = async () => ((await (await fetch(`${served.url}/health`)).json()) as { models: { pair: { running: number; waiting: number; parallel: number } } }).models.pair;
      assert.deepEqual({ ...(await health()) }, { running: 0, waiting: 0, parallel: 2, backend: JSON.parse(JSON.stringify(ensemble.backend)) });

      const cancel = new AbortController();
      const long = await fetch(`${served.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "pair", prompt: PROMPTS[0]!, max_tokens: 400, stream: true }),
        signal: cancel.signal,
      });
      const longChunks = long.body!.getReader();
      assert.equal((await longChunks.read()).done, false);
      gate.pause();
      const kept = await client.completions.create({ model: "pair", prompt: PROMPTS[1]!, max_tokens: 24, stream: true });
      const keptChunks = kept[Symbol.asyncIterator]();
      let keptText = "";
      const first = await keptChunks.next();
      keptText += first.done ? "" : (first.value.choices[0]?.text ?? "");
      gate.pause();
      // Both have sent a chunk and neither can finish: both are running at once.
      const both = await health();
      assert.equal(both.running, 2);
      assert.equal(both.waiting, 0);
      assert.deepEqual(openSessions(ensemble), [2, 2]);

      const third = client.completions.create({ model: "pair", prompt: PROMPTS[2]!, max_tokens: 8 });
      await until(async () => (await health()).waiting === 1, "the third request to wait");
      await assert.rejects(client.completions.create({ model: "pair", prompt: PROMPTS[2]!, max_tokens: 8 }), (e) => e instanceof OpenAI.RateLimitError);

      // The long one's client goes away: its turn goes to the third; the kept one goes on untouched.
      cancel.abort();
      await assert.rejects(longChunks.read(), (e) => (e as Error).name === "AbortError");
      gate.resume();
      for (let next = await keptChunks.next(); !next.done; next = await keptChunks.next()) keptText += next.value.choices[0]?.text ?? "";
      assert.equal(keptText, reference);
      assert.equal((await third).choices[0]!.finish_reason, "length");
      await until(async () => (await health()).running === 0, "every generation to end");
      assert.deepEqual(openSessions(ensemble), [0, 0]);
    } finally {
      await served.close();
      await Promise.all(loaded.map((m) => m.dispose()));
    }
  });
});

describe("GenerationQueue", () => {
  test("runs `parallel` at once, queues up to its capacity, hands turns on in order", async () => {
    const queue = new GenerationQueue(1, 2);
    const signal = new AbortController().signal;
    const a = await queue.acquire(signal);
    const b = await queue.acquire(signal);
    assert.deepEqual(queue.stats, { running: 2, waiting: 0, parallel: 2 });
    let cStarted = false;
    const c = queue.acquire(signal).then((release) => ((cStarted = true), release));
    await assert.rejects(queue.acquire(signal), /queue for this model is full/);
    assert.deepEqual(queue.stats, { running: 2, waiting: 1, parallel: 2 });
    a();
    a();
    const releaseC = await c;
    assert.ok(cStarted);
    assert.deepEqual(queue.stats, { running: 2, waiting: 0, parallel: 2 });
    b();
    releaseC();
    assert.deepEqual(queue.stats, { running: 0, waiting: 0, parallel: 2 });
  });
});
