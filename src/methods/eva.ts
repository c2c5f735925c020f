/**
 * EVA (Xu et al. 2024), one step: each auxiliary member's distribution is projected into the main
 * member's vocabulary through its learned map (align/eva-map.ts); a member is kept only if its
 * top-1 token lies within another member's top-k ("faithfulness"); the kept members' distributions
 * are averaged with their weights (all members when none is kept). Pure: no I/O.
 */
import { END_TEXT, type MemberCandidates } from "./candidates.js";
import type { SparseRows } from "../align/sparse-rows.js";
import { exactCombined, listedProbabilities, topK } from "./id-space.js";
import { normalizeWeights, type Combined } from "./combined.js";

export interface EvaVoter {
  readonly candidates: MemberCandidates;
  /** Token id of each candidate in the member's own vocabulary (see candidateIds). */
  readonly ids: Int32Array;
  /** Map from this member's ids to the main member's (undefined for the main member). */
  readonly map?: SparseRows;
  readonly weight: number;
}

export interface EvaStepResult {
  readonly combined: Combined;
  /** Per voter: whether it passed the faithfulness filter. */
  readonly survived: readonly boolean[];
  /** True when no voter passed and all were averaged. */
  readonly fallback: boolean;
  /** Per voter: its distribution over the main member's candidates. */
  readonly projected: readonly Float64Array[];
}

export function evaStep(voters: readonly EvaVoter[], mainAt: number, faithfulK: number): EvaStepResult {
  const main = voters[mainAt]!;
  const n = main.candidates.texts.length;
  const indexOfId = new Map<number, number>();
  main.ids.forEach((id, k) => indexOfId.set(id, k));
  const endAt = main.candidates.index.get(END_TEXT);

  const projected = voters.map((v, m) => {
    const p = listedProbabilities(v.candidates);
    if (m === mainAt) return p;
    // Normalized by all the mass the map carries, listed by the main member or not: mass that
    // lands outside the main member's candidates is this member's vote for tokens the main member
    // did not list, not a reason to inflate the ones it did.
    const out = new Float64Array(n);
    const map = v.map!;
    let carried = 0;
    for (let k = 0; k < p.length; k++) {
      const pk = p[k]!;
      if (pk === 0) continue;
      if (v.candidates.texts[k] === END_TEXT) {
        carried += pk;
        if (endAt !== undefined) out[endAt]! += pk;
        continue;
      }
      const id = v.ids[k]!;
      if (id < 0 || id >= map.rows) continue;
      const from = map.rowStart[id]!;
      const to = map.rowStart[id + 1]!;
      let rowSum = 0;
      for (let e = from; e < to; e++) rowSum += map.vals[e]!;
      if (rowSum > 0) carried += pk;
      for (let e = from; e < to; e++) {
        const at = indexOfId.get(map.cols[e]!);
        if (at !== undefined) out[at]! += (pk * map.vals[e]!) / rowSum;
      }
    }
    if (carried > 0) for (let k = 0; k < n; k++) out[k]! /= carried;
    return out;
  });

  const nonEmpty = projected.map((p) => p.some((x) => x > 0));
  const tops = projected.map((p) => new Set(topK(p, faithfulK)));
  const firsts = projected.map((p) => topK(p, 1)[0]);
  let survived = voters.map(
    (_, m) => nonEmpty[m]! && voters.some((__, o) => o !== m && nonEmpty[o]! && tops[o]!.has(firsts[m]!)),
  );
  if (voters.length === 1) survived = [true];
  const fallback = !survived.some(Boolean);
  const used = fallback ? nonEmpty : survived;

  const scores = new Float64Array(n);
  const weights = normalizeWeights(voters.map((v) => v.weight));
  let total = 0;
  voters.forEach((_, m) => {
    if (!used[m]) return;
    total += weights[m]!;
    const p = projected[m]!;
    for (let k = 0; k < n; k++) scores[k]! += weights[m]! * p[k]!;
  });
  if (total > 0) for (let k = 0; k < n; k++) scores[k]! /= total;
  return { combined: exactCombined(main.candidates.texts, scores), survived, fallback, projected };
}
