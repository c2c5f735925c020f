import type { MemberCandidates } from "./candidates.js";

/** Scores of the candidate texts after a method combined the members. */
export interface Combined {
  readonly texts: readonly string[];
  /** The method's score of each text (a probability for GaC and UniTE). */
  readonly scores: Float64Array;
  /** Bounds on each score over the full vocabularies (GaC); equal to `scores` when exact. */
  readonly lower: Float64Array;
  readonly upper: Float64Array;
  /** Upper bound on the score of any text no member listed. */
  readonly unlistedUpper: number;
}

/** Weights scaled to sum to 1; throws when none is positive. */
export function normalizeWeights(weights: readonly number[]): number[] {
  // Scaled by the largest first: finite weights such as 1e308 would add up to Infinity and every score to 0.
  const largest = Math.max(0, ...weights);
  if (!(largest > 0)) throw new Error("weights must not all be zero");
  const scaled = weights.map((w) => w / largest);
  const total = scaled.reduce((a, b) => a + b, 0);
  return scaled.map((w) => w / total);
}

/** Every text listed by any member, in first-seen order. */
export function unionOfTexts(members: readonly MemberCandidates[], limit = Infinity): string[] {
  const seen = new Set<string>();
  for (const member of members) {
    const n = Math.min(limit, member.texts.length);
    for (let i = 0; i < n; i++) seen.add(member.texts[i]!);
  }
  return [...seen];
}

/** Index of the highest score (first on ties). */
export function argmax(scores: Float64Array): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/**
 * True when no other text, listed or not, can beat `winner` over the full vocabularies: its lower
 * bound is at least every other upper bound.
 */
export function isCertified(combined: Combined, winner: number): boolean {
  const floor = combined.lower[winner]!;
  if (combined.unlistedUpper > floor) return false;
  for (let i = 0; i < combined.texts.length; i++) {
    if (i !== winner && combined.upper[i]! > floor) return false;
  }
  return true;
}

/** Most texts named in a request for more (the rest are covered by the bound's growth). */
const MAX_CONTENDERS = 16;

/** The winner and the listed texts whose upper bound reaches its lower bound: the ones a certification hinges on, best first. */
export function contenders(combined: Combined, winner: number, limit = MAX_CONTENDERS): string[] {
  const floor = combined.lower[winner]!;
  const open = combined.texts.map((_, i) => i).filter((i) => i !== winner && combined.upper[i]! > floor);
  open.sort((a, b) => combined.scores[b]! - combined.scores[a]!);
  return [winner, ...open.slice(0, limit - 1)].map((i) => combined.texts[i]!);
}
