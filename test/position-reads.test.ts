/**
 * Kept reads answer requests as a fresh read would: a direct row read (the patched binding's whole
 * row) against a reference computed here from the same logits, for top lists longer than the
 * binding's, requested ids, full requests and ties.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { answer, covers, directRowRead } from "../src/members/position-reads.js";
import type { RawPositionRead } from "../src/members/direct-reads.js";

/** Deterministic logits with ties: values on a coarse grid. */
function logitsRow(size: number, seed: number): Float32Array {
  const row = new Float32Array(size);
  let state = seed;
  for (let i = 0; i < size; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    row[i] = Math.round(((state >>> 8) / 0xffffff) * 200) / 10 - 10;
  }
  return row;
}

/** The reference order: descending logit, ties by lower id. */
function referenceTop(row: Float32Array, count: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => row[b]! - row[a]! || a - b)
    .slice(0, count);
}

function rawRead(row: Float32Array, topK: number, ids: number[]): RawPositionRead & { row: Float32Array } {
  const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
  const totalLogitWeight = row.reduce((sum, v) => sum + Math.exp(v - max), 0);
  const top = referenceTop(row, topK);
  return {
    totalLogitWeight,
    topIds: Int32Array.from(top),
    topLogits: Float32Array.from(top, (id) => row[id]!),
    ids: Uint32Array.from(ids),
    idLogits: Float32Array.from(ids, (id) => row[id]!),
    row,
  };
}

describe("a direct row read", () => {
  const row = logitsRow(20_000, 7);
  const read = directRowRead(rawRead(row, 256, [3, 17]));

  test("lists the binding's top ids, and longer tops in the same order (ties: lower id first)", () => {
    assert.deepEqual(read.top(100), referenceTop(row, 100));
    assert.deepEqual(read.top(1024), referenceTop(row, 1024));
    assert.deepEqual(read.top(row.length), referenceTop(row, row.length));
  });

  test("answers any request, with probabilities exp(logit − max) / total", () => {
    const request = { topK: 600, extraIds: [5, 19_999, 42] };
    assert.ok(covers(read, request));
    const dist = answer(read, request, row.length);
    const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const total = row.reduce((sum, v) => sum + Math.exp(v - max), 0);
    const expectedIds = referenceTop(row, 600);
    for (const id of [5, 19_999, 42].sort((a, b) => row[b]! - row[a]! || a - b)) if (!expectedIds.includes(id)) expectedIds.push(id);
    assert.deepEqual(Array.from(dist.ids), expectedIds);
    dist.ids.forEach((id, k) => assert.ok(Math.abs(dist.probs[k]! - Math.exp(row[id]! - max) / total) < 1e-12));
    assert.equal(dist.topCount, 600);
    assert.equal(dist.complete, false);
  });

  test("a full request lists the whole vocabulary and is complete", () => {
    const dist = answer(read, { topK: 8, full: true }, row.length);
    assert.equal(dist.ids.length, row.length);
    assert.equal(dist.complete, true);
    assert.equal(dist.unlistedMass, 0);
    assert.ok(Math.abs(dist.probs.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  });

  test("looks up ids inside the vocabulary only", () => {
    assert.equal(read.logits.get(3), row[3]);
    assert.equal(read.logits.has(row.length), false);
    assert.equal(read.logits.get(-1), undefined);
  });
});
