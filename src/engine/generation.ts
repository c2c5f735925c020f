import { ContextOverflowError, MemberUnavailableError, type DistributionReader, type Member, type Prompt } from "../members/member.js";
import type { SparseDistribution } from "../members/distribution.js";
import { gac } from "../methods/gac.js";
import { unite, uniteUnion } from "../methods/unite.js";
import { bytesVote, type BytesOptions } from "../methods/bytes.js";
import { argmax, contenders, isCertified, type Combined } from "../methods/combined.js";
import { END_TEXT, type MemberCandidates } from "../methods/candidates.js";
import { MemberTrack, type BranchPlan, type EvaluationPlan, type FetchPlan } from "./member-track.js";
import { pickIndex, samplingDistribution, seededRandom, speculativePick, type SamplingOptions } from "./sampling.js";
import { Speculator } from "./speculation.js";
import { TextOutput } from "./text-output.js";
import { surfaceToText } from "../tokens/vocabulary.js";
import type { IdSpaceMethod } from "./id-space.js";
import type { CandidateTrace, FinishReason, GenerationResult, MemberDrop, MemberSpec, MethodName, Step, StepTrace } from "./types.js";
import { ConstraintError, type ConstraintState, type TextConstraint } from "../constraints/constraint.js";
import { StepConstraint } from "./constrained-candidates.js";
import { stepLogprobs } from "./step-logprobs.js";
import { forcedBytes } from "../constraints/forced.js";

/**
 * Members list this many top tokens at least: llama.cpp sorts the whole vocabulary for any top-N
 * anyway, so a longer list costs little and spares GaC's bound and UniTE's look-ups a second round.
 * When a bound fails, fetches grow by FETCH_GROWTH, up to MAX_GROWN_FETCH, then the full vocabulary.
 */
const MIN_FETCH = 128;
const FETCH_GROWTH = 8;
const MAX_GROWN_FETCH = 8192;

/** Longest text the constraint forces in one step (the members catch up with it at their next evaluation). */
const MAX_FORCED = 16;

/** Everything one generation needs to know, resolved from the ensemble's spec and the call's options. */
export interface GenerationSettings {
  readonly method: MethodName;
  readonly uniteK: number;
  readonly heal: boolean;
  readonly gate: { readonly threshold: number } | undefined;
  /** In tokens of the counting member (see `countingIndex`). */
  readonly maxTokens: number;
  readonly maxSteps: number;
  readonly sampling: SamplingOptions;
  readonly stop: readonly string[];
  readonly weights: readonly number[];
  readonly bytes: BytesOptions;
  readonly only: string | undefined;
  readonly trace: boolean;
  readonly fullDistributions: boolean;
  readonly constraint: TextConstraint | undefined;
  readonly logprobs: number | undefined;
  readonly memberLogprobs: boolean;
  readonly signal: AbortSignal | undefined;
  /** Speculative ensembling: the drafting member's index and pieces per round. */
  readonly speculate: { readonly drafter: number; readonly k: number } | undefined;
}

/** What one step's vote produced. */
interface Vote {
  readonly candidates: Map<number, MemberCandidates>;
  readonly combined: Combined;
  /** Index of the chosen text in `combined`. */
  readonly winner: number;
  readonly voters: readonly number[];
  /** The primary decided alone (gating), or the constraint did (no voters). */
  readonly decidedAlone: boolean;
  /** Rounds in which the method's bound asked the members for more candidates. */
  readonly escalations: number;
  /** EVA's faithfulness survivors, for the trace. */
  readonly survivors?: readonly string[];
  /** Byte-level voting: each voter's mass on the committed bytes. */
  readonly memberMass?: readonly number[];
}

/** A step the constraint decides alone: the only text it allows here, score 1, no voters. */
function forcedVote(text: string): Vote {
  const one = Float64Array.of(1);
  return { candidates: new Map(), combined: { texts: [text], scores: one, lower: one, upper: one, unlistedUpper: 0 }, winner: 0, voters: [], decidedAlone: true, escalations: 0 };
}

/** Raised inside a step when members with `onFailure: drop` could not be reached or kept failing; the step is redone without them. */
class DroppedMembers extends Error {
  constructor(readonly failures: readonly { readonly index: number; readonly reason: string }[]) {
    super(`members ${failures.map((f) => f.index).join(", ")} dropped`);
  }
}

/** Where a generation's time went. */
class Timings {
  readonly memberMs: Record<string, number>;
  memberWallMs = 0;
  extractionMs = 0;
  syncMs = 0;
  private readonly started = performance.now();

  constructor(members: readonly Member[]) {
    this.memberMs = Object.fromEntries(members.map((m) => [m.name, 0]));
  }

  summary(): GenerationResult["timings"] {
    const totalMs = performance.now() - this.started;
    const engineMs = Math.max(0, totalMs - this.memberWallMs);
    return {
      totalMs,
      memberMs: this.memberMs,
      engineMs,
      extractionMs: this.extractionMs,
      syncMs: this.syncMs,
      combinationMs: Math.max(0, engineMs - this.extractionMs - this.syncMs),
    };
  }
}

/**
 * One generation: its own view of every voting member (a track following the text), the text so
 * far, and the loop evaluate → vote → choose → sync. Methods stay pure functions; this object
 * holds the per-generation state they are fed from.
 */
export class Generation {
  private readonly tracks: MemberTrack[] = [];
  private readonly active: number[];
  private readonly dropped = new Set<number>();
  private readonly drops: MemberDrop[] = [];
  /** Drops not yet announced in a step. */
  private unannounced: MemberDrop[] = [];
  /** Members with a vote when the generation started: a step is ensembled when all of them voted. */
  private readonly votingCount: number;
  private readonly primaryIndex: number;
  private gated: boolean;
  private readonly random: () => number;
  private readonly output: TextOutput;
  private readonly evaluations: number[];
  private readonly timings: Timings;
  private readonly firstFetch: number;
  /** Each member's first fetch of a step: `firstFetch`, or less where the member asks for less and the bound proves the choice (see `provenByBound`). */
  private readonly firstFetches: readonly number[];
  /** Generated bytes (latin1). */
  private text = "";
  private steps = 0;
  private ensembledSteps = 0;
  private escalatedSteps = 0;
  private finishReason: FinishReason = "length";
  /** The counting member's tokens for the generated text, after the last step. */
  private completionTokens = 0;
  /** The constraint's state after the text so far, and its filter for the step being voted. */
  private constraintState: ConstraintState | undefined;
  private stepConstraint: StepConstraint | undefined;
  private readonly speculator: Speculator | undefined;

  constructor(
    private readonly members: readonly Member[],
    specMembers: readonly MemberSpec[],
    prompt: Prompt,
    private readonly settings: GenerationSettings,
    private readonly idSpace: IdSpaceMethod | undefined,
    /** Where each member's distributions are read (the generation's sessions); default the members themselves. */
    private readonly readers: readonly DistributionReader[] = members,
  ) {
    const { weights, gate } = settings;
    this.primaryIndex = specMembers.findIndex((m) => m.primary);
    if (gate && this.primaryIndex < 0) throw new Error("gating needs a primary member: add `primary: true` to one member");
    this.active = members.map((_, i) => i).filter((i) => weights[i]! > 0);
    this.votingCount = this.active.length;
    this.gated = gate !== undefined && this.active.length > 1 && weights[this.primaryIndex]! > 0;
    this.onFailure = specMembers.map((m) => m.onFailure ?? "fail");
    // Only members with a vote are tokenized and tracked (a muted member's vocabulary may not even encode the prompt).
    for (const i of this.active) this.tracks[i] = new MemberTrack(members[i]!, members[i]!.promptTokens(prompt), settings.heal);
    for (const i of this.active) {
      const track = this.tracks[i]!;
      if (track.tokenCount + 1 > members[i]!.contextSize) {
        throw new ContextOverflowError(
          members[i]!.name,
          `the prompt is ${track.tokenCount} tokens but this member's context holds ${members[i]!.contextSize}; shorten the prompt or raise contextSize`,
        );
      }
    }
    this.random = seededRandom(settings.sampling.seed);
    const speculate = settings.speculate;
    this.speculator =
      speculate && this.active.length > 1 && this.active.includes(speculate.drafter)
        ? new Speculator(speculate.drafter, speculate.k, settings.sampling, seededRandom(settings.sampling.seed ^ 0x5bd1e995))
        : undefined;
    this.output = new TextOutput(settings.stop);
    this.evaluations = members.map(() => 0);
    this.timings = new Timings(members);
    this.firstFetch = Math.max(settings.uniteK, MIN_FETCH);
    const shorter = provenByBound(settings, idSpace !== undefined);
    this.firstFetches = members.map((m) => (shorter && m.firstFetch !== undefined ? Math.max(1, Math.min(m.firstFetch, this.firstFetch)) : this.firstFetch));
    this.constraintState = settings.constraint?.start();
    const needed = this.constraintState?.minBytesToEnd ?? 0;
    const room = Math.min(this.stepsLeftAfterStep() + 1, this.bytesLeft());
    if (needed > room) {
      throw new ConstraintError(
        `the shortest text ${settings.constraint!.description} allows is ${needed} bytes, and this generation has room for ${room} (a step or a token may write one byte); raise max_tokens`,
      );
    }
  }

  /** Steps the generation may take after the coming one (each writes at least one byte). */
  private stepsLeftAfterStep(): number {
    return this.settings.maxSteps - this.steps - 1;
  }

  /**
   * Bytes the generation can still write (this step's piece included) and stay within
   * `maxTokens` and every member's context: a token spells at least one byte. One token is kept
   * back because re-tokenizing the text's tail can move a boundary.
   */
  private bytesLeft(): number {
    const tokens = this.settings.maxTokens - this.completionTokens - 1;
    const context = this.active.map((i) => this.members[i]!.contextSize - this.tracks[i]!.tokenCount - 3 - (this.text.length - this.tracks[i]!.textLength));
    return Math.min(tokens, ...context);
  }

  private readonly onFailure: readonly ("fail" | "drop")[];

  async *run(): AsyncGenerator<Step, GenerationResult, undefined> {
    const { settings } = this;
    while (this.completionTokens < settings.maxTokens && this.steps < settings.maxSteps) {
      if (settings.signal?.aborted) throw settings.signal.reason ?? new Error("aborted");
      if (this.contextFull()) break;
      this.stepConstraint = this.constraintState ? new StepConstraint(this.constraintState, this.stepsLeftAfterStep(), this.bytesLeft()) : undefined;
      const forced = this.constraintState ? forcedBytes(this.constraintState, MAX_FORCED) : "";
      if (!forced) await this.speculate();
      let vote: Vote;
      try {
        vote = forced ? forcedVote(forced) : await this.vote();
      } catch (error) {
        if (!(error instanceof DroppedMembers)) throw error;
        this.drop(error.failures);
        continue;
      }
      const step = this.accept(vote);
      yield this.unannounced.length > 0 ? { ...step, dropped: this.takeUnannounced() } : step;
      if (this.finishReason === "stop") break;
    }
    const tail = this.output.next(this.text, true);
    if (tail && this.finishReason === "length") yield { index: this.steps, text: tail, bytes: "", ensembled: false, escalations: 0 };
    return this.result();
  }

  /**
   * Whether a voting member's context cannot take another step, counted on its own tokens for the
   * text as it is now: a piece another member chose may be several tokens for this one.
   */
  private contextFull(): boolean {
    const syncStart = performance.now();
    const full = this.active.some((i) => {
      const track = this.tracks[i]!;
      track.catchUp(this.text);
      return track.tokenCount + 2 > this.members[i]!.contextSize;
    });
    this.timings.syncMs += performance.now() - syncStart;
    return full;
  }

  /** Drafts ahead when the draft is used up; a failure here only costs the speed-up (the step reports it). */
  private async speculate(): Promise<void> {
    if (!this.speculator) return;
    const start = performance.now();
    try {
      await this.speculator.prepare({ text: this.text, tracks: this.tracks, readers: this.readers, voters: this.active, fetch: this.fetchFirst });
    } catch {
      this.speculator.observe(undefined);
    }
    this.timings.memberWallMs += performance.now() - start;
  }

  /** Members on failed machines (`onFailure: drop`) leave; the step starts again without them. */
  private drop(failures: readonly { readonly index: number; readonly reason: string }[]): void {
    for (const { index, reason } of failures) {
      this.dropped.add(index);
      this.active.splice(this.active.indexOf(index), 1);
      const drop = { member: this.members[index]!.name, step: this.steps, reason };
      this.drops.push(drop);
      this.unannounced.push(drop);
    }
    if (this.dropped.has(this.primaryIndex) || this.active.length < 2) this.gated = false;
  }

  private takeUnannounced(): MemberDrop[] {
    const drops = this.unannounced;
    this.unannounced = [];
    return drops;
  }

  /** Takes the vote's choice into the text and every voter's track; returns the step. */
  private accept(vote: Vote): Step {
    const { combined, winner, voters, decidedAlone, escalations, survivors } = vote;
    if (escalations > 0) this.escalatedSteps++;
    const chosen = combined.texts[winner]!;
    this.speculator?.observe(chosen);
    this.steps++;
    const ensembled = !decidedAlone && voters.length === this.votingCount;
    if (ensembled) this.ensembledSteps++;
    const index = this.steps - 1;
    const trace = this.settings.trace ? { ...this.traceOf(vote), survivors } : undefined;
    const logprobs = this.logprobsOf(vote);
    if (chosen === END_TEXT) {
      this.finishReason = "stop";
      return { index, text: this.output.next(this.text, true), bytes: chosen, ensembled, escalations, trace, logprobs };
    }
    const before = this.text.length;
    this.text += chosen;
    const syncStart = performance.now();
    for (const i of voters) this.tracks[i]!.accept(chosen, before, voters.length === 1 || i === this.idSpace?.mainIndex);
    this.timings.syncMs += performance.now() - syncStart;
    this.constraintState = this.constraintState?.advance(chosen) ?? undefined;
    const stopAt = this.output.findStop(this.text);
    // A finished constrained text: nothing but the end may follow.
    const finished = this.constraintState !== undefined && !this.constraintState.canContinue;
    if (stopAt >= 0 || finished) {
      if (stopAt >= 0) this.text = this.text.slice(0, stopAt);
      this.finishReason = "stop";
      return { index, text: this.output.next(this.text, true), bytes: chosen, ensembled, escalations, trace, logprobs };
    }
    // A piece may hold several of the counting member's tokens: the text ends after the last one the budget allows.
    const ends = this.tracks[this.countingIndex()]!.generatedTokenEnds(this.text);
    this.completionTokens = Math.min(ends.length, this.settings.maxTokens);
    if (ends.length >= this.settings.maxTokens) {
      this.text = this.text.slice(0, ends[this.settings.maxTokens - 1]!);
      return { index, text: this.output.next(this.text, true), bytes: chosen, ensembled, escalations, trace, logprobs };
    }
    return { index, text: this.output.next(this.text, false), bytes: chosen, ensembled, escalations, trace, logprobs };
  }

  private logprobsOf(vote: Vote): Step["logprobs"] {
    const { logprobs, memberLogprobs } = this.settings;
    if (logprobs === undefined) return undefined;
    const members = memberLogprobs ? vote.voters.map((i) => ({ name: this.members[i]!.name, candidates: vote.candidates.get(i)! })) : undefined;
    return stepLogprobs(vote.combined, vote.winner, logprobs, members);
  }

  /** The member whose tokens `maxTokens` counts: the primary, else the first voting member. */
  private countingIndex(): number {
    return this.active.includes(this.primaryIndex) ? this.primaryIndex : this.active[0]!;
  }

  private result(): GenerationResult {
    const { weights } = this.settings;
    return {
      text: surfaceToText(this.text),
      finishReason: this.finishReason,
      completionTokens: Math.min(this.tracks[this.countingIndex()]!.generatedTokenEnds(this.text).length, this.settings.maxTokens),
      steps: this.steps,
      ensembledSteps: this.ensembledSteps,
      escalatedSteps: this.escalatedSteps,
      members: this.members.map((m, i) => ({ name: m.name, weight: weights[i]!, evaluations: this.evaluations[i]!, dropped: this.dropped.has(i) })),
      dropped: [...this.drops],
      ...(this.speculator ? { speculation: { ...this.speculator.stats } } : {}),
      timings: this.timings.summary(),
    };
  }

  /** Evaluates members concurrently; members' own time is what `distributions` took. */
  private async evaluate(indexes: readonly number[], fetch: (i: number) => FetchPlan): Promise<Map<number, MemberCandidates>> {
    const { tracks, timings } = this;
    const plans = new Map<number, EvaluationPlan>();
    const planStart = performance.now();
    for (const i of indexes) plans.set(i, tracks[i]!.planFetch(this.text, fetch(i)));
    const wallStart = performance.now();
    timings.syncMs += wallStart - planStart;
    const settled = await Promise.allSettled(
      indexes.map(async (i) => {
        const t0 = performance.now();
        const plan = plans.get(i)!;
        const member = this.members[i]!;
        const reader = this.readers[i]!;
        const dists: SparseDistribution[] = await reader.distributions(plan.tokens, plan.requests);
        this.evaluations[i]!++;
        // Other splits of a healed tail that hold enough mass: one more evaluation each.
        const branches = tracks[i]!.branchPlans(plan, dists);
        const branchDists: SparseDistribution[] = [];
        for (const b of branches) {
          branchDists.push((await reader.distributions(b.tokens, [b.request]))[0]!);
          this.evaluations[i]!++;
        }
        timings.memberMs[member.name]! += performance.now() - t0;
        return { dists, branches, branchDists };
      }),
    );
    timings.memberWallMs += performance.now() - wallStart;
    const failed = indexes.filter((_, k) => settled[k]!.status === "rejected");
    if (failed.length > 0) {
      const reason = (i: number) => (settled[indexes.indexOf(i)] as PromiseRejectedResult).reason as unknown;
      const droppable = (i: number) => reason(i) instanceof MemberUnavailableError && this.onFailure[i] === "drop";
      const fatal = failed.find((i) => !droppable(i));
      if (fatal !== undefined || failed.length >= this.active.length) throw reason(fatal ?? failed[0]!);
      throw new DroppedMembers(failed.map((i) => ({ index: i, reason: (reason(i) as Error).message })));
    }
    const answers = settled.map((s) => (s as PromiseFulfilledResult<{ dists: SparseDistribution[]; branches: BranchPlan[]; branchDists: SparseDistribution[] }>).value);
    const result = new Map<number, MemberCandidates>();
    const buildStart = performance.now();
    indexes.forEach((i, k) => {
      const { dists, branches, branchDists } = answers[k]!;
      const built = tracks[i]!.build(plans.get(i)!, dists, branches, branchDists);
      result.set(i, this.stepConstraint ? this.stepConstraint.filter(built) : built);
    });
    timings.extractionMs += performance.now() - buildStart;
    return result;
  }

  /** A member generating alone keeps its own boundaries, so its positions are never asked about again. */
  private fetchFirst = (i: number): FetchPlan => ({ topK: this.firstFetches[i]!, full: this.settings.fullDistributions, ...(this.active.length === 1 ? { once: true } : {}) });

  /** One step's vote: evaluate (the primary first when gated), then the method combines and chooses. */
  private async vote(): Promise<Vote> {
    const { settings, active, primaryIndex } = this;
    let candidates: Map<number, MemberCandidates>;
    let decidedAlone = false;
    if (this.gated) {
      candidates = await this.evaluate([primaryIndex], this.fetchFirst);
      const primary = candidates.get(primaryIndex)!;
      decidedAlone = primary.probs.length > 0 && primary.probs[0]! > settings.gate!.threshold;
      if (!decidedAlone) {
        const others = await this.evaluate(
          active.filter((i) => i !== primaryIndex),
          this.fetchFirst,
        );
        for (const [i, c] of others) candidates.set(i, c);
      }
    } else {
      candidates = await this.evaluate(active, this.fetchFirst);
    }
    const voters = decidedAlone ? [primaryIndex] : [...active];
    const voterWeights = voters.map((i) => settings.weights[i]!);
    const base = { candidates, voters, decidedAlone };
    // A member voting alone keeps its own token-level choice, whatever the method.
    const ensembling = !decidedAlone && voters.length > 1;
    let vote: Vote;
    if (this.idSpace && ensembling) {
      const idSpace = this.idSpace;
      const { result, escalations } = await this.escalate(voters, candidates, async () => idSpace.step(voters, voterWeights, candidates), (r) => this.allowsSome(r.combined));
      vote = { ...base, combined: result.combined, winner: this.pick(result.combined), escalations, survivors: result.survivors };
    } else if (settings.method === "unite" && ensembling) {
      const { result: combined, escalations } = await this.escalate(voters, candidates, () => this.uniteCombined(voters, voterWeights, candidates), (c) => this.allowsSome(c));
      vote = { ...base, combined, winner: this.pick(combined), escalations };
    } else if (settings.method === "bytes" && ensembling) {
      vote = await this.bytesVote(base, voterWeights);
    } else {
      vote = await this.gacVote(base, voterWeights);
    }
    if (!this.allowsSome(vote.combined)) {
      throw new ConstraintError(`no member can continue the text within ${settings.constraint!.description} here (their whole vocabularies were asked); the text so far: ${JSON.stringify(surfaceToText(this.text))}`);
    }
    return vote;
  }

  /** Under a constraint, the members' listed candidates may all lie outside the language: then there is nothing to choose yet. */
  private allowsSome(combined: Combined): boolean {
    return this.stepConstraint === undefined || combined.scores.some((p) => p > 0);
  }

  /** The method's choice; with sampling and a drafted piece, by speculative-sampling acceptance (distributed as a plain draw). */
  private pick(combined: Combined): number {
    const draft = this.speculator?.next;
    if (this.greedy || !draft) return pickIndex(combined.scores, this.settings.sampling, this.random);
    const p = samplingDistribution(combined.scores, this.settings.sampling);
    const q = combined.texts.map((t) => draft.q.get(t) ?? 0);
    return speculativePick(p, q, combined.texts.indexOf(draft.text), this.random);
  }

  private get greedy(): boolean {
    return this.settings.sampling.temperature <= 0;
  }

  /**
   * Asks the voters for more candidates (×8 up to 8192, then the full vocabulary) until `proven`
   * holds for the re-computed result (a method's bound holds only under greedy decoding; see the
   * callers). The rounds grow from `firstFetch` whatever a member's own first fetch was, so a
   * shorter first list never adds a round.
   */
  private async escalate<T>(
    voters: readonly number[],
    candidates: Map<number, MemberCandidates>,
    compute: () => T | Promise<T>,
    proven: (result: T) => boolean,
    contenders: (result: T) => readonly string[] | undefined = () => undefined,
  ): Promise<{ result: T; escalations: number }> {
    let result = await compute();
    let escalations = 0;
    for (let fetchK = this.firstFetch; !this.settings.fullDistributions; ) {
      if (proven(result)) break;
      escalations++;
      const full = fetchK >= MAX_GROWN_FETCH;
      fetchK *= FETCH_GROWTH;
      // The texts still in the running are asked for by name too: a member whose list cannot grow (a capped server) can still look them up.
      const texts = contenders(result);
      const fetch: FetchPlan = full ? { topK: this.firstFetch, full: true, texts } : { topK: Math.min(fetchK, MAX_GROWN_FETCH), texts };
      const more = await this.evaluate(voters, () => fetch);
      for (const [i, c] of more) candidates.set(i, c);
      result = await compute();
      if (full) break;
    }
    return { result, escalations };
  }

  /** GaC, with its greedy choice proven equal to full-vocabulary GaC. */
  private async gacVote(base: Pick<Vote, "candidates" | "voters" | "decidedAlone">, voterWeights: readonly number[]): Promise<Vote> {
    const { candidates, voters } = base;
    const { result: combined, escalations } = await this.escalate(
      voters,
      candidates,
      () => gac(voters.map((i) => candidates.get(i)!), voterWeights),
      (c) => this.allowsSome(c) && (!this.greedy || isCertified(c, argmax(c.scores))),
      (c) => contenders(c, argmax(c.scores)),
    );
    return { ...base, combined, winner: this.pick(combined), escalations };
  }

  /** Byte-level voting down the trie of the voters' candidates, its greedy decision proven over the full vocabularies. */
  private async bytesVote(base: Pick<Vote, "candidates" | "voters" | "decidedAlone">, voterWeights: readonly number[]): Promise<Vote> {
    const { candidates, voters } = base;
    const chooser = this.greedy ? undefined : (scores: Float64Array) => pickIndex(scores, this.settings.sampling, this.random);
    const { result, escalations } = await this.escalate(
      voters,
      candidates,
      () => bytesVote(voters.map((i) => candidates.get(i)!), voterWeights, this.settings.bytes, chooser),
      (v) => this.allowsSome(v.combined) && (!this.greedy || v.proven),
    );
    return { ...base, combined: result.combined, winner: 0, escalations, memberMass: result.memberMass };
  }

  /** UniTE: union of top-k texts; a member that did not list a text is asked for it (or its first token). */
  private async uniteCombined(voters: readonly number[], voterWeights: readonly number[], candidates: Map<number, MemberCandidates>): Promise<Combined> {
    const topK = this.settings.uniteK;
    const union = uniteUnion(voters.map((i) => candidates.get(i)!), topK);
    const lookups = new Map<number, string[]>();
    const standIns = new Map<number, string[]>();
    for (const i of voters) {
      const track = this.tracks[i]!;
      const own = candidates.get(i)!;
      const texts = union.map((t) => (track.spellsAsOneToken(t) ? t : track.firstTokenText(t)));
      standIns.set(i, texts);
      const missing = texts.filter((t) => !own.index.has(t));
      if (missing.length > 0) lookups.set(i, missing);
    }
    if (lookups.size > 0) {
      const more = await this.evaluate([...lookups.keys()], (i) => ({ topK: Math.max(topK, MIN_FETCH), texts: lookups.get(i)!, extendLast: true }));
      for (const [i, c] of more) candidates.set(i, c);
    }
    const values = voters.map((i) => {
      const own = candidates.get(i)!;
      return Float64Array.from(standIns.get(i)!, (t) => {
        const j = own.index.get(t);
        return j === undefined ? 0 : own.probs[j]!;
      });
    });
    return unite(union, values, voterWeights);
  }

  private traceOf(vote: Vote): StepTrace {
    const { voters, candidates, combined, winner, memberMass } = vote;
    const show = (text: string, probability: number): CandidateTrace => ({
      text: text === END_TEXT ? "<end>" : surfaceToText(text),
      probability,
    });
    const order = Array.from(combined.scores.keys()).sort((a, b) => combined.scores[b]! - combined.scores[a]!);
    return {
      members: voters.map((i, v) => {
        const c = candidates.get(i)!;
        return {
          name: this.members[i]!.name,
          healed: c.healedSurface !== undefined,
          ...(c.fallback ? { fallback: c.fallback } : {}),
          top: c.texts.slice(0, 5).map((t, k) => show(t, c.probs[k]!)),
          winnerMass: memberMass ? memberMass[v]! : agreeingMass(c, combined.texts[winner]!),
        };
      }),
      combined: order.slice(0, 5).map((k) => show(combined.texts[k]!, combined.scores[k]!)),
      winner: show(combined.texts[winner]!, combined.scores[winner]!),
    };
  }
}

/**
 * A member's listed mass that agrees with the winner's bytes, a measure that works across
 * vocabularies: candidates that start with the winner or that the winner starts with (a shorter
 * token on the way to it); the end agrees only with the end.
 */
function agreeingMass(c: MemberCandidates, winner: string): number {
  let mass = 0;
  c.texts.forEach((t, k) => {
    const agrees = t === END_TEXT || winner === END_TEXT ? t === winner : t.startsWith(winner) || winner.startsWith(t);
    if (agrees) mass += c.probs[k]!;
  });
  return Math.min(1, mass);
}

/**
 * Whether a step's choice is proven over the full vocabularies whatever the members' first lists
 * hold — greedy GaC and byte voting, whose bounds ask for more until it is — and nothing else
 * reads the lists (UniTE's union, EVA's and DeePEn's maps, logprobs): then a member may ask for a
 * shorter first list (`Member.firstFetch`) and pay for the rare longer one.
 */
function provenByBound(settings: GenerationSettings, idSpace: boolean): boolean {
  const greedy = settings.sampling.temperature <= 0;
  return greedy && !idSpace && (settings.method === "gac" || settings.method === "bytes") && settings.logprobs === undefined && !settings.memberLogprobs;
}
