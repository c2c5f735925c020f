import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getLlamaGpuTypes } from "node-llama-cpp";
import { Ensemble } from "../src/engine/ensemble.js";
import { candidateFor } from "../src/members/gpu-fit.js";
import { GpuPlacementError, placeOnGpu, type PlacementCandidate } from "../src/members/gpu-placement.js";
import { loadRuntime } from "../src/members/runtime.js";
import { defaultThreads, MIN_BYTES_PER_THREAD, threadBudget } from "../src/members/threads.js";
import { createServer } from "../src/server/app.js";
import { PAIR, S260K, TS656K } from "./helpers/models.js";
import { chorus } from "./helpers/chorus-cli.js";

const MiB = 2 ** 20;

/** A model of `layers` equal layers of `perLayer` MiB, plus `context` MiB on the GPU as soon as one layer is there. */
function uniform(name: string, layers: number, perLayer: number, requested: PlacementCandidate["requested"] = "auto", context = 0): PlacementCandidate {
  return {
    name,
    requested,
    contextSize: 1024,
    vramByLayers: Array.from({ length: layers + 1 }, (_, k) => (k * perLayer + (k > 0 ? context : 0)) * MiB),
    cpuBytesByLayers: Array.from({ length: layers + 1 }, (_, k) => (layers - k) * perLayer * MiB),
  };
}

describe("GPU placement of several members", () => {
  test("everything fits: every auto member gets all its layers", () => {
    const placed = placeOnGpu([uniform("a", 10, 100), uniform("b", 20, 50)], 4000 * MiB, "CUDA");
    assert.deepEqual(placed.map((p) => [p.name, p.gpuLayers, p.totalLayers]), [["a", 10, 10], ["b", 20, 20]]);
  });

  test("not everything fits: layers go to whichever member has the most weight left on the CPU", () => {
    // a: 10 × 100 MiB, b: 20 × 50 MiB, 1000 MiB of GPU memory: the weights left on the CPU end up even.
    const placed = placeOnGpu([uniform("a", 10, 100), uniform("b", 20, 50)], 1000 * MiB, "CUDA");
    const [a, b] = placed;
    assert.equal(a!.gpuLayers, 5);
    assert.equal(b!.gpuLayers, 10);
    assert.ok(placed.reduce((sum, p) => sum + p.vramBytes, 0) <= 1000 * MiB);
  });

  test("a member with a fixed count gets it first; the auto members share the rest", () => {
    const placed = placeOnGpu([uniform("big", 10, 100, "max"), uniform("small", 10, 10)], 1050 * MiB, "CUDA");
    assert.deepEqual(placed.map((p) => p.gpuLayers), [10, 5]);
    const counted = placeOnGpu([uniform("big", 10, 100, 3), uniform("small", 10, 10)], 1050 * MiB, "CUDA");
    assert.deepEqual(counted.map((p) => p.gpuLayers), [3, 10]);
  });

  test("fixed counts that do not fit: the error says what each member needs and what to lower", () => {
    assert.throws(
      () => placeOnGpu([uniform("llama8b", 32, 150, "max", 500), uniform("qwen7b", 28, 160, 20, 400)], 6 * 1024 * MiB, "CUDA"),
      (error: Error) => {
        assert.ok(error instanceof GpuPlacementError);
        assert.match(error.message, /do not fit in CUDA's memory \(6\.0 GiB usable\)/);
        assert.match(error.message, /llama8b needs 5\.2 GiB for 32 of 32 layers and a 1024-token context \(gpuLayers: max\), about 150 MiB per layer/);
        assert.match(error.message, /qwen7b needs 3\.5 GiB for 20 of 28 layers/);
        assert.match(error.message, /lower gpuLayers on a member \(gpuLayers: auto splits .*\), lower its contextSize, or set gpu: false/);
        return true;
      },
    );
  });

  test("estimates from node-llama-cpp's GgufInsights on the shared models: one table entry per layer count, growing", async () => {
    const { llama } = await loadRuntime("auto");
    for (const [name, modelPath] of [["s260k", S260K], ["ts656k", TS656K]] as const) {
      const c = await candidateFor(llama, { name, modelPath, gpuLayers: "auto", contextSize: 300 });
      assert.equal(c.contextSize, 512, "rounded up to llama.cpp's multiple of 256");
      assert.ok(c.vramByLayers.length >= 4, `${name}: ${c.vramByLayers.length - 1} layers`);
      for (let k = 1; k < c.vramByLayers.length; k++) {
        assert.ok(c.vramByLayers[k]! > c.vramByLayers[k - 1]!, `${name}: more layers, more GPU memory`);
        assert.ok(c.cpuBytesByLayers[k]! <= c.cpuBytesByLayers[k - 1]!, `${name}: more layers, less on the CPU`);
      }
      const full = placeOnGpu([c], c.vramByLayers.at(-1)!, "CUDA")[0]!;
      assert.equal(full.gpuLayers, full.totalLayers);
      assert.equal(placeOnGpu([c], c.vramByLayers.at(-1)! - 1, "CUDA")[0]!.gpuLayers, full.totalLayers - 1);
    }
  });
});

describe("default CPU threads", () => {
  test("the members' threads stay below the cores; one core is left to everything else", () => {
    assert.equal(threadBudget(1), 1);
    assert.equal(threadBudget(2), 1);
    assert.equal(threadBudget(16), 15);
    for (const cores of [1, 2, 4, 8, 16, 64]) {
      for (const sizes of [[4000], [4000, 4000], [4000, 100, 7000], [1, 1], [1, 1, 6400], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9000]]) {
        const threads = defaultThreads(sizes.map((mib) => ({ cpuBytes: mib * MiB })), cores);
        const total = threads.reduce((a, b) => a + b, 0);
        assert.ok(threads.every((t) => t >= 1));
        assert.ok(total <= Math.max(threadBudget(cores), sizes.length), `${cores} cores, ${sizes}: ${threads}`);
      }
    }
  });

  test("a tiny model, or one whose layers all run on the GPU, gets one thread; large models share the cores by weight", () => {
    assert.deepEqual(defaultThreads([{ cpuBytes: 3 * MiB }], 16), [1]);
    assert.deepEqual(defaultThreads([{ cpuBytes: 0 }, { cpuBytes: 0 }], 16), [1, 1]);
    assert.deepEqual(defaultThreads([{ cpuBytes: 4 * MIN_BYTES_PER_THREAD }], 16), [4]);
    assert.deepEqual(defaultThreads([{ cpuBytes: 4000 * MiB }], 16), [15]);
    assert.deepEqual(defaultThreads([{ cpuBytes: 4000 * MiB }, { cpuBytes: 4000 * MiB }], 16), [7, 7]);
    assert.deepEqual(defaultThreads([{ cpuBytes: 4000 * MiB }, { cpuBytes: 0 }], 16), [14, 1]);
    assert.deepEqual(defaultThreads([{ cpuBytes: 4000 * MiB }, { cpuBytes: 4000 * MiB }], 2), [1, 1]);
  });
});

const gpuTypes = (await getLlamaGpuTypes("supported")).filter((t) => t !== false);
const NO_GPU = gpuTypes.length === 0 ? "no GPU here: node-llama-cpp finds no CUDA, Vulkan or Metal (CI has none; run this file on a GPU machine)" : false;

describe("where the shared pair runs", () => {
  const ensembles: Ensemble[] = [];
  after(async () => {
    await Promise.all(ensembles.map((e) => e.dispose()));
  });

  test("without a GPU, gpu auto runs on the CPU and says why in one line; the backend reaches /health", { skip: NO_GPU === false ? "this machine has a GPU" : false }, async () => {
    const ensemble = await Ensemble.create({ members: PAIR, gpu: "auto" });
    ensembles.push(ensemble);
    const backend = ensemble.backend;
    assert.equal(backend.device, "cpu");
    assert.match(backend.note ?? "", /^gpu auto: no GPU found \(no CUDA or Vulkan libraries on this machine\); running on the CPU \(set gpu: false to skip the check\)$/);
    assert.deepEqual(
      backend.members.map((m) => (m.where === "local" ? [m.name, m.device, m.gpuLayers, m.threads] : [])),
      [["s260k", "cpu", 0, 1], ["ts656k", "cpu", 0, 1]],
    );
    const server = createServer({ models: [{ id: "pair", ensemble }] });
    const health = (await server.app.inject({ method: "GET", url: "/health" })).json();
    assert.deepEqual(health.models.pair.backend, JSON.parse(JSON.stringify(backend)));
    await server.app.close();
    // gpu: false is not a fallback, so it carries no note.
    assert.equal(Ensemble.fromMembers({ members: PAIR, gpu: false }, ensemble.members).backend.note, undefined);
  });

  test("with a GPU, gpu auto puts every layer of both tiny members on it and gives each one CPU thread", { skip: NO_GPU }, async () => {
    const ensemble = await Ensemble.create({ members: PAIR, gpu: "auto" });
    ensembles.push(ensemble);
    const backend = ensemble.backend;
    assert.equal(backend.device, gpuTypes[0]);
    assert.equal(backend.note, undefined);
    for (const m of backend.members) {
      assert.ok(m.where === "local");
      assert.equal(m.device, gpuTypes[0]);
      assert.equal(m.gpuLayers, m.totalLayers, `${m.name}: all ${m.totalLayers} layers on the GPU`);
      assert.equal(m.threads, 1);
    }
    const result = await ensemble.generate({ text: "Once upon a time" }, { maxTokens: 16 });
    assert.equal(result.steps, 16);
    assert.ok(result.text.length > 10, result.text);
  });
});

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples/tinystories.yaml");

describe("--gpu on the command line", () => {
  test("generate --json reports where the members ran; gpu auto without a GPU notes the CPU on stderr, --gpu false does not", { skip: NO_GPU === false ? "this machine has a GPU" : false }, async () => {
    const auto = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "4", "--json");
    assert.equal(auto.code, 0, auto.stderr);
    assert.match(auto.stderr, /^chorus: gpu auto: no GPU found .*; running on the CPU \(set gpu: false to skip the check\)$/m);
    const backend = JSON.parse(auto.stdout).backend;
    assert.equal(backend.requested, "auto");
    assert.equal(backend.device, "cpu");
    assert.deepEqual(backend.members.map((m: { name: string; gpuLayers: number; threads: number }) => [m.name, m.gpuLayers, m.threads]), [["s260k", 0, 1], ["ts656k", 0, 1]]);

    const cpu = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "4", "--json", "--gpu", "false");
    assert.equal(cpu.code, 0, cpu.stderr);
    assert.doesNotMatch(cpu.stderr, /gpu auto/);
    assert.equal(JSON.parse(cpu.stdout).backend.requested, false);
    assert.equal(JSON.parse(cpu.stdout).text, JSON.parse(auto.stdout).text);
  });

  test("a back end that is not there, or a wrong value, fails with the fix", { skip: gpuTypes.includes("cuda") ? "this machine has CUDA" : false }, async () => {
    const cuda = await chorus("generate", "-c", example, "Once", "--max-tokens", "2", "--gpu", "cuda");
    assert.equal(cuda.code, 1);
    assert.match(cuda.stderr, /^chorus: gpu: cuda: node-llama-cpp's CUDA binary does not load on this machine \(.*\) — install the NVIDIA driver and CUDA runtime.*; or use gpu: auto \(the CPU when no GPU works\) or gpu: false$/m);
    const wrong = await chorus("generate", "-c", example, "Once", "--gpu", "cpu");
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /--gpu must be auto, cuda, vulkan, metal or false \(false runs on the CPU\), got 'cpu'/);
  });

  test("chorus bench shows the back end and each member's layers and threads, in the table and in --json", async () => {
    const table = await chorus("bench", "-c", example, "--steps", "2", "--gpu", "false");
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^llama\.cpp on the CPU \(gpu: false, binding: (patched \(fast reads\)|stock)\): s260k 0\/6 layers on the GPU, 1 thread; ts656k 0\/3 layers on the GPU, 1 thread\n\n\| setup \|/);
    const json = await chorus("bench", "-c", example, "--steps", "2", "--json", "--gpu", "false");
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.backend.device, "cpu");
    assert.deepEqual(report.backend.members.map((m: { name: string; totalLayers: number }) => [m.name, m.totalLayers]), [["s260k", 6], ["ts656k", 3]]);
    assert.equal(report.rows.length, 13); // two members alone; GaC, UniTE, bytes/mix, bytes/product, each with and without gating; speculative GaC at k = 2, 4, 8
  });
});
