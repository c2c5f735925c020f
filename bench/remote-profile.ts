/**
 * Where a remote member's step goes: one member alone (or with `--pair`, next to s260k in-process as
 * the primary: GaC with healing), greedy, in-process vs on a real
 * llama-server, `--rounds` times alternating (medians and spread; the machine is shared). Every
 * request is timed in chorus's client (the exchange until the whole answer, then JSON.parse) next to
 * the server's own `timings` (asked for by adding it to `response_fields`), and bare round trips
 * show the server's fixed cost per request. Needs `npm run build:llama-server`.
 * Run: node --import tsx bench/remote-profile.ts [--model path.gguf] [--tokens 64] [--rounds 5] [--pair]
 */
import { parseArgs } from "node:util";
import { Ensemble } from "../src/engine/ensemble.js";
import { RemoteHttp } from "../src/members/remote-http.js";
import { S260K, TS656K } from "../test/helpers/models.js";
import { LlamaServer } from "../test/helpers/llama-server.js";

const { values } = parseArgs({ options: { tokens: { type: "string", default: "64" }, model: { type: "string", default: TS656K }, rounds: { type: "string", default: "5" }, pair: { type: "boolean", default: false } } });
const maxTokens = Number(values.tokens);
const rounds = Number(values.rounds);
const model = values.model!;
const PROMPT = "Once upon a time, there was a little";

interface Exchange {
  path: string;
  bytesOut: number;
  bytesIn: number;
  exchangeMs: number;
  parseMs: number;
  serverMs?: number;
  nProbs?: number;
  nPredict?: number;
}
const exchanges: Exchange[] = [];
let recording = false;

// Times RemoteHttp's own exchanges (a bench-only wrapper of its private `send`).
type Send = (path: string, init: { method: string; body?: string }, timeoutMs: number) => Promise<{ status: number; text: string }>;
const proto = RemoteHttp.prototype as unknown as { send: Send };
const send = proto.send;
proto.send = async function (this: unknown, path, init, timeoutMs) {
  if (!recording) return send.call(this, path, init, timeoutMs);
  const asked = init.body === undefined ? undefined : (JSON.parse(init.body) as Record<string, unknown>);
  const fields = asked?.response_fields;
  const body = Array.isArray(fields) ? JSON.stringify({ ...asked, response_fields: [...(fields as string[]), "timings"] }) : init.body;
  const t0 = performance.now();
  const answer = await send.call(this, path, { ...init, body }, timeoutMs);
  const t1 = performance.now();
  const json = JSON.parse(answer.text) as { timings?: { prompt_ms?: number; predicted_ms?: number } };
  const t2 = performance.now();
  const t = json.timings;
  exchanges.push({
    path,
    bytesOut: body?.length ?? 0,
    bytesIn: answer.text.length,
    exchangeMs: t1 - t0,
    parseMs: t2 - t1,
    serverMs: t ? (t.prompt_ms ?? 0) + (t.predicted_ms ?? 0) : undefined,
    nProbs: asked?.n_probs as number | undefined,
    nPredict: asked?.n_predict as number | undefined,
  });
  return answer;
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const spread = (xs: number[], digits = 2) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

const server = await LlamaServer.start({ model, contextSize: 512 });
const primary = values.pair ? [{ name: "s260k", model: S260K, primary: true }] : [];
const local = await Ensemble.create({ threads: 1, members: [...primary, { name: "m", model }] });
const remote = await Ensemble.create({ threads: 1, members: [...primary, { name: "m", url: server.url, tokenizer: model }] });
const perStep = async (e: Ensemble, record: boolean) => {
  await e.generate({ text: PROMPT }, { maxTokens: 4 });
  recording = record;
  const r = await e.generate({ text: PROMPT }, { maxTokens });
  recording = false;
  return { ms: r.timings.totalMs / r.steps, memberMs: r.timings.memberMs.m! / r.steps, steps: r.steps };
};
const inProcess: number[] = [];
const onServer: number[] = [];
const ratios: number[] = [];
const outside: number[] = [];
let remoteSteps = 0;
for (let round = 0; round < rounds; round++) {
  const from = exchanges.length;
  // Alternate which goes first, so that a burst of load elsewhere does not favour one side.
  const b = round % 2 ? await perStep(remote, true) : undefined;
  const a = await perStep(local, false);
  const r = b ?? (await perStep(remote, true));
  inProcess.push(a.ms);
  onServer.push(r.ms);
  ratios.push(r.ms / a.ms);
  const wire = exchanges.slice(from).reduce((sum, x) => sum + x.exchangeMs + x.parseMs, 0) / r.steps;
  outside.push(r.memberMs - wire);
  remoteSteps += r.steps;
}
const completions = exchanges.filter((x) => x.path === "/completion");
const f = (x: number) => x.toFixed(3);
const histogram = (xs: unknown[]) => {
  const counts = new Map<string, number>();
  for (const x of xs) counts.set(String(x), (counts.get(String(x)) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([x, n]) => `${x} ×${n}`).join(", ");
};
console.log(`model ${model}, ${maxTokens} greedy steps ${values.pair ? "next to s260k (GaC, healing)" : "alone"}, ${rounds} rounds: median (min–max)`);
console.log(`  in-process ${spread(inProcess)} ms/step; on llama-server ${spread(onServer)} ms/step; ratio ${spread(ratios)}×`);
console.log(
  `  requests: ${(exchanges.length / remoteSteps).toFixed(2)} per step (${[...new Set(exchanges.map((x) => x.path))].join(", ")}); n_probs ${histogram(completions.map((x) => x.nProbs))}; n_predict ${histogram(completions.map((x) => x.nPredict))}; ${median(completions.map((x) => x.bytesOut)).toFixed(0)} B out, ${median(completions.map((x) => x.bytesIn)).toFixed(0)} B back`,
);
console.log(
  `  per /completion: exchange until the whole answer ${f(median(completions.map((x) => x.exchangeMs)))} ms, of which the server's prompt_ms + predicted_ms ${f(median(completions.map((x) => x.serverMs ?? NaN)))}; JSON.parse ${f(median(completions.map((x) => x.parseMs)))} ms`,
);
console.log(`  chorus's time per step outside the exchanges (request body, conversion to a distribution, engine): ${spread(outside, 3)} ms`);

// Bare round trips through RemoteHttp (JSON.parse included), interleaved, on a cached prompt.
const bare = new RemoteHttp("bare", server.url, {});
const { tokens } = (await bare.post("/tokenize", { content: PROMPT })) as { tokens: number[] };
const cases: [string, () => Promise<unknown>][] = [["GET /health", () => bare.get("/health")]];
for (const n of [0, 1, 32, 128]) {
  const body = { prompt: tokens, n_predict: 1, n_probs: n, cache_prompt: true, temperature: -1, post_sampling_probs: false, response_fields: ["model", "completion_probabilities"] };
  cases.push([`n_probs ${n}`, () => bare.post("/completion", body)]);
}
const bareMs = new Map<string, number[]>();
for (let round = 0; round < 5; round++) {
  for (const [name, ask] of cases) {
    for (let i = 0; i < 5; i++) await ask();
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) await ask();
    bareMs.set(name, [...(bareMs.get(name) ?? []), (performance.now() - t0) / 50]);
  }
}
console.log(`  bare round trips: ${cases.map(([name]) => `${name} ${spread(bareMs.get(name)!, 3)} ms`).join("; ")} (POST /completion, n_predict 1)`);
bare.close();

await Promise.all([local.dispose(), remote.dispose()]);
await server.stop();
