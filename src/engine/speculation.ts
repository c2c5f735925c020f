import type { DistributionReader, PositionRequest } from "../members/member.js";
import { END_TEXT } from "../methods/candidates.js";
import { commonPrefixLength } from "../tokens/token-lists.js";
import type { FetchPlan, MemberTrack } from "./member-track.js";
import { drawIndex, samplingDistribution, type SamplingOptions } from "./sampling.js";

/** A drafted piece and the drafter's sampling distribution it was drawn from (for speculative-sampling acceptance). */
export interface DraftPiece {
  readonly text: string;
  /** The drafter's sampling probability of each of its candidate texts at this point. */
  readonly q: ReadonlyMap<string, number>;
}

export interface SpeculationContext {
  /** The generated text so far (bytes). */
  readonly text: string;
  readonly tracks: readonly MemberTrack[];
  readonly readers: readonly DistributionReader[];
  readonly voters: readonly number[];
  /** Each member's first fetch (what its steps ask for). */
  readonly fetch: (member: number) => FetchPlan;
}

/**
 * Speculative ensembling across vocabularies. The drafter runs alone on a copy of its track for up
 * to `k` pieces (its reads are kept by its reader, so the steps that follow find them); every other
 * voting member then evaluates its own tokenization of the drafted text in one batch (`prefetch`).
 * The ensemble's steps run as always and read what was evaluated ahead wherever their tokens agree
 * with it. The draft never decides anything: a step's choice is the method's, so greedy text is the
 * plain ensemble's; with sampling, `pick` keeps drafted pieces by speculative-sampling acceptance,
 * so the text is distributed as the plain ensemble's and follows the draft more often.
 */
export class Speculator {
  private pending: DraftPiece[] = [];
  readonly stats = { rounds: 0, drafted: 0, accepted: 0 };

  constructor(
    readonly drafter: number,
    private readonly k: number,
    private readonly sampling: SamplingOptions,
    private readonly random: () => number,
  ) {}

  /** The drafted piece for the coming step, if the draft still holds. */
  get next(): DraftPiece | undefined {
    return this.pending[0];
  }

  /** Drafts a round when the last one is used up or was left, and has the other voters evaluate it. */
  async prepare(context: SpeculationContext): Promise<void> {
    if (this.pending.length > 0 || !context.voters.includes(this.drafter)) return;
    const drafted = await this.draft(context);
    if (drafted.length === 0) return;
    this.pending = drafted;
    this.stats.rounds++;
    this.stats.drafted += drafted.length;
    const texts: string[] = [];
    for (const piece of drafted) texts.push((texts[texts.length - 1] ?? context.text) + piece.text);
    await Promise.all(context.voters.filter((i) => i !== this.drafter).map((i) => this.prefetch(context, i, texts)));
  }

  /**
   * One verifier: its tokenization of the whole draft in one batch, reading what its step at each
   * drafted boundary will ask for, where that step's tokens follow the batch.
   */
  private prefetch(context: SpeculationContext, member: number, texts: readonly string[]): Promise<void> | undefined {
    const reader = context.readers[member]!;
    if (!reader.prefetch) return undefined;
    const track = context.tracks[member]!;
    track.catchUp(context.text);
    const now = track.tokens();
    const guess = track.clone();
    guess.catchUp(texts[texts.length - 1]!);
    const tokens = guess.tokens();
    const requests: PositionRequest[] = [];
    const topK = context.fetch(member).topK;
    // Only the positions the steps at the drafted boundaries will ask about: reading a position costs
    // its own pass through the output layer. Requests past where a step's tokens leave the batch (a
    // healed tail the draft's tokenization does not contain) are left to that step.
    for (const text of [context.text, ...texts.slice(0, -1)]) {
      const plan = track.clone().planFetch(text, { topK });
      const shared = commonPrefixLength(plan.tokens, tokens);
      requests.push(...plan.requests.filter((r) => !r.full && r.position < shared));
    }
    if (requests.length === 0 || commonPrefixLength(now, tokens) === tokens.length) return undefined;
    return reader.prefetch(tokens, requests);
  }

  /** The drafter alone, on a copy of its track: up to `k` pieces, greedy or drawn from its own distribution. */
  private async draft(context: SpeculationContext): Promise<DraftPiece[]> {
    const track = context.tracks[this.drafter]!.clone();
    const reader = context.readers[this.drafter]!;
    const pieces: DraftPiece[] = [];
    let text = context.text;
    while (pieces.length < this.k) {
      const plan = track.planFetch(text, { topK: context.fetch(this.drafter).topK });
      const candidates = track.build(plan, await reader.distributions(plan.tokens, plan.requests));
      if (candidates.texts.length === 0) break;
      const q = samplingDistribution(candidates.probs, this.sampling);
      // Greedy: q is one-hot on the best candidate.
      const chosen = drawIndex(q, this.random);
      const piece = candidates.texts[chosen]!;
      pieces.push({ text: piece, q: new Map(candidates.texts.map((t, i) => [t, q[i]!])) });
      if (piece === END_TEXT) break;
      track.accept(piece, text.length, false);
      text += piece;
    }
    return pieces;
  }

  /** The step chose `text` (undefined: the round failed): the draft goes on when it drafted that, and ends otherwise. */
  observe(text: string | undefined): void {
    if (this.pending.length === 0) return;
    if (this.pending[0]!.text === text) {
      this.pending.shift();
      this.stats.accepted++;
    } else {
      this.pending = [];
    }
  }
}
