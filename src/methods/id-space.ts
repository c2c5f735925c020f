import type { MemberCandidates } from "./candidates.js";
import { END_TEXT } from "./candidates.js";
import type { Vocabulary } from "../tokens/vocabulary.js";
import type { Combined } from "./combined.js";

/**
 * The token id each candidate stands for, for the methods that work on token ids (EVA, DeePEn).
 * A candidate's text is the member's own token when one spells it exactly (after healing too: the
 * continuation past a foreign boundary, in the member's own id space); otherwise the token on its
 * path; END is the member's EOG token.
 */
export function candidateIds(vocabulary: Vocabulary, candidates: MemberCandidates): Int32Array {
  return Int32Array.from(candidates.texts, (text, k) =>
    text === END_TEXT ? candidates.paths[k]!.id : (vocabulary.bySurface.get(text) ?? candidates.paths[k]!.id),
  );
}

/** Candidate probabilities scaled to sum to 1 over the listed candidates. */
export function listedProbabilities(candidates: MemberCandidates): Float64Array {
  let sum = 0;
  for (const p of candidates.probs) sum += p;
  return Float64Array.from(candidates.probs, (p) => (sum > 0 ? p / sum : 0));
}

/** A method's exact scores over the main member's candidate texts (no bounds to prove: the method defines the scores). */
export function exactCombined(texts: readonly string[], scores: Float64Array): Combined {
  return { texts, scores, lower: scores, upper: scores, unlistedUpper: 0 };
}

/** Indexes of the `k` highest values. */
export function topK(values: Float64Array, k: number): number[] {
  return Array.from(values.keys())
    .sort((a, b) => values[b]! - values[a]! || a - b)
    .slice(0, k);
}
