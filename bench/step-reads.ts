/**
 * What a GaC step asks of each member, with and without token healing: ms per step, the engine's
 * share, and per member the llama.cpp evaluations, positions decoded and positions served from
 * kept reads per step. Greedy, every run from empty kept reads, two runs per row.
 * Setups: the shared pair, and the generated 32k SPM + 152k Qwen2 members.
 *
 *   node --import tsx bench/step-reads.ts [--steps 64] [--setups pair,generated]
 */
import { parseArgs } from "node:util";
import { Ensemble, type EnsembleSpec } from "../src/engine/ensemble.js";
import { LlamaMember } from "../src/members/llama.js";
import { makePresetModel } from "./make-model.js";
import { PAIR } from "../test/helpers/models.js";

const { values } = parseArgs({ options: { steps: { type: "string", default: "64" }, setups: { type: "string", default: "pair,generated" } } });
const STEPS = Number(values.steps);
const PROMPT = "Once upon a time, there was a little girl named Lily. She";

async function setup(label: string, spec: EnsembleSpec): Promise<void> {
  const ensemble = await Ensemble.create({ ...spec, threads: 1, contextSize: 1024, gpu: false });
  try {
    await ensemble.generate({ text: PROMPT }, { maxSteps: 4 }); // warm-up
    for (const heal of [true, false]) {
      for (let run = 0; run < 2; run++) {
        await ensemble.forgetReads();
        const before = ensemble.members.map((m) => ({ ...(m as LlamaMember).readCounts }));
        const r = await ensemble.generate({ text: PROMPT }, { method: "gac", maxSteps: STEPS, maxTokens: Infinity, stop: [], heal, speculate: null });
        const perStep = (n: number) => (n / r.steps).toFixed(2);
        const members = ensemble.members.map((m, i) => {
          const c = (m as LlamaMember).readCounts;
          const b = before[i]!;
          return `${m.name}: ${perStep(c.evaluations - b.evaluations)} evaluations, ${perStep(c.decoded - b.decoded)} decoded, ${perStep(c.served - b.served)} served`;
        });
        console.log(`| ${label} | ${heal ? "on" : "off"} | ${perStep(r.timings.totalMs)} | ${perStep(r.timings.engineMs)} | ${members.join("; ")} |`);
      }
    }
  } finally {
    await ensemble.dispose();
  }
}

console.log("| setup | healing | ms/step | engine ms/step | per member, per step |");
console.log("|---|---|---:|---:|---|");
const setups = values.setups!.split(",");
if (setups.includes("pair")) await setup("pair", { members: [...PAIR] });
if (setups.includes("generated")) {
  const spm = await makePresetModel("spm32k");
  const qwen = await makePresetModel("qwen2-152k");
  await setup("32k + 152k", { members: [{ name: "spm32k", model: spm.outPath, primary: true }, { name: "qwen152k", model: qwen.outPath }] });
}
