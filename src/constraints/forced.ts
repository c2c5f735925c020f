import type { ConstraintState } from "./constraint.js";

/**
 * The bytes every text of the language must continue with here (up to `limit`): where the
 * constraint allows exactly one next byte and the text cannot end yet (`{"name": "` in a JSON
 * schema's object), there is nothing to vote on.
 */
export function forcedBytes(state: ConstraintState, limit: number): string {
  let forced = "";
  for (let current = state; forced.length < limit && !current.canEnd; ) {
    let only = -1;
    let next: ConstraintState | null = null;
    for (let b = 0; b < 256; b++) {
      const after = current.advance(String.fromCharCode(b));
      if (after === null) continue;
      if (only >= 0) return forced;
      only = b;
      next = after;
    }
    if (next === null) return forced;
    forced += String.fromCharCode(only);
    current = next;
  }
  return forced;
}
