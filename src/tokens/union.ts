/**
 * Union vocabulary of several members, keyed by exact byte surface (GaC's union; also the candidate
 * space UniTE and the token-boundary logic work in).
 *
 * Union id 0 is END, the single shared end-of-generation candidate: every member's EOG tokens map to
 * it. Control/unknown/unused tokens (and any token without bytes) are outside the union (-1). Union ids
 * are assigned in order of first appearance: member 0's tokens by id, then member 1's new surfaces, …
 *
 * Memory: one Int32Array of |V_m| per member (member -> union), one Int32Array of |U| per member
 * (union -> member), the union's surface array (sharing the members' strings) and one Map over |U|.
 */
import { TokenKind, type Vocabulary } from "./vocabulary.js";

/** union id of the single shared end-of-generation candidate */
export const END = 0;

export interface UnionVocabulary {
  readonly size: number;
  /** union id -> bytes (latin1 binary string); surfaces[END] === '' */
  readonly surfaces: readonly string[];
  /** per member: token id -> union id; EOG tokens -> END; -1 for control/unknown/unused tokens */
  readonly memberToUnion: readonly Int32Array[];
  /**
   * per member: union id -> that member's canonical token with that surface (the vocabulary's
   * `bySurface` choice: lowest normal/user id, else the lowest byte token); END -> the member's eos
   * when it is an EOG token, else its lowest EOG id; -1 if none
   */
  readonly unionToMember: readonly Int32Array[];
  /** union id of an exact surface, or -1 ('' is END's surface but is not a text candidate: -1) */
  lookup(surface: string): number;
}

function isTextKind(kind: number): boolean {
  return kind === TokenKind.normal || kind === TokenKind.user || kind === TokenKind.byte;
}

export function buildUnion(vocabs: readonly Vocabulary[]): UnionVocabulary {
  const index = new Map<string, number>();
  const surfaces: string[] = [""];
  const memberToUnion: Int32Array[] = [];

  for (const vocab of vocabs) {
    const toUnion = new Int32Array(vocab.size);
    const { kinds, eog } = vocab;
    const memberSurfaces = vocab.surfaces;
    for (let id = 0; id < vocab.size; id++) {
      if (eog.has(id)) { toUnion[id] = END; continue; }
      const surface = memberSurfaces[id]!;
      if (!isTextKind(kinds[id]!) || surface.length === 0) { toUnion[id] = -1; continue; }
      let u = index.get(surface);
      if (u === undefined) {
        u = surfaces.length;
        surfaces.push(surface);
        index.set(surface, u);
      }
      toUnion[id] = u;
    }
    memberToUnion.push(toUnion);
  }

  const size = surfaces.length;
  const unionToMember: Int32Array[] = vocabs.map((vocab, m) => {
    const toMember = new Int32Array(size).fill(-1);
    const toUnion = memberToUnion[m]!;
    // canonical token per surface: normal/user tokens by lowest id, byte tokens only where none
    for (let pass = 0; pass < 2; pass++) {
      for (let id = 0; id < vocab.size; id++) {
        const u = toUnion[id]!;
        if (u <= END || toMember[u] !== -1) continue;
        const isByte = vocab.kinds[id] === TokenKind.byte;
        if (isByte === (pass === 1)) toMember[u] = id;
      }
    }
    let end = -1;
    if (vocab.eos !== undefined && vocab.eog.has(vocab.eos)) end = vocab.eos;
    else for (const id of vocab.eog) if (end === -1 || id < end) end = id;
    toMember[END] = end;
    return toMember;
  });

  return {
    size,
    surfaces,
    memberToUnion,
    unionToMember,
    lookup(surface: string): number {
      return index.get(surface) ?? -1;
    },
  };
}
