/** What every method takes in: each member's candidate continuations of the exact text, with bounds. */

/** The end-of-generation candidate: every member's EOG tokens map to this one empty text. */
export const END_TEXT = "";

/**
 * How a member takes in a chosen text: `append` a token after its current tokens, or, after
 * healing, `replace` its last tokens by one that extends them.
 */
export type TokenPath =
  | { readonly kind: "append"; readonly id: number }
  /** Drop the member's last `drop` tokens (the healed tail, or part of it), append `before` (another split of the tail, when there is one) and `id`. */
  | { readonly kind: "replace"; readonly id: number; readonly drop: number; readonly before?: readonly number[] };

/**
 * A member's distribution over byte continuations of the exact text (latin1 strings), with bounds
 * that let a method prove its choice equals the one over the full vocabulary.
 */
export interface MemberCandidates {
  readonly texts: readonly string[];
  /** Point estimate of each text's probability (exact for plain distributions). */
  readonly probs: Float64Array;
  /** The true probability lies in [probs[i] · lowerScale, probs[i] + hiExtra[i]]. */
  readonly lowerScale: number;
  readonly hiExtra: Float64Array;
  /** Any text not listed has at most this probability. */
  readonly unlistedMax: number;
  readonly paths: readonly TokenPath[];
  readonly index: ReadonlyMap<string, number>;
  /** Whether the distribution covers the member's whole vocabulary. */
  readonly complete: boolean;
  /** Surface of the healed token, when candidates continue a foreign boundary. */
  readonly healedSurface?: string;
  /** Why the member's plain distribution stands in for healed candidates this step (for the trace). */
  readonly fallback?: string;
}
