import type { MemberCandidates } from "./candidates.js";
import { normalizeWeights, unionOfTexts, type Combined } from "./combined.js";

/**
 * GaC (Yu et al. 2024): the weighted mean of the members' probabilities over the union of their
 * vocabularies, keyed by exact surface. Members list only their top tokens, so each score comes
 * with bounds that cover every token they left out.
 */
export function gac(members: readonly MemberCandidates[], weights: readonly number[]): Combined {
  const w = normalizeWeights(weights);
  const texts = unionOfTexts(members);
  const n = texts.length;
  const scores = new Float64Array(n);
  const lower = new Float64Array(n);
  const upper = new Float64Array(n);
  let unlistedUpper = 0;
  members.forEach((member, m) => {
    const wm = w[m]!;
    if (wm === 0) return;
    unlistedUpper += wm * member.unlistedMax;
    for (let i = 0; i < n; i++) {
      const j = member.index.get(texts[i]!);
      if (j === undefined) {
        upper[i]! += wm * member.unlistedMax;
      } else {
        const p = member.probs[j]!;
        scores[i]! += wm * p;
        lower[i]! += wm * p * member.lowerScale;
        upper[i]! += wm * (p + member.hiExtra[j]!);
      }
    }
  });
  return { texts, scores, lower, upper, unlistedUpper };
}
