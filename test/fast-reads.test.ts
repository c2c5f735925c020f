/**
 * The patched node-llama-cpp binding (npm run build:llama-addon, native/addon-fast-reads.patch)
 * reads what the stock binding reads. One process loads one binding, so each side runs in a child
 * process (test/helpers/read-dump.ts; CHORUS_STOCK_BINDING=1 for the stock one) and the JSON is
 * compared: the top k in order with the same logits, the filter's entries, totalLogitWeight (against
 * the exact sum of a full read), and the pair's greedy generations; the patched side is read both
 * through node-llama-cpp's sampler and through chorus's direct path (src/members/direct-reads.ts). Skipped when the patched build is absent, unless CI is set.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { makeTinyQwen2Model } from "./helpers/tiny-qwen2.js";
import { patchedBinding } from "../src/members/runtime.js";
import { S260K, TS656K } from "./helpers/models.js";
import type { Dump, ModelDump } from "./helpers/read-dump.js";

const HELPER = fileURLToPath(new URL("./helpers/read-dump.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park";
const TOP_K = 16;

async function skipReason(): Promise<string | false> {
  const stock = process.env.CHORUS_STOCK_BINDING;
  if (stock !== undefined && stock !== "" && stock !== "0") return "CHORUS_STOCK_BINDING is set";
  if ((await patchedBinding()) !== undefined || process.env.CI) return false;
  return "the patched node-llama-cpp binding is not built; run `npm run build:llama-addon` (about 2 min on 2 cores, once)";
}

function dump(models: string[], stock: boolean, generate: number): Dump {
  const env = { ...process.env };
  if (stock) env.CHORUS_STOCK_BINDING = "1";
  else delete env.CHORUS_STOCK_BINDING;
  const request = JSON.stringify({ models, text: TEXT, topK: TOP_K, generate });
  const child = spawnSync(process.execPath, ["--import", "tsx", HELPER, request], { cwd: ROOT, env, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  assert.equal(child.status, 0, `read-dump (${stock ? "stock" : "patched"}) failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as Dump;
}

/** Ties at the k-th place seen over the comparisons (a binding may keep either tied token). */
let boundaryTies = 0;
let largestPatchedError = 0;
let largestStockError = 0;

function compareModel(patched: ModelDump, stock: ModelDump): void {
  assert.equal(patched.vocabularySize, stock.vocabularySize);
  assert.equal(patched.positions.length, stock.positions.length);
  const extra = new Set(stock.extraIds);
  patched.positions.forEach((p, i) => {
    const s = stock.positions[i]!;
    const where = `${path.basename(stock.model)} position ${i}`;
    // Filter-only reads take the same path in both (a table lookup instead of std::find): identical.
    assert.deepEqual(p.filtered, s.filtered, `${where}: filter-only read`);
    // The top k: the same logits in the same (descending) order, the same ids, except where the
    // k-th logit is tied with tokens outside the top k (either binding may keep any of them).
    const k = Math.min(TOP_K, patched.vocabularySize);
    const pTop = p.top.slice(0, k);
    const sTop = s.top.slice(0, k);
    assert.deepEqual(pTop.map(([, v]) => v), sTop.map(([, v]) => v), `${where}: top-k logits`);
    const boundary = sTop[k - 1]![1];
    for (let r = 0; r < k; r++) {
      if (sTop[r]![1] === boundary) continue;
      const tied = sTop.filter(([, v]) => v === sTop[r]![1]).map(([id]) => id).sort((a, b) => a - b);
      const pTied = pTop.filter(([, v]) => v === sTop[r]![1]).map(([id]) => id).sort((a, b) => a - b);
      assert.deepEqual(pTied, tied, `${where}: ids at rank ${r}`);
    }
    const sBoundary = sTop.filter(([, v]) => v === boundary).map(([id]) => id).sort((a, b) => a - b);
    const pBoundary = pTop.filter(([, v]) => v === boundary).map(([id]) => id).sort((a, b) => a - b);
    if (JSON.stringify(sBoundary) !== JSON.stringify(pBoundary)) boundaryTies++;
    // The filter's entries after the top k: the same (id, logit) pairs; the order of equal logits may differ.
    const pRest = new Map(p.top.slice(k));
    const sRest = new Map(s.top.slice(k));
    for (const [id, v] of sRest) {
      if (pRest.has(id)) assert.equal(pRest.get(id), v, `${where}: logit of id ${id}`);
      else assert.ok(pTop.some(([t]) => t === id) && sBoundary.length > 0, `${where}: id ${id} missing`);
    }
    for (const [id] of pRest) assert.ok(extra.has(id) || sRest.has(id), `${where}: unexpected id ${id}`);
    assert.deepEqual([...pRest.values()], [...pRest.values()].sort((a, b) => b - a), `${where}: filter entries in descending order`);
    // Σexp over the whole vocabulary: the stock binding sums the sorted candidates in float32 (its
    // rounding error grows with the vocabulary, ~1e-4 at 152k), the patched one the unsorted ones in
    // float64: the exact total (a float64 sum of a full read) to float32 precision.
    const exact = s.exactTotalLogitWeight;
    assert.equal(p.exactTotalLogitWeight, exact, `${where}: full reads`);
    const patchedError = Math.abs(p.totalLogitWeight - exact) / exact;
    const stockError = Math.abs(s.totalLogitWeight - exact) / exact;
    largestPatchedError = Math.max(largestPatchedError, patchedError);
    largestStockError = Math.max(largestStockError, stockError);
    assert.ok(patchedError < 1e-6, `${where}: totalLogitWeight ${p.totalLogitWeight}, exact ${exact}`);
    assert.ok(stockError < 1e-3, `${where}: the stock totalLogitWeight ${s.totalLogitWeight}, exact ${exact}`);
  });
}

describe("the patched node-llama-cpp binding (fast reads) reads what the stock one reads", { skip: await skipReason() }, () => {
  let dir: string;
  let qwen: string;
  let patched: Dump;
  let stock: Dump;

  before(async () => {
    assert.ok((await patchedBinding()) !== undefined, "CI is set but the patched binding is not built: run `npm run build:llama-addon`");
    dir = mkdtempSync(path.join(tmpdir(), "chorus-fast-reads-"));
    qwen = path.join(dir, "qwen2-vocab-tiny.gguf");
    // Qwen2's vocabulary (151,669 tokens), where sorting the whole vocabulary cost the most.
    await makeTinyQwen2Model(qwen);
    patched = dump([S260K, TS656K, qwen], false, 24);
    stock = dump([S260K, TS656K, qwen], true, 24);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("each child ran the binding it was asked for", () => {
    assert.equal(patched.binding, "patched");
    assert.equal(stock.binding, "stock");
  });

  test("S260K (512 tokens): every position's top k, filter entries and total weight", () => {
    compareModel(patched.models[0]!, stock.models[0]!);
  });

  test("TinyStories-656K: every position's top k, filter entries and total weight", () => {
    compareModel(patched.models[1]!, stock.models[1]!);
  });

  test("a random model with Qwen2's 151,669 tokens: every position's top k, filter entries and total weight", () => {
    assert.equal(stock.models[2]!.vocabularySize, 151669);
    compareModel(patched.models[2]!, stock.models[2]!);
    process.stdout.write(`# boundary ties: ${boundaryTies}; totalLogitWeight's largest relative error: patched ${largestPatchedError.toExponential(2)}, stock ${largestStockError.toExponential(2)}\n`);
  });

  test("chorus's direct reads (chorusReadLogits, no sampler) read what the stock binding reads, on all three models", () => {
    patched.models.forEach((model, i) => {
      assert.ok(model.direct, `${path.basename(model.model)}: the patched child made no direct reads`);
      compareModel({ ...model, positions: model.direct }, stock.models[i]!);
      assert.equal(model.directRowsMatch, true, `${path.basename(model.model)}: a direct row read differs from the stock full read`);
    });
  });

  test("the pair's greedy generations (GaC, UniTE, one member alone) are the same text", () => {
    assert.deepEqual(patched.generated, stock.generated);
  });
});
