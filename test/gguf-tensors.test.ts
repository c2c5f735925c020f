/**
 * Dequantization against hand-built blocks whose values are known exactly: every block is packed
 * here from the format definitions (ggml-common.h layouts, packing as ggml's quantize_row_*_ref
 * writes it), with power-of-two scales so that every expected value is an exact float32. The
 * expected values come from per-element formulas, not from the reader's loops.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gguf, writeGguf } from "../bench/gguf-writer.js";
import { dequantize, locateEmbeddings, readMatrix, TensorReadError } from "../src/align/gguf-tensors.js";
import { S260K, SHARED } from "./helpers/models.js";

/** Deterministic bytes (xorshift32). */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

/** f16 bits of a power of two 2^e (−14 ≤ e ≤ 15). */
const pow2Half = (e: number) => (e + 15) << 10;
const setHalf = (b: Uint8Array, at: number, bits: number) => { b[at] = bits & 0xff; b[at + 1] = bits >> 8; };

interface Fixture {
  type: number;
  name: string;
  block: number;
  bytes: number;
  /** Builds one block from random bytes (with its scale fields fixed) and the exact expected values. */
  build(seed: number): { block: Uint8Array; expected: number[] };
}

const D = 2 ** -4;
const DMIN = 2 ** -6;

const fixtures: Fixture[] = [
  {
    type: 2, name: "Q4_0", block: 32, bytes: 18,
    build(seed) {
      const b = randomBytes(18, seed);
      setHalf(b, 0, pow2Half(-4));
      const expected = Array.from({ length: 32 }, (_, i) => {
        const byte = b[2 + (i % 16)]!;
        return ((i < 16 ? byte & 15 : byte >> 4) - 8) * D;
      });
      return { block: b, expected };
    },
  },
  {
    type: 3, name: "Q4_1", block: 32, bytes: 20,
    build(seed) {
      const b = randomBytes(20, seed);
      setHalf(b, 0, pow2Half(-4));
      setHalf(b, 2, 0xc000); // m = -2
      const expected = Array.from({ length: 32 }, (_, i) => {
        const byte = b[4 + (i % 16)]!;
        return (i < 16 ? byte & 15 : byte >> 4) * D - 2;
      });
      return { block: b, expected };
    },
  },
  {
    type: 6, name: "Q5_0", block: 32, bytes: 22,
    build(seed) {
      const b = randomBytes(22, seed);
      setHalf(b, 0, pow2Half(-4));
      const qh = b[2]! | (b[3]! << 8) | (b[4]! << 16) | (b[5]! << 24);
      const expected = Array.from({ length: 32 }, (_, i) => {
        const byte = b[6 + (i % 16)]!;
        const low = i < 16 ? byte & 15 : byte >> 4;
        return ((low | (((qh >>> i) & 1) << 4)) - 16) * D; // element i's fifth bit is bit i of qh
      });
      return { block: b, expected };
    },
  },
  {
    type: 7, name: "Q5_1", block: 32, bytes: 24,
    build(seed) {
      const b = randomBytes(24, seed);
      setHalf(b, 0, pow2Half(-4));
      setHalf(b, 2, 0x3c00); // m = 1
      const qh = b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24);
      const expected = Array.from({ length: 32 }, (_, i) => {
        const byte = b[8 + (i % 16)]!;
        const low = i < 16 ? byte & 15 : byte >> 4;
        return (low | (((qh >>> i) & 1) << 4)) * D + 1;
      });
      return { block: b, expected };
    },
  },
  {
    type: 8, name: "Q8_0", block: 32, bytes: 34,
    build(seed) {
      const b = randomBytes(34, seed);
      setHalf(b, 0, pow2Half(-4));
      const expected = Array.from({ length: 32 }, (_, i) => ((b[2 + i]! << 24) >> 24) * D);
      return { block: b, expected };
    },
  },
  {
    type: 10, name: "Q2_K", block: 256, bytes: 84,
    build(seed) {
      const b = randomBytes(84, seed); // scales[16] · qs[64] · d · dmin
      setHalf(b, 80, pow2Half(-4));
      setHalf(b, 82, pow2Half(-6));
      const expected = Array.from({ length: 256 }, (_, i) => {
        const sc = b[i >> 4]!;
        const t = i & 31;
        const g = (i & 127) >> 5;
        const q = (b[16 + (i >> 7) * 32 + t]! >> (2 * g)) & 3;
        return D * (sc & 15) * q - DMIN * (sc >> 4);
      });
      return { block: b, expected };
    },
  },
  {
    type: 11, name: "Q3_K", block: 256, bytes: 110,
    build(seed) {
      const b = randomBytes(110, seed); // hmask[32] · qs[64] · scales[12] · d
      setHalf(b, 108, pow2Half(-4));
      const ls = Array.from(randomBytes(16, seed + 1), (x) => x & 63);
      b.fill(0, 96, 108);
      ls.forEach((l, j) => {
        if (j < 8) b[96 + j] = l & 15;
        else b[96 + j - 8]! |= (l & 15) << 4;
        b[96 + 8 + (j % 4)]! |= (l >> 4) << (2 * (j >> 2));
      });
      const expected = Array.from({ length: 256 }, (_, i) => {
        const t = i & 31;
        const g = (i & 127) >> 5;
        const low = (b[32 + (i >> 7) * 32 + t]! >> (2 * g)) & 3;
        const high = (b[t]! >> ((i >> 7) * 4 + g)) & 1;
        return D * (ls[i >> 4]! - 32) * (low - (high ? 0 : 4));
      });
      return { block: b, expected };
    },
  },
  {
    type: 12, name: "Q4_K", block: 256, bytes: 144,
    build(seed) {
      const b = randomBytes(144, seed); // d · dmin · scales[12] · qs[128]
      setHalf(b, 0, pow2Half(-4));
      setHalf(b, 2, pow2Half(-6));
      const { ls, lm } = packK4Scales(b, 4, seed);
      const expected = Array.from({ length: 256 }, (_, i) => {
        const j = i >> 5;
        const byte = b[16 + (i >> 6) * 32 + (i & 31)]!;
        const q = j & 1 ? byte >> 4 : byte & 15;
        return D * ls[j]! * q - DMIN * lm[j]!;
      });
      return { block: b, expected };
    },
  },
  {
    type: 13, name: "Q5_K", block: 256, bytes: 176,
    build(seed) {
      const b = randomBytes(176, seed); // d · dmin · scales[12] · qh[32] · qs[128]
      setHalf(b, 0, pow2Half(-4));
      setHalf(b, 2, pow2Half(-6));
      const { ls, lm } = packK4Scales(b, 4, seed);
      const expected = Array.from({ length: 256 }, (_, i) => {
        const j = i >> 5;
        const byte = b[48 + (i >> 6) * 32 + (i & 31)]!;
        const low = j & 1 ? byte >> 4 : byte & 15;
        const high = (b[16 + (i & 31)]! >> j) & 1; // sub-block j's fifth bits are bit j of qh
        return D * ls[j]! * (low + 16 * high) - DMIN * lm[j]!;
      });
      return { block: b, expected };
    },
  },
  {
    type: 14, name: "Q6_K", block: 256, bytes: 210,
    build(seed) {
      const b = randomBytes(210, seed); // ql[128] · qh[64] · scales[16] (int8) · d
      setHalf(b, 208, pow2Half(-4));
      const expected = Array.from({ length: 256 }, (_, i) => {
        const n = i >> 7;
        const g = (i & 127) >> 5;
        const l = i & 31;
        const qlByte = b[n * 64 + l + (g & 1) * 32]!;
        const low = g < 2 ? qlByte & 15 : qlByte >> 4;
        const high = (b[128 + n * 32 + l]! >> (2 * g)) & 3;
        const scale = (b[192 + n * 8 + (l >> 4) + 2 * g]! << 24) >> 24;
        return D * scale * ((low | (high << 4)) - 32);
      });
      return { block: b, expected };
    },
  },
];

/** Packs eight 6-bit scales and mins the way quantize_row_q4_K_ref does; returns them. */
function packK4Scales(b: Uint8Array, at: number, seed: number): { ls: number[]; lm: number[] } {
  const r = randomBytes(16, seed + 7);
  const ls = Array.from(r.subarray(0, 8), (x) => x & 63);
  const lm = Array.from(r.subarray(8), (x) => x & 63);
  b.fill(0, at, at + 12);
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      b[at + j] = ls[j]!;
      b[at + j + 4] = lm[j]!;
    } else {
      b[at + j + 4] = (ls[j]! & 15) | ((lm[j]! & 15) << 4);
      b[at + j - 4]! |= (ls[j]! >> 4) << 6;
      b[at + j]! |= (lm[j]! >> 4) << 6;
    }
  }
  return { ls, lm };
}

describe("dequantization: known values", () => {
  for (const fx of fixtures) {
    test(`${fx.name}: every value of three blocks`, () => {
      const blocks = [11, 22, 33].map((seed) => fx.build(seed));
      const src = new Uint8Array(blocks.length * fx.bytes + 5);
      blocks.forEach((b, k) => src.set(b.block, 5 + k * fx.bytes)); // unaligned start on purpose
      const out = new Float32Array(blocks.length * fx.block);
      dequantize(fx.type, src, 5, out.length, out);
      const expected = blocks.flatMap((b) => b.expected);
      assert.deepEqual(Array.from(out), expected);
      assert.ok(expected.some((v) => v !== 0) && new Set(expected).size > 8, "fixture is not degenerate");
    });
  }

  test("F32, F16 (normal, subnormal, max, negative) and BF16", () => {
    const f32 = new Uint8Array(new Float32Array([1.5, -0.1, 3e38]).buffer);
    const out = new Float32Array(3);
    dequantize(0, f32, 0, 3, out);
    assert.deepEqual(Array.from(out), Array.from(new Float32Array([1.5, -0.1, 3e38])));

    const halves = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x8400]).buffer);
    const h = new Float32Array(6);
    dequantize(1, halves, 0, 6, h);
    assert.deepEqual(Array.from(h), [1, -2, 65504, 2 ** -24, 0.333251953125, -(2 ** -14)]);

    const bf = new Uint8Array(new Uint16Array([0x3f80, 0xc040, 0x4049, 0x0000]).buffer);
    const bo = new Float32Array(4);
    dequantize(30, bf, 0, 4, bo);
    assert.deepEqual(Array.from(bo), [1, -3, 3.140625, 0]);
  });

  test("non-power-of-two scales round like float32 C code", () => {
    // Q4_K with d = 0.1 (f16 0x2e66): d·sc is rounded to float32 before it multiplies q.
    const b = fixtures.find((x) => x.name === "Q4_K")!.build(5).block;
    setHalf(b, 0, 0x2e66);
    setHalf(b, 2, 0x2e66);
    const out = new Float32Array(256);
    dequantize(12, b, 0, 256, out);
    const d = 0.0999755859375; // f16 0x2e66
    const ref = (x: number) => Math.fround(x);
    // element 0: sub-block 0, low nibble of qs[0]
    const sc = b[4]! & 63, m = b[8]! & 63, q = b[16]! & 15;
    assert.equal(out[0], ref(ref(ref(d * sc) * q) - ref(d * m)));
  });
});

describe("embedding tensors in GGUF files", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "chorus-tensors-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const meta = { "general.architecture": gguf.str("llama") };

  for (const fx of fixtures) {
    test(`${fx.name}: rows read back from a file, output tied to input`, async () => {
      const rows = 3;
      const blocks = Array.from({ length: rows }, (_, r) => fx.build(100 + r));
      const data = new Uint8Array(rows * fx.bytes);
      blocks.forEach((b, r) => data.set(b.block, r * fx.bytes));
      const path = join(dir, `${fx.name}.gguf`);
      await writeGguf(path, { metadata: meta, tensors: [{ name: "token_embd.weight", dims: [fx.block, rows], type: fx.type, data }] });
      const e = await locateEmbeddings(path);
      assert.equal(e.tied, true);
      assert.equal(e.input.rows, rows);
      assert.equal(e.input.width, fx.block);
      assert.deepEqual(Array.from(readMatrix(e.output)), blocks.flatMap((b) => b.expected));
    });
  }

  test("separate output.weight (stories260K, F32)", async () => {
    const e = await locateEmbeddings(S260K);
    assert.equal(e.tied, false);
    assert.equal(e.input.rows, 512);
    assert.equal(e.output.width, 64);
    const m = readMatrix(e.output);
    assert.ok(m.every(Number.isFinite));
  });

  test("unsupported type: clear message naming the type and the fix", async () => {
    const path = join(dir, "q8_1.gguf");
    await writeGguf(path, { metadata: meta, tensors: [{ name: "token_embd.weight", dims: [32, 1], type: "Q8_1", data: new Uint8Array(36) }] });
    await assert.rejects(locateEmbeddings(path), (e: Error) => e instanceof TensorReadError && /unsupported tensor type Q8_1/.test(e.message) && /re-quantize/.test(e.message));
  });

  test("vocabulary-only file: says the weights are missing", async () => {
    await assert.rejects(locateEmbeddings(join(SHARED, "vocab/ggml-vocab-llama-spm.gguf")), /holds no tensors|no token_embd/);
  });

  test("truncated file: says so", async () => {
    const path = join(dir, "short.gguf");
    const fx = fixtures[0]!;
    await writeGguf(path, { metadata: meta, tensors: [{ name: "token_embd.weight", dims: [32, 4], type: fx.type, data: new Uint8Array(4 * fx.bytes) }] });
    const { truncateSync, statSync } = await import("node:fs");
    truncateSync(path, statSync(path).size - 10);
    const e = await locateEmbeddings(path).catch((x: Error) => x);
    if (e instanceof Error) assert.match(e.message, /GGUF|truncat/);
    else assert.throws(() => readMatrix(e.input), /ends inside token_embd.weight/);
  });
});
