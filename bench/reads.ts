/**
 * The cost of reading a position (top k + total weight + requested ids) with node-llama-cpp's stock
 * binding and with chorus's patched one (npm run build:llama-addon), and what it does to a member
 * generating alone: node-llama-cpp's own greedy loop (`sequence.evaluate`) against chorus's engine
 * with one member (`--only`), on the generated models.
 *
 *   node --import tsx bench/reads.ts [--presets spm32k,llama3-128k,qwen2-152k] [--tokens 48] [--repeat 3] [--threads 1]
 *
 * Each (model, binding) runs in its own child process (one process loads one binding); the children
 * of one repetition alternate stock and patched. Within a child the two loops alternate twice and
 * each keeps its faster run. Prints ms/token, the ratio own-loop ms / --only ms (1 = as fast as
 * node-llama-cpp alone), and the per-position read cost (a read's median time minus a forward pass
 * reading only the sampled token through node-llama-cpp; under the patched binding the read takes
 * chorus's direct path, which skips node-llama-cpp's sampler, so it can cost less than that step);
 * medians over the repetitions with their spread.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Token } from "node-llama-cpp";
import { Ensemble } from "../src/engine/ensemble.js";
import { loadRuntime } from "../src/members/runtime.js";
import { directEvaluator } from "../src/members/direct-reads.js";
import { makePresetModel, type PresetName } from "./make-model.js";
import { timeOnlyLoop, timeOwnLoop } from "./loops.js";

const PROMPT = "Once upon a time, there was a little girl named Lily. She";
// What chorus asks a member for at each step (`--only` reads the top 128 and the ids it needs).
const READ_TOP = 128;
const READ_IDS = 34;

interface ChildResult {
  readonly binding: string;
  readonly ownMsPerToken: number;
  readonly onlyMsPerToken: number;
  readonly forwardMs: number;
  readonly readMs: number;
}

const { values } = parseArgs({
  options: {
    presets: { type: "string", default: "spm32k,llama3-128k,qwen2-152k" },
    tokens: { type: "string", default: "48" },
    repeat: { type: "string", default: "3" },
    threads: { type: "string", default: "1" },
    child: { type: "string" },
    model: { type: "string" },
  },
});
const TOKENS = Number(values.tokens);
const THREADS = Number(values.threads);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** node-llama-cpp's own greedy generation loop: ms per token after the first. */
async function ownLoop(modelPath: string): Promise<number> {
  const runtime = await loadRuntime(false);
  const model = await runtime.llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 1024, threads: THREADS });
  try {
    return (await timeOwnLoop(context.getSequence(), model.tokenize(PROMPT), TOKENS - 1)).msPerToken;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

/** chorus's engine with the one member (`chorus generate --only`): ms per step after the first. */
async function onlyLoop(modelPath: string): Promise<number> {
  const ensemble = await Ensemble.create({ members: [{ name: "m", model: modelPath, primary: true }], gpu: false, threads: THREADS, contextSize: 1024 });
  try {
    return (await timeOnlyLoop(ensemble, "m", PROMPT, TOKENS - 1)).msPerToken;
  } finally {
    await ensemble.dispose();
  }
}

/** Median ms of a one-token evaluation reading `generateNext`. */
async function readCost(modelPath: string): Promise<{ forwardMs: number; readMs: number }> {
  const runtime = await loadRuntime(false);
  const model = await runtime.llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 1024, threads: THREADS });
  try {
    const sequence = context.getSequence();
    const ids = model.tokenize(PROMPT + " loved to play outside in the park with her friends.");
    const probe = await sequence.controlledEvaluate([[ids[0]!, { generateNext: { probabilities: true } }]]);
    const size = probe[0]?.next?.probabilities?.size ?? 32000;
    const extra = Array.from({ length: READ_IDS }, (_, i) => Math.floor((i * size) / READ_IDS) + 3) as Token[];
    const time = async (generateNext: object): Promise<number> => {
      await sequence.clearHistory();
      await sequence.evaluateWithoutGeneratingNewTokens(ids.slice(0, 4));
      const times: number[] = [];
      for (let i = 0; i < 24; i++) {
        const token = ids[4 + (i % (ids.length - 4))]!;
        const started = performance.now();
        await sequence.controlledEvaluate([[token, { generateNext }]]);
        if (i >= 4) times.push(performance.now() - started);
      }
      return median(times);
    };
    // chorus reads through the patched binding's direct path when it is loaded (src/members/direct-reads.ts).
    const direct = directEvaluator(sequence);
    const timeRead = async (): Promise<number> => {
      if (!direct) return time({ logits: { filter: { tokens: extra, includeTop: READ_TOP } }, totalLogitWeight: true });
      await sequence.clearHistory();
      await sequence.evaluateWithoutGeneratingNewTokens(ids.slice(0, 4));
      const ask = new Map([[0, { topK: READ_TOP, ids: Uint32Array.from(extra), row: false }]]);
      const times: number[] = [];
      for (let i = 0; i < 24; i++) {
        const started = performance.now();
        await direct([ids[4 + (i % (ids.length - 4))]!], ask);
        if (i >= 4) times.push(performance.now() - started);
      }
      return median(times);
    };
    const forward = [await time({ token: true })];
    const read = [await timeRead()];
    forward.push(await time({ token: true }));
    read.push(await timeRead());
    const forwardMs = Math.min(...forward);
    return { forwardMs, readMs: Math.min(...read) - forwardMs };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

async function child(modelPath: string): Promise<void> {
  const runtime = await loadRuntime(false);
  const own: number[] = [];
  const only: number[] = [];
  for (let i = 0; i < 2; i++) {
    own.push(await ownLoop(modelPath));
    only.push(await onlyLoop(modelPath));
  }
  const { forwardMs, readMs } = await readCost(modelPath);
  const result: ChildResult = { binding: runtime.binding, ownMsPerToken: Math.min(...own), onlyMsPerToken: Math.min(...only), forwardMs, readMs };
  process.stdout.write(JSON.stringify(result) + "\n");
}

function runChild(modelPath: string, stock: boolean): ChildResult {
  const env = { ...process.env };
  if (stock) env.CHORUS_STOCK_BINDING = "1";
  else delete env.CHORUS_STOCK_BINDING;
  const script = fileURLToPath(import.meta.url);
  const out = spawnSync(process.execPath, ["--import", "tsx", script, "--child", "1", "--model", modelPath, "--tokens", String(TOKENS), "--threads", String(THREADS)], { env, encoding: "utf8" });
  if (out.status !== 0) throw new Error(`child (${stock ? "stock" : "patched"}) failed: ${out.stderr}`);
  return JSON.parse(out.stdout.trim().split("\n").pop()!) as ChildResult;
}

function spread(xs: readonly number[], digits = 2): string {
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

async function parent(): Promise<void> {
  const presets = values.presets!.split(",").map((p) => p.trim()) as PresetName[];
  const repeat = Number(values.repeat);
  process.stderr.write(`bench/reads: ${TOKENS} tokens per loop, ${THREADS} thread(s), ${repeat} repetition(s); read = top ${READ_TOP} + ${READ_IDS} ids + total weight\n`);
  const lines = ["model        binding  own loop ms/tok   --only ms/tok     --only/own (speed)  forward ms   read ms"];
  for (const preset of presets) {
    const made = await makePresetModel(preset);
    const results: Record<"stock" | "patched", ChildResult[]> = { stock: [], patched: [] };
    for (let r = 0; r < repeat; r++) {
      for (const stock of r % 2 === 0 ? [true, false] : [false, true]) {
        const result = runChild(made.outPath, stock);
        const expected = stock ? "stock" : "patched";
        if (result.binding !== expected) throw new Error(`a child meant for the ${expected} binding ran the ${result.binding} one (is the patched binding built? npm run build:llama-addon)`);
        results[expected].push(result);
        process.stderr.write(`  ${preset} ${expected}: own ${result.ownMsPerToken.toFixed(2)} ms, --only ${result.onlyMsPerToken.toFixed(2)} ms, read ${result.readMs.toFixed(2)} ms\n`);
      }
    }
    for (const binding of ["stock", "patched"] as const) {
      const rs = results[binding];
      lines.push(
        [
          preset.padEnd(12),
          binding.padEnd(8),
          spread(rs.map((r) => r.ownMsPerToken)).padEnd(17),
          spread(rs.map((r) => r.onlyMsPerToken)).padEnd(17),
          spread(rs.map((r) => r.ownMsPerToken / r.onlyMsPerToken)).padEnd(19),
          spread(rs.map((r) => r.forwardMs)).padEnd(12),
          spread(rs.map((r) => r.readMs)),
        ].join(" "),
      );
    }
  }
  process.stdout.write(lines.join("\n") + "\n");
}

if (values.child) await child(values.model!);
else await parent();
