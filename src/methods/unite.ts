import type { MemberCandidates } from "./candidates.js";
import { normalizeWeights, unionOfTexts, type Combined } from "./combined.js";

/** The texts UniTE ranks: the union of every member's top-k. */
export function uniteUnion(members: readonly MemberCandidates[], k: number): string[] {
  return unionOfTexts(members, k);
}

/**
 * UniTE (Yao et al. 2024): each member's probabilities over the union of top-k texts (`values[m][i]`,
 * where a text the member cannot spell as one token already holds the probability of the first
 * token of its own tokenization), renormalized per member over the union, then the weighted mean.
 */
export function unite(union: readonly string[], values: readonly Float64Array[], weights: readonly number[]): Combined {
  const w = normalizeWeights(weights);
  const n = union.length;
  const scores = new Float64Array(n);
  values.forEach((v, m) => {
    const wm = w[m]!;
    if (wm === 0) return;
    let total = 0;
    for (let i = 0; i < n; i++) total += v[i]!;
    if (total <= 0) return;
    for (let i = 0; i < n; i++) scores[i]! += (wm * v[i]!) / total;
  });
  return { texts: union, scores, lower: scores, upper: scores, unlistedUpper: 0 };
}
