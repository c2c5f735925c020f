/**
 * EVA's and DeePEn's per-step combination: DeePEn's analytic gradient against finite differences
 * (on real TinyStories relative representations), its fixed point for identical members, and
 * EVA's projection and faithfulness filter.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { MemberCandidates } from "../src/methods/candidates.js";
import { deepenStep, deepenTarget, klLossAndGradient, relativeSpace } from "../src/methods/deepen.js";
import { evaStep } from "../src/methods/eva.js";
import { gac } from "../src/methods/gac.js";
import { unite } from "../src/methods/unite.js";
import { buildRelative } from "../src/align/deepen-relative.js";
import { locateEmbeddings, readMatrix } from "../src/align/gguf-tensors.js";
import { sharedSurfaces } from "../src/align/shared-surfaces.js";
import { SparseRowsBuilder } from "../src/align/sparse-rows.js";
import { vocabularyFromGguf } from "../src/tokens/vocabulary.js";
import { S260K, TS656K } from "./helpers/models.js";

/** Candidates over made-up texts (only texts, probabilities and the index matter here). */
function candidates(probs: number[], texts = probs.map((_, k) => `t${k}`)): MemberCandidates {
  return {
    texts,
    probs: Float64Array.from(probs),
    lowerScale: 1,
    hiExtra: new Float64Array(probs.length),
    unlistedMax: 0,
    paths: texts.map((_, k) => ({ kind: "append" as const, id: k })),
    index: new Map(texts.map((t, k) => [t, k])),
    complete: true,
  };
}

async function spaces() {
  const [a, b] = await Promise.all([locateEmbeddings(S260K), locateEmbeddings(TS656K)]);
  const anchors = sharedSurfaces([vocabularyFromGguf(a.info.metadata), vocabularyFromGguf(b.info.metadata)]);
  return Promise.all(
    [a, b].map(async (e, i) =>
      relativeSpace((await buildRelative({ data: readMatrix(e.input), rows: e.input.rows, width: e.input.width }, anchors.ids[i]!, { temperature: 100, keep: 32 })).relative),
    ),
  );
}

function randomProbs(n: number, seed: number): number[] {
  let s = seed;
  const raw = Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) ** 3);
  const sum = raw.reduce((x, y) => x + y, 0);
  return raw.map((x) => x / sum);
}

test("DeePEn: the analytic gradient of KL(target ‖ softmax(z)·R) matches central differences", async () => {
  const [aux, main] = await spaces();
  const mainIds = Int32Array.from({ length: 24 }, (_, k) => 3 + k * 7);
  const auxIds = Int32Array.from({ length: 24 }, (_, k) => 5 + k * 11);
  const voters = [
    { candidates: candidates(randomProbs(24, 7)), ids: auxIds, space: aux!, weight: 1 },
    { candidates: candidates(randomProbs(24, 99)), ids: mainIds, space: main!, weight: 2 },
  ];
  const target = deepenTarget(voters, main!.relative.columns);
  const z = Float64Array.from(randomProbs(24, 5), (p) => Math.log(p));
  const grad = new Float64Array(24);
  const loss = klLossAndGradient(z, mainIds, main!, target, grad);
  assert.ok(loss > 0);
  const scratch = new Float64Array(24);
  const h = 1e-5;
  let worst = 0;
  for (let k = 0; k < 24; k++) {
    const up = Float64Array.from(z);
    up[k]! += h;
    const down = Float64Array.from(z);
    down[k]! -= h;
    const numeric = (klLossAndGradient(up, mainIds, main!, target, scratch) - klLossAndGradient(down, mainIds, main!, target, scratch)) / (2 * h);
    worst = Math.max(worst, Math.abs(numeric - grad[k]!));
  }
  const scale = Math.max(...Array.from(grad, Math.abs));
  assert.ok(scale > 1e-4, "the gradient is not trivially zero");
  assert.ok(worst < 1e-6 * Math.max(1, scale) + 1e-8, `worst difference ${worst} (gradient scale ${scale})`);
});

test("DeePEn: identical members keep the main order; a different member moves the choice", async () => {
  const [, main] = await spaces();
  const ids = Int32Array.from({ length: 30 }, (_, k) => 40 + k);
  const probs = randomProbs(30, 3);
  const same = deepenStep(
    [
      { candidates: candidates(probs), ids, space: main!, weight: 1 },
      { candidates: candidates(probs), ids, space: main!, weight: 3 },
    ],
    0,
  );
  // Zero gradient: only AdamW's weight decay acts, scaling the logits, so the order is kept exactly.
  const rank = (v: ArrayLike<number>) => Array.from({ length: v.length }, (_, k) => k).sort((a, b) => v[b]! - v[a]!);
  assert.deepEqual(rank(same.scores), rank(probs));

  // A second member sure of the main member's third choice pulls it up.
  const third = [...probs.keys()].sort((a, b) => probs[b]! - probs[a]!)[2]!;
  const sure = probs.map((_, k) => (k === third ? 1 : 0));
  const moved = deepenStep(
    [
      { candidates: candidates(probs), ids, space: main!, weight: 1 },
      { candidates: candidates(sure), ids, space: main!, weight: 1 },
    ],
    0,
  );
  assert.ok(moved.scores[third]! > probs[third]!);
});

test("EVA: projection through the map, faithfulness filter, fallback to all", () => {
  // Auxiliary ids 0..2 map to main ids: 0 → {1: 0.9}, 1 → {0: 0.5, 2: 0.5}, 2 → nothing.
  const b = new SparseRowsBuilder(3, 4);
  b.addRow([1], [0.9]);
  b.addRow([0, 2], [0.5, 0.5]);
  b.addRow([], []);
  const map = b.build();
  const mainIds = Int32Array.from([0, 1, 2, 3]);
  const main = { candidates: candidates([0.5, 0.3, 0.15, 0.05]), ids: mainIds, weight: 1 };

  // The auxiliary member's top-1 (aux 0 → main 1) is in the main member's top 3: both kept.
  const agree = evaStep([main, { candidates: candidates([0.6, 0.4, 0]), ids: Int32Array.from([0, 1, 2]), map, weight: 1 }], 0, 3);
  assert.deepEqual(agree.survived, [true, true]);
  assert.equal(agree.fallback, false);
  const projected = agree.projected[1]!;
  assert.ok(Math.abs(projected[1]! - 0.6) < 1e-12 && Math.abs(projected[0]! - 0.2) < 1e-12 && Math.abs(projected[2]! - 0.2) < 1e-12);
  assert.ok(Math.abs(agree.combined.scores[1]! - (0.3 + 0.6) / 2) < 1e-12);

  // With k = 1 the members disagree on the top-1: nobody passes, all are averaged.
  const strict = evaStep([main, { candidates: candidates([0.6, 0.4, 0]), ids: Int32Array.from([0, 1, 2]), map, weight: 1 }], 0, 1);
  assert.deepEqual(strict.survived, [false, false]);
  assert.equal(strict.fallback, true);
  assert.ok(Math.abs(strict.combined.scores[1]! - 0.45) < 1e-12);

  // Mass the map sends to tokens the main member did not list is lost, not spread over the listed ones.
  const b2 = new SparseRowsBuilder(1, 6);
  b2.addRow([2, 5], [0.25, 0.75]);
  const unlisted = evaStep([main, { candidates: candidates([1]), ids: Int32Array.from([0]), map: b2.build(), weight: 1 }], 0, 3);
  assert.ok(Math.abs(unlisted.projected[1]![2]! - 0.25) < 1e-12);
  assert.ok(Math.abs(unlisted.projected[1]!.reduce((a, b) => a + b, 0) - 0.25) < 1e-12);

  // Three members: the outlier (its mass lands on main id 3, nobody's top 2) is dropped.
  const b3 = new SparseRowsBuilder(1, 4);
  b3.addRow([3], [1]);
  const outlier = { candidates: candidates([1]), ids: Int32Array.from([0]), map: b3.build(), weight: 1 };
  const agreeing = { candidates: candidates([0.6, 0.4, 0]), ids: Int32Array.from([0, 1, 2]), map, weight: 1 };
  const three = evaStep([main, agreeing, outlier], 0, 2);
  assert.deepEqual(three.survived, [true, true, false]);
  assert.equal(three.combined.scores[3], 0.05 / 2);
});

test("every method scores the same with weights so large their sum overflows (1e308 each): only their ratios matter", async () => {
  const huge = (weights: number[]) => weights.map((w) => w * 1e308);
  const a = candidates([0.5, 0.3, 0.2], ["x", "y", "z"]);
  const b = candidates([0.1, 0.6, 0.3], ["x", "y", "w"]);
  assert.deepEqual(gac([a, b], huge([1, 1])).scores, gac([a, b], [1, 1]).scores);
  const values = [Float64Array.from([0.5, 0.3, 0.2]), Float64Array.from([0.1, 0.6, 0.3])];
  assert.deepEqual(unite(["x", "y", "z"], values, huge([1, 1])).scores, unite(["x", "y", "z"], values, [1, 1]).scores);

  const b1 = new SparseRowsBuilder(3, 4);
  b1.addRow([1], [0.9]);
  b1.addRow([0, 2], [0.5, 0.5]);
  b1.addRow([], []);
  const map = b1.build();
  const eva = (weights: number[]) =>
    evaStep([{ candidates: candidates([0.5, 0.3, 0.15, 0.05]), ids: Int32Array.from([0, 1, 2, 3]), weight: weights[0]! }, { candidates: candidates([0.6, 0.4, 0]), ids: Int32Array.from([0, 1, 2]), map, weight: weights[1]! }], 0, 3);
  assert.deepEqual(eva(huge([1, 1])).combined.scores, eva([1, 1]).combined.scores);

  const [aux, main] = await spaces();
  const voters = (weights: number[]) => [
    { candidates: candidates(randomProbs(24, 7)), ids: Int32Array.from({ length: 24 }, (_, k) => 5 + k * 11), space: aux!, weight: weights[0]! },
    { candidates: candidates(randomProbs(24, 99)), ids: Int32Array.from({ length: 24 }, (_, k) => 3 + k * 7), space: main!, weight: weights[1]! },
  ];
  assert.deepEqual(deepenTarget(voters(huge([1, 1])), main!.relative.columns), deepenTarget(voters([1, 1]), main!.relative.columns));
});
