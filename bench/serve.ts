/**
 * Server figures on the shared TinyStories pair, loopback only:
 * 0. concurrency: 1, 2, 4, 8 clients, each sending `--requests` streaming requests one after the
 *    other, against `--parallel 1` and the default (DEFAULT_PARALLEL) — aggregate tokens/s,
 *    latency p50/p95, and this process's CPU use (cores busy) — in one run, the two servers
 *    alternating per row so that the machine's load drifts evenly over both;
 * 1. load: C concurrent streaming clients (openai client) against one ensemble with a bounded
 *    queue — how many complete, how many get 429, latency, aggregate tokens/s;
 * 2. remote members: the same greedy generation with ts656k in-process vs on a real llama.cpp
 *    server (`npm run build:llama-server`; HTTP + JSON per step) — the cost of the wire on loopback,
 *    for the pair and for ts656k alone, `--rounds` times alternating which goes first (median and
 *    range: the figures move with the machine's load). bench/remote-profile.ts breaks a step down.
 * Run: node --import tsx bench/serve.ts [--clients 20] [--queue 8] [--tokens 32] [--rounds 3] [--requests 4] [--levels 1,2,4,8] [--parallel 1,4]
 * (concurrency: "cores" is this process's CPU time over the wall time, all its threads; "CPU
 * ms/token" its CPU time per generated token; each cell keeps the best of `--rounds`)
 */
import OpenAI from "openai";
import { parseArgs } from "node:util";
import { Ensemble } from "../src/engine/ensemble.js";
import { PAIR, TS656K } from "../test/helpers/models.js";
import { startServer } from "../test/helpers/server.js";
import { LlamaServer, llamaServerSkip } from "../test/helpers/llama-server.js";
import { DEFAULT_PARALLEL } from "../src/cli/serve.js";
import os from "node:os";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "20" },
    queue: { type: "string", default: "8" },
    tokens: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    requests: { type: "string", default: "4" },
    levels: { type: "string", default: "1,2,4,8" },
    parallel: { type: "string", default: `1,${DEFAULT_PARALLEL}` },
  },
});
const clients = Number(values.clients);
const queue = Number(values.queue);
const tokens = Number(values.tokens);
const requests = Number(values.requests);
const levels = values.levels.split(",").map(Number);
const rounds = Number(values.rounds);
const PROMPT = "Once upon a time, there was a little";
const PROMPTS = [PROMPT, "The dog ran to the park and", "Lily and Ben", "One day, a big red ball"];
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

// 0. Concurrency: closed-loop clients (each sends its next request when the last one ends).
{
  const configs = values.parallel.split(",").map(Number);
  const servers = await Promise.all(
    configs.map(async (parallel) => {
      const ensemble = await Ensemble.create({ members: PAIR, threads: 1, parallel });
      const served = await startServer({ models: [{ id: "pair", ensemble }], queueSize: Math.max(...levels) });
      const client = served.client();
      await client.completions.create({ model: "pair", prompt: PROMPT, max_tokens: 4 });
      return { parallel, ensemble, served, client };
    }),
  );
  type Row = { tokensPerS: number; p50: number; p95: number; cores: number; cpuMsPerToken: number };
  const rows = new Map<string, Row>();
  const loadBefore = os.loadavg()[0]!;
  // Warm-up (JIT, caches) of each server before anything is measured.
  for (const { client } of servers) {
    for (let r = 0; r < requests; r++) await client.completions.create({ model: "pair", prompt: PROMPTS[r % PROMPTS.length]!, max_tokens: tokens });
  }
  // Each cell keeps its best round: other processes' load only ever slows a round down.
  const order = Array.from({ length: rounds }, (_, k) => (k % 2 === 0 ? levels : [...levels].reverse())).flat();
  for (const level of order) {
    for (const { parallel, client } of servers) {
      const cpu = process.cpuUsage();
      const started = performance.now();
      const latencies: number[] = [];
      let steps = 0;
      await Promise.all(
        Array.from({ length: level }, async (_, c) => {
          for (let r = 0; r < requests; r++) {
            const t0 = performance.now();
            const stream = await client.completions.create({
              model: "pair",
              prompt: PROMPTS[(c + r) % PROMPTS.length]!,
              max_tokens: tokens,
              stream: true,
              stream_options: { include_usage: true },
            });
            for await (const chunk of stream) if (chunk.usage) steps += chunk.usage.completion_tokens;
            latencies.push(performance.now() - t0);
          }
        }),
      );
      const wall = performance.now() - started;
      const used = process.cpuUsage(cpu);
      const previous = rows.get(`${parallel}:${level}`);
      if (previous && previous.tokensPerS >= steps / (wall / 1000)) continue;
      rows.set(`${parallel}:${level}`, {
        tokensPerS: steps / (wall / 1000),
        p50: percentile(latencies, 50),
        p95: percentile(latencies, 95),
        cores: (used.user + used.system) / 1000 / wall,
        cpuMsPerToken: (used.user + used.system) / 1000 / steps,
      });
    }
  }
  console.log(`concurrency: ${requests} streaming requests of ${tokens} tokens per client, one after the other, best of ${rounds} rounds; ${os.availableParallelism()} cores, load average ${loadBefore.toFixed(1)} → ${os.loadavg()[0]!.toFixed(1)}`);
  console.log(`| clients | ${configs.map((p) => `--parallel ${p}: tokens/s | p50 ms | p95 ms | cores | CPU ms/token`).join(" | ")} |`);
  console.log(`|---:|${configs.map(() => "---:|---:|---:|---:|---:").join("|")}|`);
  for (const level of levels) {
    const cells = configs.map((p) => {
      const r = rows.get(`${p}:${level}`)!;
      return `${r.tokensPerS.toFixed(0)} | ${r.p50.toFixed(0)} | ${r.p95.toFixed(0)} | ${r.cores.toFixed(2)} | ${r.cpuMsPerToken.toFixed(2)}`;
    });
    console.log(`| ${level} | ${cells.join(" | ")} |`);
  }
  const top = Math.max(...levels);
  const low = Math.min(...levels);
  for (const p of configs) {
    console.log(`  --parallel ${p}: ${top} clients / ${low} client = ${(rows.get(`${p}:${top}`)!.tokensPerS / rows.get(`${p}:${low}`)!.tokensPerS).toFixed(2)}× aggregate tokens/s`);
  }
  for (const s of servers) {
    await s.served.close();
    await s.ensemble.dispose();
  }
}

const ensemble = await Ensemble.create({ members: PAIR, threads: 1, parallel: DEFAULT_PARALLEL });
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
console.log(`load: ${clients} concurrent streaming clients, --parallel ${DEFAULT_PARALLEL}, queue ${queue}, ${tokens} tokens each`);
console.log(`  completed ${done.length}, 429 ${clients - done.length}, wall ${wall.toFixed(0)} ms, ${(steps / (wall / 1000)).toFixed(0)} tokens/s aggregate`);
console.log(`  completed latency p50 ${percentile(done.map((r) => r.ms), 50).toFixed(0)} ms, p95 ${percentile(done.map((r) => r.ms), 95).toFixed(0)} ms; first text p50 ${percentile(done.map((r) => r.firstMs), 50).toFixed(0)} ms`);
console.log(`  429 answered in p50 ${percentile(results.filter((r) => !r.ok).map((r) => r.ms), 50).toFixed(1)} ms`);
await served.close();
await ensemble.dispose();

// Remote members: ts656k in-process vs on a real llama.cpp server (loopback, one slot, one thread).
if (llamaServerSkip()) {
  console.log(`remote members: skipped, ${llamaServerSkip()}`);
} else {
  const server = await LlamaServer.start({ model: TS656K, contextSize: 512 });
  const remote = { name: "ts656k", url: server.url, tokenizer: TS656K };
  const rows: [string, Ensemble, Ensemble][] = [
    ["pair, GaC", await Ensemble.create({ members: PAIR, threads: 1 }), await Ensemble.create({ threads: 1, members: [PAIR[0], remote] })],
    ["ts656k alone", await Ensemble.create({ members: [PAIR[1]], threads: 1 }), await Ensemble.create({ threads: 1, members: [remote] })],
  ];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const range = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  for (const [name, local, mixed] of rows) {
    const perStep = async (e: Ensemble) => {
      await e.generate({ text: PROMPT }, { maxTokens: 4 });
      const r = await e.generate({ text: PROMPT }, { maxTokens: 64 });
      const ts656k = r.members.findIndex((m) => m.name === "ts656k");
      return { ms: r.timings.totalMs / r.steps, evaluationMs: r.timings.memberMs.ts656k! / r.members[ts656k]!.evaluations };
    };
    const a: { ms: number; evaluationMs: number }[] = [];
    const b: typeof a = [];
    for (let round = 0; round < rounds; round++) {
      if (round % 2) b.push(await perStep(mixed));
      a.push(await perStep(local));
      if (!(round % 2)) b.push(await perStep(mixed));
    }
    const ms = (xs: typeof a) => range(xs.map((x) => x.ms));
    const evaluation = (xs: typeof a) => range(xs.map((x) => x.evaluationMs));
    console.log(
      `${name}: in-process ${ms(a)} ms/step (ts656k ${evaluation(a)} ms per evaluation), ts656k on llama-server ${ms(b)} ms/step (${evaluation(b)} ms per evaluation): ${range(b.map((x, i) => x.ms / a[i]!.ms))}× the in-process time per step (median and range of ${rounds} rounds)`,
    );
    await Promise.all([local.dispose(), mixed.dispose()]);
  }
  await server.stop();
}
