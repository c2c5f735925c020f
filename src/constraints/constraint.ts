/**
 * A constraint on generated text: a language (a grammar, a JSON schema) recognized byte by byte.
 * The engine keeps the state for the text generated so far and drops every member's candidates
 * whose bytes would leave the language, so all members and methods stay inside it alike.
 */
export interface ConstraintState {
  /** The state after `bytes` (a latin1 string, one char per byte), or null when they leave the language. */
  advance(bytes: string): ConstraintState | null;
  /** Whether the text so far is complete: generation may end here. */
  readonly canEnd: boolean;
  /** Whether any more text may follow (false: the text is finished and only the end is allowed). */
  readonly canContinue: boolean;
  /** Fewest bytes that complete the text (0 when it can end here). */
  readonly minBytesToEnd: number;
}

export interface TextConstraint {
  /** The state before any generated text. */
  start(): ConstraintState;
  /** What the constraint is, for errors ("JSON schema 'weather'", "grammar"). */
  readonly description: string;
}

/** The constraint cannot be met: no text allowed by it fits in what is left of the generation. */
export class ConstraintError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConstraintError";
  }
}
