/**
 * `npm run bench`: speed of each member alone and of the ensemble (GaC and UniTE, with and without
 * gating), on the shared TinyStories pair and on generated members with realistic vocabularies
 * (32k SentencePiece and 152k Qwen2 byte-level BPE, random weights). Prints a table, and JSON with
 * --json. The measuring itself is `src/bench/measure.ts`, shared with `chorus bench`.
 */
import os from "node:os";
import { benchEnsemble, benchRatios, benchTable, peakRssMiB, type BenchRow } from "../src/bench/measure.js";
import { formatBackend, type BackendReport } from "../src/members/backend.js";
import { makePresetModel } from "./make-model.js";
import { S260K, TS656K } from "../test/helpers/models.js";

const json = process.argv.includes("--json");
const stepsArg = process.argv.indexOf("--steps");
const STEPS = stepsArg > 0 ? Number(process.argv[stepsArg + 1]) : 64;
const PROMPT = "Once upon a time, there was a little girl named Lily. She";

function log(message: string): void {
  process.stderr.write(message + "\n");
}

log(`chorus bench: ${STEPS} steps per run, ${os.availableParallelism()} cores, node ${process.version}`);
const rows: BenchRow[] = [];
const backends: { setup: string; backend: BackendReport }[] = [];
rows.push(
  ...(await benchEnsemble(
    {
      members: [
        { name: "s260k", model: S260K, primary: true },
        { name: "ts656k", model: TS656K },
      ],
      contextSize: 1024,
      // Side sequences for the speculative rows (see src/bench/measure.ts).
      speculate: { k: 4 },
    },
    { setup: "TinyStories pair (512 + 2048 tokens)", steps: STEPS, prompt: PROMPT, threshold: 0.9, log, onBackend: (backend) => backends.push({ setup: "TinyStories pair", backend }) },
  )),
);
log("generating the random-weight members (kept in .bench-models/)…");
const spm = await makePresetModel("spm32k");
const qwen = await makePresetModel("qwen2-152k");
rows.push(
  ...(await benchEnsemble(
    {
      members: [
        { name: "spm32k", model: spm.outPath, primary: true },
        { name: "qwen152k", model: qwen.outPath },
      ],
      contextSize: 1024,
      speculate: { k: 4 },
    },
    { setup: "generated 32k SPM + 152k Qwen2 (dim 512, 4 layers, f16)", steps: STEPS, prompt: PROMPT, threshold: 0.5, log, onBackend: (backend) => backends.push({ setup: "generated members", backend }) },
  )),
);
if (json) process.stdout.write(JSON.stringify({ steps: STEPS, peakRssMiB: peakRssMiB(), backends, rows }, null, 2) + "\n");
else process.stdout.write(`${backends.map((b) => `${b.setup}: ${formatBackend(b.backend)}`).join("\n")}\n\n${benchTable(rows)}\n\n${benchRatios(rows)}\n\npeak RSS ${peakRssMiB().toFixed(0)} MiB\n`);
