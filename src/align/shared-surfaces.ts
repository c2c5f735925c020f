import type { Vocabulary } from "../tokens/vocabulary.js";

/**
 * Surfaces every vocabulary spells with an ordinary token (normal, byte or user-defined; never
 * control, unknown or unused), sorted, with each vocabulary's canonical id for each surface.
 * EVA's seed dictionary (two vocabularies) and DeePEn's anchors (all members).
 */
export function sharedSurfaces(vocabularies: readonly Vocabulary[]): { surfaces: string[]; ids: Int32Array[] } {
  const [first, ...rest] = vocabularies;
  if (!first) return { surfaces: [], ids: [] };
  const surfaces = [...first.bySurface.keys()].filter((s) => s.length > 0 && rest.every((v) => v.bySurface.has(s))).sort();
  const ids = vocabularies.map((v) => Int32Array.from(surfaces, (s) => v.bySurface.get(s)!));
  return { surfaces, ids };
}
