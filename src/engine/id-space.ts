/**
 * The engine's side of the methods that combine members in token-id space (EVA, DeePEn): prepares
 * (or loads from the cache) their alignment, and combines one step's member candidates into scores
 * over the main member's candidates. The chosen text is then a whole token of the main member, which
 * the main member appends as its own; the others follow the text through their tracks.
 */
import type { Member } from "../members/member.js";
import type { MemberCandidates } from "../methods/candidates.js";
import type { Combined } from "../methods/combined.js";
import { candidateIds } from "../methods/id-space.js";
import { evaStep } from "../methods/eva.js";
import { deepenStep, DEEPEN_SEARCH_DEFAULTS, relativeSpace, type DeepenSearch, type RelativeSpace } from "../methods/deepen.js";
import { prepareAlignment, type PrepareOptions } from "../align/cache.js";
import type { Alignment, AlignMethod } from "../align/alignment.js";
import type { EvaParams } from "../align/eva-map.js";
import type { DeepenParams } from "../align/deepen-relative.js";

export interface EvaOptions extends Partial<EvaParams> {
  /** Faithfulness filter: a member's top-1 must be within another member's top `faithfulK`. */
  readonly faithfulK?: number;
}

export type DeepenOptions = Partial<DeepenParams> & Partial<DeepenSearch>;

export const DEFAULT_FAITHFUL_K = 3;

export function isIdSpaceMethod(method: string): method is AlignMethod {
  return method === "eva" || method === "deepen";
}

export interface IdSpaceStep {
  readonly combined: Combined;
  /** EVA: names of the members that passed the faithfulness filter (empty: none did, and all were averaged). */
  readonly survivors?: readonly string[];
}

export class IdSpaceMethod {
  private readonly spaces: (RelativeSpace | undefined)[];

  private constructor(
    readonly method: AlignMethod,
    readonly mainIndex: number,
    readonly alignment: Alignment,
    private readonly members: readonly Member[],
    private readonly eva: EvaOptions,
    private readonly search: DeepenSearch,
  ) {
    this.spaces = method === "deepen" ? alignment.matrices.map((m) => (m ? relativeSpace(m) : undefined)) : [];
  }

  static async prepare(
    method: AlignMethod,
    members: readonly Member[],
    specMembers: readonly { readonly name: string; readonly model?: string; readonly primary?: boolean }[],
    main: string | undefined,
    params: { readonly eva?: EvaOptions; readonly deepen?: DeepenOptions },
    cache: PrepareOptions,
  ): Promise<IdSpaceMethod> {
    const primary = specMembers.findIndex((m) => m.primary === true);
    const mainIndex = main !== undefined ? specMembers.findIndex((m) => m.name === main) : Math.max(0, primary);
    if (mainIndex < 0) throw new Error(`main: no member is named '${main}'; members are ${specMembers.map((m) => m.name).join(", ")}`);
    const paths = specMembers.map((m) => {
      if (!m.model) throw new Error(`member '${m.name}': ${method} reads the embedding matrices from the member's GGUF file, and this member has none; use method gac or unite`);
      return { name: m.name, model: m.model };
    });
    const { faithfulK: _k, ...evaParams } = params.eva ?? {};
    const { steps, learningRate, finalLearningRate, ...deepenParams } = params.deepen ?? {};
    const prepared = await prepareAlignment({ method, members: paths, mainIndex, eva: evaParams, deepen: deepenParams }, cache);
    const lr = learningRate ?? DEEPEN_SEARCH_DEFAULTS.learningRate;
    const search: DeepenSearch = { steps: steps ?? DEEPEN_SEARCH_DEFAULTS.steps, learningRate: lr, finalLearningRate: finalLearningRate ?? lr / 4 };
    return new IdSpaceMethod(method, mainIndex, prepared.alignment, members, params.eva ?? {}, search);
  }

  /** Combines the voters' candidates; `voters` must include the main member. */
  step(voters: readonly number[], weights: readonly number[], candidates: ReadonlyMap<number, MemberCandidates>): IdSpaceStep {
    const mainAt = voters.indexOf(this.mainIndex);
    if (mainAt < 0) throw new Error(`the main member '${this.members[this.mainIndex]!.name}' does not vote (weight 0?); give it a weight > 0 or choose another main member`);
    const base = voters.map((i, k) => {
      const c = candidates.get(i)!;
      return { candidates: c, ids: candidateIds(this.members[i]!.vocabulary, c), weight: weights[k]! };
    });
    if (this.method === "eva") {
      const result = evaStep(
        base.map((b, k) => ({ ...b, map: this.alignment.matrices[voters[k]!] })),
        mainAt,
        this.eva.faithfulK ?? DEFAULT_FAITHFUL_K,
      );
      return { combined: result.combined, survivors: voters.filter((_, k) => result.survived[k]).map((i) => this.members[i]!.name) };
    }
    return { combined: deepenStep(base.map((b, k) => ({ ...b, space: this.spaces[voters[k]!]! })), mainAt, this.search) };
  }
}
