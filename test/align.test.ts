/**
 * EVA and DeePEn on the shared TinyStories models: the maps and relative representations, the
 * alignment cache (corrupt/truncated/unwritable), the `chorus align` command, and generation.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { appendFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { buildEvaMap } from "../src/align/eva-map.js";
import { buildRelative } from "../src/align/deepen-relative.js";
import { locateEmbeddings, readMatrix } from "../src/align/gguf-tensors.js";
import { sharedSurfaces } from "../src/align/shared-surfaces.js";
import { prepareAlignment } from "../src/align/cache.js";
import { TokenKind, vocabularyFromGguf } from "../src/tokens/vocabulary.js";
import { topIndexes } from "../src/align/sparse-rows.js";
import { Ensemble, type EnsembleSpec } from "../src/engine/ensemble.js";
import { SHARED, S260K, TS656K } from "./helpers/models.js";
import { gguf, writeGguf } from "../bench/gguf-writer.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PROMPT = "Once upon a time, there was a little";
let cacheDir: string;
before(() => { cacheDir = mkdtempSync(path.join(os.tmpdir(), "chorus-align-")); });
after(() => rmSync(cacheDir, { recursive: true, force: true }));

async function embeddings(model: string) {
  const e = await locateEmbeddings(model);
  const load = (t: typeof e.input) => ({ data: readMatrix(t), rows: t.rows, width: t.width });
  return { vocabulary: vocabularyFromGguf(e.info.metadata), input: () => load(e.input), output: () => load(e.output) };
}

describe("EVA map", () => {
  test("the same model twice: every ordinary token maps to itself", async () => {
    const m = await embeddings(TS656K);
    const seeds = sharedSurfaces([m.vocabulary, m.vocabulary]);
    const { map, stats } = await buildEvaMap(m.output(), m.output(), { aux: seeds.ids[0]!, main: seeds.ids[1]! });
    let ordinary = 0;
    for (let id = 0; id < map.rows; id++) {
      if (m.vocabulary.kinds[id] !== TokenKind.normal) continue;
      ordinary++;
      assert.ok(map.rowStart[id + 1]! > map.rowStart[id]!, `token ${id} kept a row`);
      assert.equal(map.cols[map.rowStart[id]!], id, `token ${id} maps to itself first`);
    }
    assert.ok(ordinary > 1900);
    assert.equal(stats.sharedDimensions, 128);
  });

  test("the pair (widths 64 and 128): seeds from identical surfaces, sparse rows of at most 10 scores ≥ 0.1", async () => {
    const [aux, main] = await Promise.all([embeddings(S260K), embeddings(TS656K)]);
    const seeds = sharedSurfaces([aux.vocabulary, main.vocabulary]);
    for (let s = 0; s < seeds.surfaces.length; s++) {
      assert.equal(aux.vocabulary.surfaces[seeds.ids[0]![s]!], seeds.surfaces[s]);
      assert.equal(main.vocabulary.surfaces[seeds.ids[1]![s]!], seeds.surfaces[s]);
    }
    const { map, stats } = await buildEvaMap(aux.output(), main.output(), { aux: seeds.ids[0]!, main: seeds.ids[1]! });
    assert.equal(stats.sharedDimensions, 64);
    assert.equal(map.rows, 512);
    assert.equal(map.columns, 2048);
    for (let r = 0; r < map.rows; r++) {
      const n = map.rowStart[r + 1]! - map.rowStart[r]!;
      assert.ok(n <= 10);
      for (let e = map.rowStart[r]!; e < map.rowStart[r + 1]!; e++) assert.ok(map.vals[e]! >= 0.1);
    }
    assert.ok(stats.keptRows > 400, `kept ${stats.keptRows}`);
  });
});

describe("DeePEn relative representation", () => {
  test("rows sum to 1 over at most `keep` anchors; the dropped mass is measured", async () => {
    const m = await embeddings(S260K);
    const anchors = sharedSurfaces([m.vocabulary]).ids[0]!;
    const { relative, stats } = await buildRelative(m.input(), anchors, { temperature: 100, keep: 16 });
    for (let r = 0; r < relative.rows; r++) {
      let sum = 0;
      for (let e = relative.rowStart[r]!; e < relative.rowStart[r + 1]!; e++) sum += relative.vals[e]!;
      assert.ok(Math.abs(sum - 1) < 1e-5);
      assert.equal(relative.rowStart[r + 1]! - relative.rowStart[r]!, 16);
    }
    assert.ok(stats.droppedMassMean > 0 && stats.droppedMassMean < 1 && stats.droppedMassMax >= stats.droppedMassMean);
    // an anchor's own row peaks at itself
    const first = relative.rowStart[anchors[5]!]!;
    assert.equal(relative.cols[first], 5);
  });
});

describe("top-k selection", () => {
  test("matches sorting by value then index, with ties, -Infinity and k beyond n", () => {
    let seed = 3;
    const uniform = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let trial = 0; trial < 500; trial++) {
      const n = Math.floor(uniform() * 300);
      const k = Math.floor(uniform() * 40);
      const levels = 1 + Math.floor(uniform() * 20);
      const values = Float32Array.from({ length: n }, (_, i) => (trial % 5 === 0 && i % 7 === 0 ? -Infinity : Math.floor(uniform() * levels)));
      const order = new Int32Array(k + 1);
      const found = topIndexes(values, n, k, order);
      const expected = Array.from({ length: n }, (_, i) => i)
        .sort((a, b) => values[b]! - values[a]! || a - b)
        .slice(0, k);
      assert.deepEqual(Array.from(order.subarray(0, found)), expected, `n ${n}, k ${k}`);
      // a scan that skips to the next value above the floor (the kernel's, in DeePEn's workers)
      const skipping = new Int32Array(k + 1);
      const nextAbove = (from: number, floor: number) => {
        while (from < n && !(values[from]! > floor)) from++;
        return from;
      };
      assert.deepEqual(skipping.subarray(0, topIndexes(values, n, k, skipping, nextAbove)), order.subarray(0, found));
    }
  });
});

describe("alignment cache", () => {
  const spec = { method: "deepen" as const, members: [{ name: "a", model: S260K }, { name: "b", model: TS656K }], mainIndex: 1, deepen: { keep: 32 } };

  test("built once, then loaded; a corrupt or truncated file is detected and rebuilt", async () => {
    const dir = path.join(cacheDir, "c1");
    const notes: string[] = [];
    const first = await prepareAlignment(spec, { cacheDir: dir, onNote: (n) => notes.push(n) });
    assert.equal(first.source, "built");
    const second = await prepareAlignment(spec, { cacheDir: dir });
    assert.equal(second.source, "cache");
    assert.deepEqual(Array.from(second.alignment.matrices[0]!.vals), Array.from(first.alignment.matrices[0]!.vals));

    const bytes = readFileSync(first.file!);
    bytes[bytes.length >> 1]! ^= 0x40;
    writeFileSync(first.file!, bytes);
    const afterCorruption = await prepareAlignment(spec, { cacheDir: dir, onNote: (n) => notes.push(n) });
    assert.equal(afterCorruption.source, "built");
    assert.match(notes.at(-1)!, /checksum mismatch/);

    truncateSync(first.file!, statSync(first.file!).size - 100);
    assert.equal((await prepareAlignment(spec, { cacheDir: dir, onNote: (n) => notes.push(n) })).source, "built");
    assert.equal((await prepareAlignment(spec, { cacheDir: dir })).source, "cache");
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes(".tmp-")), [], "no temporary file left behind");
  });

  test("other parameters, other file; an unwritable directory is a clear error (or a note for generate)", async () => {
    const dir = path.join(cacheDir, "c2");
    const a = await prepareAlignment(spec, { cacheDir: dir });
    const b = await prepareAlignment({ ...spec, deepen: { keep: 33 } }, { cacheDir: dir });
    assert.notEqual(a.file, b.file);
    const blocker = path.join(cacheDir, "not-a-dir");
    writeFileSync(blocker, "x");
    await assert.rejects(prepareAlignment(spec, { cacheDir: path.join(blocker, "sub") }), /cannot write the alignment cache in .*CHORUS_CACHE/);
    const notes: string[] = [];
    const noted = await prepareAlignment(spec, { cacheDir: path.join(blocker, "sub"), cacheWriteErrors: "note", onNote: (n) => notes.push(n) });
    assert.equal(noted.source, "built");
    assert.match(notes.at(-1)!, /without caching/);
  });

  test("whatever sits at the cache file's path is checked before it is read: a device, a FIFO, a directory, a file longer than its header says", async () => {
    const dir = path.join(cacheDir, "c3");
    const { file } = await prepareAlignment(spec, { cacheDir: dir });
    const size = statSync(file!).size;
    const notes: string[] = [];
    const prepare = (options: Parameters<typeof prepareAlignment>[1] = {}) => prepareAlignment(spec, { cacheDir: dir, onNote: (n) => notes.push(n), ...options });

    rmSync(file!);
    symlinkSync("/dev/zero", file!);
    assert.equal((await prepare()).source, "built");
    assert.match(notes.at(-1)!, /is unusable \(it is a character device, not a regular file; remove it\); rebuilding/);
    // (A rebuild may keep one entry more or fewer than the first build: ties at DeePEn's cut; see README's known limits.)
    assert.ok(lstatSync(file!).isFile() && Math.abs(statSync(file!).size - size) <= 64, "the rebuilt file replaced the link");

    rmSync(file!);
    assert.equal(spawnSync("mkfifo", [file!]).status, 0);
    assert.equal((await prepare()).source, "built");
    assert.match(notes.at(-1)!, /it is a FIFO, not a regular file/);
    assert.equal((await prepare()).source, "cache");

    const cached = statSync(file!).size;
    appendFileSync(file!, "more");
    assert.equal((await prepare()).source, "built");
    assert.match(notes.at(-1)!, new RegExp(`the file is ${cached + 4} bytes but its header describes ${cached}`));

    rmSync(file!);
    mkdirSync(file!);
    await assert.rejects(prepare({ cacheWriteErrors: "throw" }), (error: Error) => {
      assert.match(notes.at(-1)!, /it is a directory, not a regular file/);
      assert.equal(error.message, `cannot write the alignment cache in ${dir}: a directory sits at ${file}, where the cache file goes — remove it`);
      return true;
    });
    rmSync(file!, { recursive: true });
  });

  test("a cache directory under /proc is refused at once (Node's recursive mkdir spins forever there)", async () => {
    await assert.rejects(
      prepareAlignment(spec, { cacheDir: "/proc/chorus-cache/x", cacheWriteErrors: "throw" }),
      { message: "cannot write the alignment cache in /proc/chorus-cache/x: /proc is on procfs, a kernel pseudo file system that holds no ordinary files — point CHORUS_CACHE / cacheDir at a writable directory" },
    );
  });

  test("members that spell no token alike: EVA and DeePEn say so and suggest GaC or UniTE", async () => {
    const tiny = async (file: string, tokens: string[]) => {
      const model = path.join(cacheDir, file);
      await writeGguf(model, {
        metadata: {
          "general.architecture": gguf.str("llama"),
          "tokenizer.ggml.model": gguf.str("gpt2"),
          "tokenizer.ggml.tokens": gguf.array("string", tokens),
          "tokenizer.ggml.token_type": gguf.array("i32", tokens.map(() => 1)),
        },
        tensors: [{ name: "token_embd.weight", dims: [4, tokens.length], type: "F32", data: new Uint8Array(new Float32Array(4 * tokens.length).map((_, i) => Math.sin(i)).buffer) }],
      });
      return model;
    };
    const members = [{ name: "abc", model: await tiny("abc.gguf", ["a", "b", "c"]) }, { name: "xyz", model: await tiny("xyz.gguf", ["x", "y", "z"]) }];
    await assert.rejects(prepareAlignment({ method: "deepen", members, mainIndex: 0 }, { cacheDir: false }), /spell no token alike, so DeePEn has no anchors; use method gac or unite/);
    await assert.rejects(prepareAlignment({ method: "eva", members, mainIndex: 0 }, { cacheDir: false }), /spell no token alike, so EVA has no seed pairs .*use method gac or unite/);
  });

  test("a member without embeddings (vocabulary-only GGUF) is named in the error", async () => {
    const vocabOnly = path.join(SHARED, "vocab/ggml-vocab-llama-spm.gguf");
    await assert.rejects(
      prepareAlignment({ ...spec, members: [{ name: "a", model: S260K }, { name: "voc", model: vocabOnly }] }, { cacheDir: false }),
      /member 'voc': .*(no tensors|token_embd)/,
    );
  });
});

describe("generation", () => {
  const twice = (method: "eva" | "deepen"): EnsembleSpec => ({
    method,
    threads: 1,
    contextSize: 256,
    alignCache: { cacheDir },
    members: [
      { name: "one", model: TS656K, primary: true },
      { name: "two", model: TS656K },
    ],
  });

  async function generate(spec: EnsembleSpec, options: Parameters<Ensemble["generate"]>[1] = {}) {
    const ensemble = await Ensemble.create(spec);
    try {
      return await ensemble.generate({ text: PROMPT }, { maxTokens: 40, ...options });
    } finally {
      await ensemble.dispose();
    }
  }

  test("DeePEn over the same model twice reproduces the model's own greedy output", async () => {
    const alone = await generate(twice("deepen"), { only: "one" });
    const together = await generate(twice("deepen"));
    assert.equal(together.text, alone.text);
    assert.equal(together.ensembledSteps, together.steps);
  });

  test("on the TinyStories pair both methods write text; the trace names EVA's surviving members", async () => {
    for (const method of ["deepen", "eva"] as const) {
      const spec: EnsembleSpec = {
        method,
        main: "ts656k",
        threads: 1,
        contextSize: 256,
        alignCache: { cacheDir },
        members: [{ name: "s260k", model: S260K }, { name: "ts656k", model: TS656K }],
      };
      const ensemble = await Ensemble.create(spec);
      try {
        const steps = [];
        for await (const step of ensemble.stream({ text: PROMPT }, { maxTokens: 30, trace: true })) steps.push(step);
        const text = steps.map((s) => s.bytes).join("");
        const words = text.split(/\s+/).filter((w) => /^[A-Za-z.,!?'"]+$/.test(w));
        assert.ok(words.length >= 10, `${method}: ${text}`);
        for (const s of steps) {
          if (!s.trace) continue;
          if (method === "eva") assert.ok(s.trace.survivors && s.trace.survivors.every((n) => n === "s260k" || n === "ts656k"));
          else assert.equal(s.trace.survivors, undefined);
        }
      } finally {
        await ensemble.dispose();
      }
    }
  });
});

describe("chorus align", () => {
  const run = promisify(execFile);
  const chorus = async (env: NodeJS.ProcessEnv, ...args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", path.join(root, "src/cli/main.ts"), ...args], { cwd: root, env: { ...process.env, ...env } });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  test("builds with progress, then loads from the cache; generate --trace reuses it", async () => {
    const env = { CHORUS_CACHE: path.join(cacheDir, "cli") };
    const config = path.join(root, "examples/tinystories-eva.yaml");
    const first = await chorus(env, "align", "-c", config);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /eva alignment built and saved to/);
    assert.match(first.stdout, /s260k → ts656k: 133 seed pairs/);
    assert.match(first.stderr, /EVA map s260k → ts656k: 100% done in/);
    const second = await chorus(env, "align", "-c", config);
    assert.match(second.stdout, /loaded from/);
    const generated = await chorus(env, "generate", "-c", config, PROMPT, "--max-tokens", "4", "--trace");
    assert.equal(generated.code, 0, generated.stderr);
    assert.doesNotMatch(generated.stderr, /EVA map/);
    assert.match(generated.stderr, /EVA faithfulness filter: (kept|no member passed)/);
    const wrong = await chorus(env, "align", "-c", config, "--method", "gac");
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /--method: expected eva or deepen/);
  });
});
