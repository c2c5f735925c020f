/**
 * The alignment builders' WebAssembly kernel and worker-thread path against the JavaScript path:
 * the committed dots.wasm is what dots.wat compiles to; the kernel's sums on odd shapes; DeePEn's
 * relative representations and EVA's maps on the shared TinyStories models and on random matrices
 * whose widths and row counts leave partial vectors and tiles; a failure stops every worker.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { compileWat, KERNEL_WASM, KERNEL_WAT } from "../scripts/build-wasm.js";
import { instantiateKernel, kernelModule, MemoryPlan, paddedWidth, storeAddresses, storeRows } from "../src/align/dots-kernel.js";
import { chooseKernel, tileRows } from "../src/align/dots-pool.js";
import { rowDot } from "../src/align/embedding-math.js";
import { buildRelative } from "../src/align/deepen-relative.js";
import { buildEvaMap, type EmbeddingMatrix, type EvaParams } from "../src/align/eva-map.js";
import { locateEmbeddings, readMatrix } from "../src/align/gguf-tensors.js";
import { sharedSurfaces } from "../src/align/shared-surfaces.js";
import { vocabularyFromGguf } from "../src/tokens/vocabulary.js";
import { S260K, TS656K } from "./helpers/models.js";
import { assertSameRows } from "./helpers/sparse-compare.js";

/** Deterministic uniform numbers in [-1, 1). */
function random(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
}

function randomMatrix(rows: number, width: number, seed: number): EmbeddingMatrix {
  const next = random(seed);
  return { data: Float32Array.from({ length: rows * width }, next), rows, width };
}

/** Within 1e-5 relative, or both within rounding of 0 (no mass dropped). */
function assertClose(actual: number, expected: number): void {
  assert.ok(Math.abs(actual - expected) <= 1e-5 * Math.abs(expected) + 1e-12, `${actual} vs ${expected}`);
}

const copy = (m: EmbeddingMatrix): EmbeddingMatrix => ({ ...m, data: m.data.slice() });

async function model(file: string) {
  const e = await locateEmbeddings(file);
  const load = (t: typeof e.input) => ({ data: readMatrix(t), rows: t.rows, width: t.width });
  return { vocabulary: vocabularyFromGguf(e.info.metadata), input: load(e.input), output: load(e.output) };
}

describe("kernel", () => {
  test("the committed dots.wasm is what dots.wat compiles to", async () => {
    assert.deepEqual(Buffer.from(await compileWat(KERNEL_WAT)), readFileSync(KERNEL_WASM));
  });

  test("dots of odd-width rows with listed columns, float64 dots, sums and a SIMD scan with tails, above 2 GiB", () => {
    const module = kernelModule();
    assert.ok(module, "this Node has WebAssembly SIMD");
    const width = 37;
    const stride = paddedWidth(width);
    const m = randomMatrix(23, width, 7);
    const rows = [3, 22, 0, 9, 9, 14, 21]; // 7: the kernel takes pairs, so the last is repeated
    const cols = [5, 1, 22, 17, 0, 3, 3, 11, 20, 8, 13]; // 11: padded to 12
    const plan = new MemoryPlan();
    plan.reserve(2 ** 31); // never touched, so never backed by memory: addresses with the top bit set
    const matrixAt = plan.reserve(m.rows * stride * 4);
    const rowAt = plan.reserve(8 * 4);
    const colAt = plan.reserve(12 * 4);
    const out = plan.reserve(8 * 12 * 4);
    const memory = plan.allocate()!;
    const kernel = instantiateKernel(module, memory);
    storeRows(memory, matrixAt, m.data, m.rows, width);
    storeAddresses(memory, rowAt, matrixAt, stride, rows.length, 8, Int32Array.from(rows));
    storeAddresses(memory, colAt, matrixAt, stride, cols.length, 12, Int32Array.from(cols));
    kernel.dots(rowAt, 8, colAt, 12, stride, out, 12);
    const result = new Float32Array(memory.buffer, out, 8 * 12);
    for (const [i, r] of rows.entries()) {
      for (const [j, c] of cols.entries()) {
        const want = rowDot(m.data, r, m.data, c, width);
        assert.ok(Math.abs(result[i * 12 + j]! - want) < 1e-5, `row ${r} · column ${c}: ${result[i * 12 + j]} vs ${want}`);
        assert.ok(Math.abs(kernel.dot64(matrixAt + r * stride * 4, matrixAt + c * stride * 4, stride) - want) < 1e-14);
      }
    }

    const values = new Float32Array(memory.buffer, matrixAt, 4 * stride).subarray(1, 1 + 103); // unaligned start, odd length
    const at = matrixAt + 4;
    let squares = 0;
    for (const v of values) squares += v * v;
    assert.ok(Math.abs(kernel.sumSquares(at, values.length) - squares) <= 1e-12 * squares);
    const scale = 6.5;
    const shift = 2.25;
    values[17] = -Infinity; // masked out: contributes 0
    let exps = 0;
    for (const v of values) exps += Math.exp(Math.fround(Math.fround(v * scale) - shift));
    assert.ok(Math.abs(kernel.expSum(at, values.length, scale, shift) - exps) <= 1e-6 * exps, `${kernel.expSum(at, values.length, scale, shift)} vs ${exps}`);

    for (const [from, floor] of [[0, 0.5], [2, 0.5], [90, 0.9], [0, 2], [101, -1]] as const) {
      let expected = from;
      while (expected < values.length && !(values[expected]! > Math.fround(floor))) expected++;
      assert.equal(kernel.firstAbove(at, from, values.length, floor), expected, `first above ${floor} from ${from}`);
    }
  });

  test("the kernel is chosen for large inputs only, and never for the js backend", () => {
    assert.equal(chooseKernel("js", 2 ** 40), undefined);
    assert.equal(chooseKernel("auto", 1000), undefined);
    assert.equal(chooseKernel("wasm", 0), undefined, "nothing to multiply (a zero width): JavaScript");
    assert.ok(chooseKernel("auto", 2 ** 40) instanceof WebAssembly.Module);
    assert.ok(chooseKernel("wasm", 1000) instanceof WebAssembly.Module);
  });
});

describe("DeePEn on the kernel", () => {
  const both = async (e: EmbeddingMatrix, anchors: Int32Array, params: { temperature: number; keep: number }, rows = e.rows) => {
    const js = await buildRelative(copy(e), anchors, params, undefined, rows, "js");
    const progress: number[] = [];
    const fast = await buildRelative(copy(e), anchors, params, (done, total) => progress.push(done / total), rows, "wasm");
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b), "progress only grows");
    assert.equal(progress.at(-1), 1);
    return { js, fast };
  };

  test("the shared models: the JS path's kept entries and dropped mass", async () => {
    const [small, large] = await Promise.all([model(S260K), model(TS656K)]);
    const pair = sharedSurfaces([small.vocabulary, large.vocabulary]).ids;
    const cases = [
      { e: large.input, anchors: sharedSurfaces([large.vocabulary]).ids[0]!, keep: 64 },
      { e: large.input, anchors: pair[1]!, keep: 32 },
      { e: small.input, anchors: pair[0]!, keep: 256 },
    ];
    for (const { e, anchors, keep } of cases) {
      const { js, fast } = await both(e, anchors, { temperature: 100, keep });
      const differing = assertSameRows(js.relative, fast.relative, 1e-5);
      assert.ok(differing <= e.rows / 100, `${differing} of ${e.rows} rows kept other anchors`);
      assert.equal(fast.stats.entries, js.stats.entries);
      assertClose(fast.stats.droppedMassMean, js.stats.droppedMassMean);
      assertClose(fast.stats.droppedMassMax, js.stats.droppedMassMax);
    }
  });

  test("a random matrix of odd width and row count: partial vectors, partial last tile, part of the rows", async () => {
    const e = randomMatrix(203, 37, 11);
    assert.ok(tileRows(paddedWidth(37)) < 203, "several tiles");
    const anchors = Int32Array.from({ length: 101 }, (_, i) => (i * 37) % 203);
    for (const rows of [203, 77]) {
      const { js, fast } = await both(e, anchors, { temperature: 100, keep: 10 }, rows);
      assert.equal(fast.relative.rows, rows);
      assert.equal(assertSameRows(js.relative, fast.relative, 1e-5), 0);
      assertClose(fast.stats.droppedMassMean, js.stats.droppedMassMean);
    }
    // every anchor kept: nothing dropped
    const all = await both(e, Int32Array.from({ length: 9 }, (_, i) => i * 20), { temperature: 100, keep: 50 });
    assert.equal(assertSameRows(all.js.relative, all.fast.relative, 1e-5), 0);
    assert.ok(all.fast.stats.droppedMassMax < 1e-12);
  });

  test("an error in the progress callback rejects the build and stops the workers", async () => {
    const e = randomMatrix(400, 24, 5);
    const anchors = Int32Array.from({ length: 200 }, (_, i) => 2 * i);
    const failing = () => {
      throw new Error("progress failed");
    };
    await assert.rejects(buildRelative(e, anchors, { temperature: 100, keep: 8 }, failing, e.rows, "wasm"), /progress failed/);
    // the test process would not exit if a worker were left running
  });
});

describe("EVA on the kernel", () => {
  test("r_T and CSLS scores: JavaScript's arithmetic, four at a time", () => {
    const n = 36;
    const plan = new MemoryPlan();
    const [intoAt, vAt, nearestAt] = [plan.reserve(4 * n), plan.reserve(4 * n), plan.reserve(4 * n)];
    const memory = plan.allocate()!;
    const kernel = instantiateKernel(kernelModule()!, memory);
    const [into, v, nearest] = [intoAt, vAt, nearestAt].map((at) => new Float32Array(memory.buffer, at, n)) as [Float32Array, Float32Array, Float32Array];
    const next = random(9);
    for (let j = 0; j < n; j++) {
      into[j] = j % 5 === 0 ? -Infinity : next();
      v[j] = j % 7 === 0 ? into[j]! : next();
      nearest[j] = next();
    }
    const expected = Float32Array.from(into, (x, j) => (v[j]! > x ? v[j]! : x));
    kernel.maxInto(intoAt, vAt, n);
    assert.deepEqual(into, expected);
    const scores = Float32Array.from(v, (x, j) => 2 * x - nearest[j]!);
    kernel.csls(vAt, nearestAt, n);
    assert.deepEqual(v, scores);
  });

  const both = async (aux: EmbeddingMatrix, main: EmbeddingMatrix, seeds: { aux: Int32Array; main: Int32Array }, params?: EvaParams) => {
    const js = await buildEvaMap(copy(aux), copy(main), seeds, params, undefined, aux.rows, "js");
    const fast = await buildEvaMap(copy(aux), copy(main), seeds, params, undefined, aux.rows, "wasm");
    return { js, fast };
  };

  test("the shared models: the JS path's matches and scores", async () => {
    const [small, large] = await Promise.all([model(S260K), model(TS656K)]);
    const pair = sharedSurfaces([small.vocabulary, large.vocabulary]);
    const itself = sharedSurfaces([large.vocabulary, large.vocabulary]);
    for (const [aux, main, seeds] of [
      [small.output, large.output, pair],
      [large.output, large.output, itself],
    ] as const) {
      const { js, fast } = await both(aux, main, { aux: seeds.ids[0]!, main: seeds.ids[1]! });
      const differing = assertSameRows(js.map, fast.map, 1e-5, 0.1);
      assert.ok(differing <= aux.rows / 100, `${differing} of ${aux.rows} rows matched other tokens`);
      assert.deepEqual({ ...fast.stats, keptRows: 0, entries: 0 }, { ...js.stats, keptRows: 0, entries: 0 });
      assert.ok(Math.abs(fast.stats.keptRows - js.stats.keptRows) <= differing);
    }
  });

  test("random matrices of odd widths and row counts, and part of the auxiliary rows", async () => {
    const aux = randomMatrix(151, 37, 21);
    const main = randomMatrix(263, 45, 22);
    const seeds = { aux: Int32Array.from({ length: 61 }, (_, i) => (i * 5) % 151), main: Int32Array.from({ length: 61 }, (_, i) => (i * 7) % 263) };
    const params: EvaParams = { topK: 7, minScore: -1, uniformStd: 0.01, uniformMinKept: 5 };
    const { js, fast } = await both(aux, main, seeds, params);
    assert.equal(js.stats.sharedDimensions, 37);
    assert.equal(assertSameRows(js.map, fast.map, 1e-5), 0);
    assert.equal(fast.map.cols.length, 151 * 7);
    const part = await buildEvaMap(copy(aux), copy(main), seeds, params, undefined, 40, "wasm");
    const partJs = await buildEvaMap(copy(aux), copy(main), seeds, params, undefined, 40, "js");
    assert.equal(part.map.rows, 40);
    assert.equal(assertSameRows(partJs.map, part.map, 1e-5), 0);
  });
});
