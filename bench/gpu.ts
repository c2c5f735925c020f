/**
 * chorus on a GPU: each member alone and the ensemble (GaC, UniTE, with and without gating),
 * with the members' layers on the GPU, and how much of an ensemble step the engine's extraction
 * (distributions → candidates, on the CPU) takes once the forward passes are fast.
 *
 *   node --import tsx bench/gpu.ts [--gpu auto] [--steps 48] [--setups pair,generated,large]
 *                                  [--models a.gguf,b.gguf] [--cpu-too] [--out results.json]
 *
 * Setups: `pair` the shared TinyStories pair; `generated` the 32k SPM + 152k Qwen2 presets
 * (dim 512, 4 layers: the vocabulary dominates); `large` generated Llama-3 128k + Qwen2 152k
 * members of dim 2048 and 16 layers (about 2.5 GiB each in f16; made on first use in
 * .bench-models/); `--models` any GGUF files of yours, as one ensemble. `--cpu-too` runs the same
 * rows again with `--gpu false` in a child process (one llama.cpp back end per process) and prints
 * the speed-up. Each setup is measured on its own: one that fails is reported and the rest go on.
 * `--out` writes everything measured so far as JSON after every setup.
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { getLlamaGpuTypes } from "node-llama-cpp";
import { benchEnsemble, benchTable, peakRssMiB, type BenchRow } from "../src/bench/measure.js";
import type { EnsembleSpec } from "../src/engine/ensemble.js";
import { formatBackend, type BackendReport } from "../src/members/backend.js";
import { GPU_SETTINGS, loadRuntime, type GpuSetting } from "../src/members/runtime.js";
import { defaultModelDir, makePresetModel, makeRandomModel, presets } from "./make-model.js";
import { S260K, TS656K } from "../test/helpers/models.js";

const { values } = parseArgs({
  options: {
    gpu: { type: "string", default: "auto" },
    steps: { type: "string", default: "48" },
    setups: { type: "string", default: "pair,generated,large" },
    models: { type: "string" },
    "cpu-too": { type: "boolean", default: false },
    out: { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const gpu = GPU_SETTINGS.find((s) => String(s) === values.gpu);
if (gpu === undefined) throw new Error(`--gpu must be one of ${GPU_SETTINGS.join(", ")}, got ${values.gpu}`);
const STEPS = Number(values.steps);
const PROMPT = "Once upon a time, there was a little girl named Lily. She";
const log = (message: string) => process.stderr.write(message + "\n");

interface SetupResult {
  readonly setup: string;
  readonly backend?: BackendReport;
  readonly rows: readonly BenchRow[];
  readonly seconds: number;
  readonly error?: string;
}

async function setupSpec(name: string): Promise<EnsembleSpec> {
  switch (name) {
    case "pair":
      return { members: [{ name: "s260k", model: S260K, primary: true }, { name: "ts656k", model: TS656K }], contextSize: 1024 };
    case "generated": {
      const spm = await makePresetModel("spm32k");
      const qwen = await makePresetModel("qwen2-152k");
      return { members: [{ name: "spm32k", model: spm.outPath, primary: true }, { name: "qwen152k", model: qwen.outPath }], contextSize: 1024 };
    }
    case "large": {
      const large = { embeddingLength: 2048, layers: 16, heads: 16, kvHeads: 16, feedForwardLength: 5632, outputStd: 4 / Math.sqrt(2048) };
      const make = (preset: "llama3-128k" | "qwen2-152k") => {
        const { description: _description, ...body } = presets[preset];
        return makeRandomModel({ ...body, ...large, outPath: path.join(defaultModelDir, `${preset}-d2048-l16.gguf`) });
      };
      const llama3 = await make("llama3-128k");
      const qwen = await make("qwen2-152k");
      return { members: [{ name: "llama3-2048", model: llama3.outPath, primary: true }, { name: "qwen2-2048", model: qwen.outPath }], contextSize: 1024 };
    }
    case "models": {
      const files = (values.models ?? "").split(",").filter(Boolean);
      if (files.length === 0) throw new Error("--models: give one or more GGUF files, comma-separated");
      return { members: files.map((file, i) => ({ name: path.basename(file, ".gguf").replace(/[^A-Za-z0-9_.-]/g, "-"), model: path.resolve(file), primary: i === 0 })), contextSize: 1024 };
    }
    default:
      throw new Error(`unknown setup ${name}; use pair, generated, large (and --models)`);
  }
}

/** What matters on a GPU: the ensemble against its slowest member alone, and extraction's share of a step. */
function summary(rows: readonly BenchRow[]): string[] {
  const alone = rows.filter((r) => r.system.endsWith(" alone"));
  if (alone.length === 0) return [];
  const slowest = alone.reduce((a, b) => (b.msPerStep > a.msPerStep ? b : a));
  return rows
    .filter((r) => !r.system.endsWith(" alone"))
    .map(
      (r) =>
        `  ${r.system}: ${r.msPerStep.toFixed(2)} ms/step = ${(r.msPerStep / slowest.msPerStep).toFixed(2)}× ${slowest.system} (${slowest.msPerStep.toFixed(2)} ms); ` +
        `members ${r.memberWallMsPerStep.toFixed(2)} ms, extraction ${r.extractionMsPerStep.toFixed(2)} ms = ${((100 * r.extractionMsPerStep) / r.msPerStep).toFixed(1)} % of the step, engine ${(100 * r.engineShare).toFixed(1)} %`,
    );
}

async function measure(setups: readonly string[], gpuSetting: GpuSetting): Promise<SetupResult[]> {
  const results: SetupResult[] = [];
  for (const setup of setups) {
    const started = performance.now();
    let backend: BackendReport | undefined;
    try {
      const spec = await setupSpec(setup);
      log(`${setup}: ${spec.members.map((m) => m.name).join(" + ")}, gpu ${String(gpuSetting)}`);
      const rows = await benchEnsemble({ ...spec, gpu: gpuSetting }, { setup, steps: STEPS, prompt: PROMPT, threshold: 0.5, methods: ["gac", "unite"], log, onBackend: (b) => (backend = b) });
      results.push({ setup, backend, rows, seconds: (performance.now() - started) / 1000 });
    } catch (error) {
      log(`${setup}: failed: ${(error as Error).message}`);
      results.push({ setup, backend, rows: [], seconds: (performance.now() - started) / 1000, error: (error as Error).message });
    }
    if (values.out) writeFileSync(values.out, JSON.stringify({ gpu: gpuSetting, steps: STEPS, results }, null, 2));
  }
  return results;
}

async function cpuRows(setups: readonly string[]): Promise<SetupResult[]> {
  const self = fileURLToPath(import.meta.url);
  const args = ["--import", "tsx", self, "--gpu", "false", "--steps", String(STEPS), "--setups", setups.join(","), "--json", ...(values.models ? ["--models", values.models] : [])];
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 64 * 2 ** 20 });
  return (JSON.parse(stdout) as { results: SetupResult[] }).results;
}

const setups = [...values.setups.split(",").filter(Boolean), ...(values.models ? ["models"] : [])];
const types = await getLlamaGpuTypes("supported");
log(`chorus bench/gpu: ${STEPS} steps per row, ${os.availableParallelism()} cores, node ${process.version}; node-llama-cpp finds: ${types.map(String).join(", ")}`);
const runtime = await loadRuntime(gpu);
if (runtime.note) log(`note: ${runtime.note}`);
if (runtime.device !== "cpu") {
  const vram = await runtime.llama.getVramState();
  log(`GPU: ${(await runtime.llama.getGpuDeviceNames()).join(", ")}; ${(vram.free / 2 ** 30).toFixed(1)} of ${(vram.total / 2 ** 30).toFixed(1)} GiB free`);
}
const results = await measure(setups, gpu);
if (values.json) {
  process.stdout.write(JSON.stringify({ gpu, steps: STEPS, results }, null, 2) + "\n");
} else {
  for (const r of results) {
    process.stdout.write(`\n### ${r.setup} (${r.seconds.toFixed(0)} s)\n\n`);
    if (r.backend) process.stdout.write(`${formatBackend(r.backend)}\n\n`);
    if (r.error) process.stdout.write(`failed: ${r.error}\n`);
    if (r.rows.length > 0) process.stdout.write(`${benchTable(r.rows)}\n\n${summary(r.rows).join("\n")}\n`);
  }
  if (values["cpu-too"]) {
    log("the same rows on the CPU (gpu: false), in a child process…");
    const cpu = await cpuRows(setups).catch((error: Error) => {
      process.stdout.write(`\nCPU rows failed: ${error.message}\n`);
      return [] as SetupResult[];
    });
    process.stdout.write(`\n### ${runtime.device} against the CPU (ms per step)\n\n| setup | system | ${runtime.device} | CPU | speed-up |\n|---|---|---:|---:|---:|\n`);
    for (const r of results) {
      const c = cpu.find((x) => x.setup === r.setup);
      for (const row of r.rows) {
        const cpuRow = c?.rows.find((x) => x.system === row.system);
        process.stdout.write(`| ${r.setup} | ${row.system} | ${row.msPerStep.toFixed(2)} | ${cpuRow ? cpuRow.msPerStep.toFixed(2) : "—"} | ${cpuRow ? (cpuRow.msPerStep / row.msPerStep).toFixed(2) + "×" : "—"} |\n`);
      }
    }
  }
  process.stdout.write(`\npeak RSS ${peakRssMiB().toFixed(0)} MiB\n`);
}
