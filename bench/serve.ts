/**
 * Server figures on the shared TinyStories pair, loopback only:
 * 1. load: C concurrent streaming clients (openai client) against one ensemble with a bounded
 *    queue — how many complete, how many get 429, latency, aggregate tokens/s;
 * 2. remote members: the same greedy generation with ts656k in-process vs behind the vLLM-format
 *    test double (HTTP + JSON per distribution) — the cost of the wire on loopback.
 * Run: node --import tsx bench/serve.ts [--clients 20] [--queue 8] [--tokens 32]
 */
import OpenAI from "openai";
import { parseArgs } from "node:util";
import { Ensemble } from "../src/engine/ensemble.js";
import { PAIR, S260K, TS656K } from "../test/helpers/models.js";
import { startServer } from "../test/helpers/server.js";
import { ServerDouble } from "../test/helpers/server-double.js";

const { values } = parseArgs({ options: { clients: { type: "string", default: "20" }, queue: { type: "string", default: "8" }, tokens: { type: "string", default: "32" } } });
const clients = Number(values.clients);
const queue = Number(values.queue);
const tokens = Number(values.tokens);
const PROMPT = "Once upon a time, there was a little";
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

const ensemble = await Ensemble.create({ members: PAIR, threads: 1 });
const served = await startServer({ models: [{ id: "pair", ensemble }], queueSize: queue });
const client = served.client();
await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 4 });
const started = performance.now();
const results = await Promise.all(
  Array.from({ length: clients }, async () => {
    const t0 = performance.now();
    try {
      const stream = await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: tokens, stream: true, stream_options: { include_usage: true } });
      let firstMs = NaN;
      let steps = 0;
      for await (const chunk of stream) {
        if (Number.isNaN(firstMs) && chunk.choices[0]?.text) firstMs = performance.now() - t0;
        if (chunk.usage) steps = chunk.usage.completion_tokens;
      }
      return { ok: true, ms: performance.now() - t0, firstMs, steps };
    } catch (error) {
      if (error instanceof OpenAI.RateLimitError) return { ok: false, ms: performance.now() - t0, firstMs: NaN, steps: 0 };
      throw error;
    }
  }),
);
const wall = performance.now() - started;
const done = results.filter((r) => r.ok);
const steps = done.reduce((n, r) => n + r.steps, 0);
console.log(`load: ${clients} concurrent streaming clients, queue ${queue}, ${tokens} tokens each`);
console.log(`  completed ${done.length}, 429 ${clients - done.length}, wall ${wall.toFixed(0)} ms, ${(steps / (wall / 1000)).toFixed(0)} tokens/s aggregate`);
console.log(`  completed latency p50 ${percentile(done.map((r) => r.ms), 50).toFixed(0)} ms, p95 ${percentile(done.map((r) => r.ms), 95).toFixed(0)} ms; first text p50 ${percentile(done.map((r) => r.firstMs), 50).toFixed(0)} ms`);
console.log(`  429 answered in p50 ${percentile(results.filter((r) => !r.ok).map((r) => r.ms), 50).toFixed(1)} ms`);
await served.close();
await ensemble.dispose();

const double = await ServerDouble.start({ modelPath: TS656K, servedName: "ts656k", maxLogprobs: 2048 });
const local = await Ensemble.create({ members: PAIR, threads: 1 });
const mixed = await Ensemble.create({
  threads: 1,
  members: [{ name: "s260k", model: S260K, primary: true }, { name: "ts656k", url: double.url, model: "ts656k", tokenizer: TS656K, maxLogprobs: 2048 }],
});
for (const [name, e] of [["in-process pair", local], ["ts656k remote (vLLM double)", mixed]] as const) {
  await e.generate({ text: PROMPT }, { maxTokens: 4 });
  const r = await e.generate({ text: PROMPT }, { maxTokens: 64 });
  const perStep = r.timings.totalMs / r.steps;
  console.log(`${name}: ${r.steps} steps, ${(r.steps / (r.timings.totalMs / 1000)).toFixed(0)} tokens/s, ${perStep.toFixed(1)} ms/step, ts656k ${(r.timings.memberMs.ts656k! / r.members[1]!.evaluations).toFixed(2)} ms per evaluation`);
}
await Promise.all([local.dispose(), mixed.dispose(), double.dispose()]);
