/**
 * Per-step log-probabilities from the ensemble's combined scores: for an ensemble, a "token" is
 * one chosen piece of text, and its probability is the method's combined score of that piece
 * (GaC: the weighted mean of the members' probabilities of the exact text).
 */
import type { Combined } from "../methods/combined.js";
import type { MemberCandidates } from "../methods/candidates.js";

export interface PieceLogprob {
  /** The piece's exact bytes (latin1 string; "" for the end of generation). */
  readonly bytes: string;
  /** Natural logarithm of its combined score (-Infinity for a score of 0). */
  readonly logprob: number;
}

export interface StepLogprobs extends PieceLogprob {
  /** The best pieces by combined score, best first, at most the number asked for. */
  readonly top: readonly PieceLogprob[];
  /** Each voting member's own probability of the chosen piece, null when it did not list it. */
  readonly members?: readonly { readonly name: string; readonly logprob: number | null }[];
}

export function stepLogprobs(
  combined: Combined,
  winner: number,
  alternatives: number,
  members?: readonly { readonly name: string; readonly candidates: MemberCandidates }[],
): StepLogprobs {
  const chosen = combined.texts[winner]!;
  const top = bestIndexes(combined.scores, alternatives).map((k) => ({ bytes: combined.texts[k]!, logprob: Math.log(combined.scores[k]!) }));
  const perMember = members?.map(({ name, candidates }) => {
    const at = candidates.index.get(chosen);
    return { name, logprob: at === undefined ? null : Math.log(candidates.probs[at]!) };
  });
  return { bytes: chosen, logprob: Math.log(combined.scores[winner]!), top, ...(perMember ? { members: perMember } : {}) };
}

/** Indexes of the `k` highest scores, best first (first index on ties), without sorting them all. */
function bestIndexes(scores: Float64Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < scores.length && k > 0; i++) {
    const s = scores[i]!;
    if (best.length === k && s <= scores[best[k - 1]!]!) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && scores[best[at - 1]!]! < s) at--;
    best.splice(at, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}
