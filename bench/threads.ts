/**
 * How many CPU threads a member should get: each model decoding alone with 1, 2, … threads (up to
 * the cores), and the pair decoding together, measured through chorus's own engine
 * (member ms per greedy step). Rounds alternate the thread counts, so each ratio compares runs made
 * under the same load; `--load N` adds N busy processes (what other work on the machine does).
 *
 *   node --import tsx bench/threads.ts [--rounds 5] [--steps 48] [--load 0,1] [--models tiny|all]
 *
 * `all` adds the generated members (make them first: node --import tsx bench/make-model.ts
 * --preset spm32k, and --vocab ../shared/vocab/ggml-vocab-llama-spm.gguf --dim 1024 --layers 12
 * --heads 16 --ffn 2816 --out .bench-models/spm32k-d1024-l12.gguf).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Ensemble } from "../src/engine/ensemble.js";
import { S260K, TS656K } from "../test/helpers/models.js";
import { defaultModelDir } from "./make-model.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    steps: { type: "string", default: "48" },
    load: { type: "string", default: "0,1" },
    models: { type: "string", default: "all" },
  },
});
const ROUNDS = Number(values.rounds);
const STEPS = Number(values.steps);
const LOADS = values.load.split(",").map(Number);
const CORES = os.availableParallelism();
const PROMPT = "Once upon a time, there was a little girl named Lily. She";
const THREADS = Array.from({ length: CORES }, (_, i) => i + 1);

const models = [
  { name: "s260k", model: S260K },
  { name: "ts656k", model: TS656K },
  ...(values.models === "all"
    ? [
        { name: "spm32k", model: path.join(defaultModelDir, "spm32k.gguf") },
        { name: "spm32k-d1024-l12", model: path.join(defaultModelDir, "spm32k-d1024-l12.gguf") },
      ].filter((m) => existsSync(m.model) || (process.stderr.write(`skipping ${m.name}: ${m.model} is missing (see the header of this file)\n`), false))
    : []),
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Busy processes that exit by themselves once this one is gone (checked every 200 ms). */
const BUSY = "const parent = process.ppid; for (;;) { const t = Date.now(); while (Date.now() - t < 200); try { process.kill(parent, 0); } catch { process.exit(0); } }";

function startLoad(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ["-e", BUSY], { stdio: "ignore" }));
}

/** Member wall time per step of one greedy run (llama.cpp's forward passes and logit reads). */
async function memberMsPerStep(ensemble: Ensemble): Promise<number> {
  const r = await ensemble.generate({ text: PROMPT }, { maxTokens: STEPS, stop: [], sampling: { temperature: 0 }, gate: null });
  return (r.timings.totalMs - r.timings.engineMs) / r.steps;
}

async function compare(label: string, spec: (threads: number) => Parameters<typeof Ensemble.create>[0], counts: number[]) {
  const ensembles = [];
  for (const threads of counts) ensembles.push(await Ensemble.create(spec(threads)));
  try {
    for (const e of ensembles) await e.generate({ text: PROMPT }, { maxTokens: 4, gate: null }); // warm-up
    const samples: number[][] = counts.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < ensembles.length; i++) samples[i]!.push(await memberMsPerStep(ensembles[i]!));
    }
    const medians = samples.map(median);
    const ratios = samples.slice(1).map((s) => s.map((ms, round) => ms / samples[0]![round]!));
    const cells = counts.map((t, i) => `${t}: ${medians[i]!.toFixed(2)} ms`).join(" · ");
    const ratioCells = ratios
      .map((r, i) => `${counts[i + 1]}/${counts[0]}: ${median(r).toFixed(2)}× (${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)})`)
      .join(" · ");
    console.log(`| ${label} | ${cells} | ${ratioCells} |`);
  } finally {
    for (const e of ensembles) await e.dispose();
  }
}

console.log(`${CORES} cores, ${ROUNDS} rounds × ${STEPS} greedy steps, member ms per step (median; ratio range over rounds)`);
for (const load of LOADS) {
  const busy = startLoad(load);
  try {
    console.log(`\n### ${load} busy process(es) added; load average before: ${os.loadavg()[0].toFixed(2)}\n`);
    console.log("| setup | threads per member: ms/step | ratio to the first (median, range) |\n|---|---|---|");
    for (const m of models) {
      const mib = (statSync(m.model).size / 2 ** 20).toFixed(1);
      await compare(`${m.name} alone (${mib} MiB)`, (threads) => ({ members: [m], threads, contextSize: 512 }), THREADS);
    }
    const pairs = [models.slice(0, 2), models.slice(2, 4)].filter((p) => p.length === 2);
    for (const pair of pairs) {
      // Each member with 1 thread fits the cores; with all cores each, the members oversubscribe them.
      await compare(`${pair.map((m) => m.name).join(" + ")} together`, (threads) => ({ members: pair, threads, contextSize: 512 }), [1, CORES]);
    }
  } finally {
    for (const child of busy) child.kill();
  }
}
