/**
 * Speculative ensembling against the plain ensemble, greedy GaC, in one run: ms per step, the
 * share of drafted pieces the ensemble kept, llama.cpp evaluations per step for each member, and
 * whether the text is the plain ensemble's. Setups: the shared pair (each member drafting), the
 * same model listed twice (every draft kept: the mechanical bound), and a cheap drafter with a
 * costly generated verifier (the setting speculative decoding is made for). Every run starts from
 * empty kept reads (LlamaMember.forgetReads), since the runs repeat the same prompts.
 * Run: node --import tsx bench/speculate.ts [--steps 96]
 */
import { parseArgs } from "node:util";
import { Ensemble, type EnsembleSpec, type GenerateOptions } from "../src/engine/ensemble.js";
import { LlamaMember } from "../src/members/llama.js";
import { makePresetModel } from "./make-model.js";
import { S260K, TS656K } from "../test/helpers/models.js";

const { values } = parseArgs({ options: { steps: { type: "string", default: "96" }, quick: { type: "boolean", default: false } } });
const STEPS = Number(values.steps);
const PROMPTS = ["Once upon a time, there was a little girl named Lily. She", "The dog ran to the park and"];

async function setup(label: string, spec: EnsembleSpec, drafters: readonly string[], ks: readonly number[]): Promise<void> {
  // speculate in the spec: members get a side sequence per generation (steps off the drafted batch are read there).
  const ensemble = await Ensemble.create({ ...spec, threads: 1, contextSize: 1024, speculate: { k: 4, draft: drafters[0] } });
  // Kept reads would serve a repeated prompt: every run starts from empty caches.
  const forget = () => ensemble.forgetReads();
  const evaluations = () => ensemble.members.map((m) => (m instanceof LlamaMember ? m.readCounts.evaluations : 0));
  const run = async (speculate: GenerateOptions["speculate"]) => {
    let ms = 0;
    let steps = 0;
    let drafted = 0;
    let accepted = 0;
    const texts: string[] = [];
    const before = evaluations();
    for (const prompt of PROMPTS) {
      await forget();
      const r = await ensemble.generate({ text: prompt }, { method: "gac", maxSteps: STEPS, maxTokens: Infinity, stop: [], speculate });
      ms += r.timings.totalMs;
      steps += r.steps;
      drafted += r.speculation?.drafted ?? 0;
      accepted += r.speculation?.accepted ?? 0;
      texts.push(r.text);
    }
    const calls = evaluations().map((n, i) => (n - before[i]!) / steps);
    return { msPerStep: ms / steps, kept: drafted ? accepted / drafted : NaN, calls, texts };
  };
  try {
    await ensemble.generate({ text: PROMPTS[0]! }, { maxSteps: 4 }); // warm-up
    const names = ensemble.members.map((m) => m.name);
    const alone: Record<string, number> = {};
    for (const name of names) {
      await forget();
      const r = await ensemble.generate({ text: PROMPTS[0]! }, { only: name, maxSteps: STEPS, maxTokens: Infinity, stop: [] });
      alone[name] = r.timings.totalMs / r.steps;
    }
    const plain = await run(null);
    const slowest = Math.max(...Object.values(alone));
    const line = (system: string, r: typeof plain) =>
      `| ${label} | ${system} | ${r.msPerStep.toFixed(2)} | ${(plain.msPerStep / r.msPerStep).toFixed(2)} | ${(r.msPerStep / slowest).toFixed(2)} | ${Number.isNaN(r.kept) ? "" : `${(100 * r.kept).toFixed(0)} %`} | ${r.calls.map((c, i) => `${names[i]} ${c.toFixed(2)}`).join(", ")} | ${r.texts.every((t, i) => t === plain.texts[i]) ? "yes" : "no"} |`;
    console.log(`| ${label} | alone | ${names.map((n) => `${n} ${alone[n]!.toFixed(2)}`).join(", ")} | | | | | |`);
    console.log(line("plain GaC", plain));
    for (const draft of drafters) for (const k of ks) console.log(line(`k=${k}, ${draft} drafts`, await run({ k, draft })));
  } finally {
    await ensemble.dispose();
  }
}

console.log("| setup | system | ms/step | speed-up over plain | step / slowest alone | drafts kept | llama.cpp evaluations per step | same text as plain |");
console.log("|---|---|---:|---:|---:|---:|---|---|");
const ks = values.quick ? [4] : [2, 4, 8];
await setup("pair", { members: [{ name: "s260k", model: S260K, primary: true }, { name: "ts656k", model: TS656K }] }, ["s260k", "ts656k"], ks);
await setup("ts656k twice", { members: [{ name: "a", model: TS656K, primary: true }, { name: "b", model: TS656K }] }, ["a"], ks);
const big = await makePresetModel("spm32k");
await setup(
  "s260k (weight 3) + generated spm32k",
  { members: [{ name: "s260k", model: S260K, primary: true, weight: 3 }, { name: "spm32k", model: big.outPath }] },
  ["s260k"],
  ks,
);
