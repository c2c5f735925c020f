/**
 * The alignment builders' WebAssembly kernel: the committed dots.wasm is what dots.wat compiles
 * to; the kernel's sums on odd shapes, against JavaScript's.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { compileWat, KERNEL_WASM, KERNEL_WAT } from "../scripts/build-wasm.js";
import { instantiateKernel, kernelModule, MemoryPlan, paddedWidth, storeAddresses, storeRows } from "../src/align/dots-kernel.js";
import { rowDot } from "../src/align/embedding-math.js";

/** Deterministic uniform numbers in [-1, 1). */
function random(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
}

function randomMatrix(rows: number, width: number, seed: number): { data: Float32Array; rows: number; width: number } {
  const next = random(seed);
  return { data: Float32Array.from({ length: rows * width }, next), rows, width };
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

});
