/**
 * `npm run bench`: speed of each member alone and of the ensemble (GaC, GaC gated, UniTE), on the
 * shared TinyStories pair and on generated members with realistic vocabularies (32k SentencePiece
 * and 152k Qwen2 byte-level BPE, random weights). Prints a table, and JSON with --json.
 *
 * "engine" is everything that is not a member's `distributions` call (forward pass plus llama.cpp's
 * logit extraction): tokenization, healing, combination, bounds, sampling, sync bookkeeping.
 */
import os from "node:os";
import { Ensemble, type GenerateOptions, type GenerationResult } from "../src/engine/ensemble.js";
import { makePresetModel } from "./make-model.js";
import { S260K, TS656K } from "../test/helpers/models.js";

interface Row {
  setup: string;
  system: string;
  steps: number;
  tokensPerSecond: number;
  msPerStep: number;
  memberWallMsPerStep: number;
  engineMsPerStep: number;
  engineShare: number;
  ensembledShare: number;
  escalatedSteps: number;
}

const json = process.argv.includes("--json");
const stepsArg = process.argv.indexOf("--steps");
const STEPS = stepsArg > 0 ? Number(process.argv[stepsArg + 1]) : 64;
const PROMPT = "Once upon a time, there was a little girl named Lily. She";

function log(message: string): void {
  process.stderr.write(message + "\n");
}

function row(setup: string, system: string, r: GenerationResult): Row {
  const memberWall = r.timings.totalMs - r.timings.engineMs;
  return {
    setup,
    system,
    steps: r.steps,
    tokensPerSecond: (1000 * r.steps) / r.timings.totalMs,
    msPerStep: r.timings.totalMs / r.steps,
    memberWallMsPerStep: memberWall / r.steps,
    engineMsPerStep: r.timings.engineMs / r.steps,
    engineShare: r.timings.engineMs / r.timings.totalMs,
    ensembledShare: r.steps ? r.ensembledSteps / r.steps : 0,
    escalatedSteps: r.escalatedSteps,
  };
}

async function measure(setup: string, members: { name: string; model: string; primary?: boolean }[], threshold: number): Promise<Row[]> {
  const ensemble = await Ensemble.create({ members, maxTokens: STEPS, contextSize: 1024 });
  const rows: Row[] = [];
  const runs: [string, GenerateOptions][] = [
    ...members.map((m): [string, GenerateOptions] => [`${m.name} alone`, { only: m.name }]),
    ["GaC", { method: "gac", gate: null }],
    [`GaC gated ${threshold}`, { method: "gac", gate: { threshold } }],
    ["UniTE", { method: "unite", gate: null }],
  ];
  try {
    await ensemble.generate({ text: PROMPT }, { maxTokens: 4 }); // warm-up
    for (const [system, options] of runs) {
      // Every run generates exactly STEPS steps (no stop on end), so the rows compare like with like.
      const result = await ensemble.generate({ text: PROMPT }, { ...options, maxTokens: STEPS });
      const r = row(setup, system, result);
      rows.push(r);
      log(`  ${setup} · ${system}: ${r.tokensPerSecond.toFixed(1)} tok/s, engine ${r.engineMsPerStep.toFixed(2)} ms/step (${(100 * r.engineShare).toFixed(1)} %)`);
    }
  } finally {
    await ensemble.dispose();
  }
  return rows;
}

function table(rows: Row[]): string {
  const header = "| setup | system | steps | tok/s | ms/step | members ms/step | engine ms/step | engine share | ensembled | escalated |";
  const line = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|";
  const body = rows.map(
    (r) =>
      `| ${r.setup} | ${r.system} | ${r.steps} | ${r.tokensPerSecond.toFixed(1)} | ${r.msPerStep.toFixed(2)} | ${r.memberWallMsPerStep.toFixed(2)} | ${r.engineMsPerStep.toFixed(2)} | ${(100 * r.engineShare).toFixed(1)} % | ${(100 * r.ensembledShare).toFixed(0)} % | ${r.escalatedSteps} |`,
  );
  return [header, line, ...body].join("\n");
}

log(`chorus bench: ${STEPS} steps per run, ${os.availableParallelism()} cores, node ${process.version}`);
const rows: Row[] = [];
rows.push(
  ...(await measure(
    "TinyStories pair (512 + 2048 tokens)",
    [
      { name: "s260k", model: S260K, primary: true },
      { name: "ts656k", model: TS656K },
    ],
    0.9,
  )),
);
log("generating the random-weight members (kept in .bench-models/)…");
const spm = await makePresetModel("spm32k");
const qwen = await makePresetModel("qwen2-152k");
rows.push(
  ...(await measure(
    "generated 32k SPM + 152k Qwen2 (dim 512, 4 layers, f16)",
    [
      { name: "spm32k", model: spm.outPath, primary: true },
      { name: "qwen152k", model: qwen.outPath },
    ],
    0.5,
  )),
);
const peakRssMiB = process.resourceUsage().maxRSS / 1024;
if (json) process.stdout.write(JSON.stringify({ steps: STEPS, peakRssMiB, rows }, null, 2) + "\n");
else process.stdout.write(`${table(rows)}\n\npeak RSS ${peakRssMiB.toFixed(0)} MiB\n`);
