/**
 * A text constraint applied to one step: every member's candidates whose bytes would leave the
 * language, or could not be finished in the steps left, are dropped before any method combines
 * them. Dropping only removes texts, so the bounds of the texts kept stay valid, and an unlisted
 * text is still bounded by the member's `unlistedMax`.
 */
import type { ConstraintState } from "../constraints/constraint.js";
import { END_TEXT, type MemberCandidates } from "../methods/candidates.js";

export class StepConstraint {
  /**
   * @param state the constraint's state after the text generated so far
   * @param stepsLeftAfter steps the generation may take after this one (each writes at least one byte)
   * @param bytesLeft bytes the generation may still write, this step's piece included (its token and context budgets)
   */
  constructor(
    readonly state: ConstraintState,
    private readonly stepsLeftAfter: number,
    private readonly bytesLeft: number,
  ) {}

  /** Whether `text` (latin1 bytes, or END) may be chosen at this step. The grammar caches its transitions, so this is a few look-ups per byte. */
  allows(text: string): boolean {
    if (text === END_TEXT) return this.state.canEnd;
    const after = this.state.advance(text);
    return after !== null && after.minBytesToEnd <= this.stepsLeftAfter && text.length + after.minBytesToEnd <= this.bytesLeft;
  }

  /** The member's candidates that may be chosen, in their order. */
  filter(candidates: MemberCandidates): MemberCandidates {
    const kept: number[] = [];
    candidates.texts.forEach((t, i) => {
      if (this.allows(t)) kept.push(i);
    });
    if (kept.length === candidates.texts.length) return candidates;
    const texts = kept.map((i) => candidates.texts[i]!);
    return {
      ...candidates,
      texts,
      probs: Float64Array.from(kept, (i) => candidates.probs[i]!),
      hiExtra: Float64Array.from(kept, (i) => candidates.hiExtra[i]!),
      paths: kept.map((i) => candidates.paths[i]!),
      index: new Map(texts.map((t, k) => [t, k])),
    };
  }
}
