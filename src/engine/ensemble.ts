import { createMembers } from "../members/factory.js";
import { describeBackend, type BackendReport } from "../members/backend.js";
import type { GpuSetting } from "../members/runtime.js";
import type { MemberSpec } from "../members/spec.js";
import { ContextOverflowError, MemberUnavailableError, type Member, type Prompt } from "../members/member.js";
import type { SparseDistribution } from "../members/distribution.js";
import { gac } from "../methods/gac.js";
import { unite, uniteUnion } from "../methods/unite.js";
import { argmax, isCertified, type Combined } from "../methods/combined.js";
import { END_TEXT, type MemberCandidates } from "./candidates.js";
import { MemberTrack, type EvaluationPlan, type FetchPlan } from "./member-track.js";
import { pickIndex, seededRandom, type SamplingOptions } from "./sampling.js";
import { TextOutput } from "./text-output.js";
import { surfaceToText } from "../tokens/vocabulary.js";
import { IdSpaceMethod, isIdSpaceMethod, type DeepenOptions, type EvaOptions } from "./id-space.js";
import type { PrepareOptions } from "../align/cache.js";
import type { AlignMethod } from "../align/alignment.js";

export type MethodName = "gac" | "unite" | "eva" | "deepen";

export type { MemberSpec } from "../members/spec.js";

/** How an ensemble is built: the same fields as the config file. */
export interface EnsembleSpec {
  readonly method?: MethodName;
  readonly topK?: number;
  readonly heal?: boolean;
  readonly gate?: { readonly threshold: number };
  readonly maxTokens?: number;
  readonly sampling?: Partial<SamplingOptions>;
  readonly stop?: readonly string[];
  readonly contextSize?: number;
  /** Threads per member context; default: members/threads.ts (the members together stay below the cores). */
  readonly threads?: number;
  /** Where local members run: `auto` (default) a GPU when node-llama-cpp finds one, else the CPU; `false` the CPU. */
  readonly gpu?: GpuSetting;
  /** EVA/DeePEn: the member whose vocabulary the others are mapped into (default: the primary, else the first). */
  readonly main?: string;
  readonly eva?: EvaOptions;
  readonly deepen?: DeepenOptions;
  /** EVA/DeePEn alignment cache directory (the config's `cacheDir`); default $CHORUS_CACHE or ~/.cache/chorus/align. */
  readonly cacheDir?: string;
  /** EVA/DeePEn alignment cache options (progress, notes; `cacheDir: false` builds without caching); override `cacheDir`. */
  readonly alignCache?: Omit<PrepareOptions, "cacheWriteErrors">;
  readonly members: readonly MemberSpec[];
}

/** Per-call settings; anything left out comes from the spec. */
export interface GenerateOptions {
  readonly method?: MethodName;
  readonly topK?: number;
  readonly heal?: boolean;
  /** `null` turns gating off for this call. */
  readonly gate?: { readonly threshold: number } | null;
  readonly maxTokens?: number;
  readonly sampling?: Partial<SamplingOptions>;
  readonly stop?: readonly string[];
  /** One weight per member, in config order. */
  readonly weights?: readonly number[];
  /** Run only this member, alone, through the same engine. */
  readonly only?: string;
  /** Attach per-step traces (each member's top candidates, the winner). */
  readonly trace?: boolean;
  /** Ask every member for its whole distribution every step (slow on large vocabularies; for checks). */
  readonly fullDistributions?: boolean;
  readonly signal?: AbortSignal;
}

export interface CandidateTrace {
  readonly text: string;
  readonly probability: number;
}

export interface StepTrace {
  readonly members: readonly {
    readonly name: string;
    readonly healed: boolean;
    readonly top: readonly CandidateTrace[];
  }[];
  readonly combined: readonly CandidateTrace[];
  readonly winner: CandidateTrace;
  /** EVA: the members that passed the faithfulness filter this step (empty: none did, and all were averaged). */
  readonly survivors?: readonly string[];
}

/** One generation step: the chosen continuation and what it took. */
export interface Step {
  readonly index: number;
  /** Text that became showable at this step (never a split UTF-8 character, never part of a stop string). */
  readonly text: string;
  /** The chosen candidate's exact bytes, as a latin1 string ("" for end of generation). */
  readonly bytes: string;
  /** Whether all members voted (false when the primary decided alone). */
  readonly ensembled: boolean;
  /** How many times members were asked for more candidates before the choice was proven exact. */
  readonly escalations: number;
  readonly trace?: StepTrace;
}

export type FinishReason = "stop" | "length";

export interface GenerationResult {
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly steps: number;
  readonly ensembledSteps: number;
  /** Steps on which GaC's bound failed and members were asked for more candidates. */
  readonly escalatedSteps: number;
  readonly members: readonly { readonly name: string; readonly weight: number; readonly evaluations: number; readonly dropped: boolean }[];
  readonly timings: {
    readonly totalMs: number;
    readonly memberMs: Record<string, number>;
    readonly engineMs: number;
    /** Within engineMs: turning members' distributions into byte-string candidates (healing included). */
    readonly extractionMs: number;
    /** Within engineMs: syncing members to the text (re-tokenizing the tail, planning the positions to read, accepting the choice). */
    readonly syncMs: number;
    /** Within engineMs: combining the candidates (GaC, UniTE, EVA/DeePEn), bounds and sampling — the rest of engineMs. */
    readonly combinationMs: number;
  };
}

/** What one step's vote produced. */
interface Vote {
  readonly candidates: Map<number, MemberCandidates>;
  readonly combined: Combined;
  readonly voters: readonly number[];
  /** The primary decided alone (gating). */
  readonly decidedAlone: boolean;
  /** Rounds in which GaC's bound asked the members for more candidates. */
  readonly escalations: number;
  /** EVA's faithfulness survivors, for the trace. */
  readonly survivors?: readonly string[];
}

/**
 * Members list this many top tokens at least: llama.cpp sorts the whole vocabulary for any top-N
 * anyway, so a longer list costs little and spares GaC's bound and UniTE's look-ups a second round.
 * When GaC's bound fails, fetches grow by FETCH_GROWTH, up to MAX_GROWN_FETCH, then the full vocabulary.
 */
const MIN_FETCH = 128;
const FETCH_GROWTH = 8;
const MAX_GROWN_FETCH = 8192;

/**
 * An ensemble of members that vote on every next piece of text. Create with `Ensemble.create`,
 * generate with `stream` (an async iterator of steps) or `generate`, then `dispose`.
 */
export class Ensemble {
  private busy = false;

  private constructor(
    readonly spec: EnsembleSpec,
    readonly members: readonly Member[],
  ) {}

  static async create(spec: EnsembleSpec): Promise<Ensemble> {
    validateSpec(spec);
    const members = await createMembers(spec.members, { threads: spec.threads, contextSize: spec.contextSize, gpu: spec.gpu });
    return new Ensemble(spec, members);
  }

  /** Where the members run: the device, each member's layers on the GPU and CPU threads. */
  get backend(): BackendReport {
    return describeBackend(this.members, this.spec.gpu ?? "auto");
  }

  /** Builds an ensemble over members that are already loaded (the caller keeps ownership). */
  static fromMembers(spec: EnsembleSpec, members: readonly Member[]): Ensemble {
    validateSpec(spec);
    return new Ensemble(spec, members);
  }

  async generate(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerationResult> {
    const iterator = this.stream(prompt, options);
    for (;;) {
      const next = await iterator.next();
      if (next.done) return next.value;
    }
  }

  async *stream(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<Step, GenerationResult, undefined> {
    if (this.busy) throw new Error("this ensemble is already generating; wait for it or create another");
    this.busy = true;
    try {
      return yield* this.run(prompt, options);
    } finally {
      this.busy = false;
    }
  }

  private readonly idSpaceMethods = new Map<AlignMethod, Promise<IdSpaceMethod>>();

  /** EVA/DeePEn: the alignment, built or loaded from the cache once per ensemble and method. */
  prepareAlignment(method: AlignMethod): Promise<IdSpaceMethod> {
    let prepared = this.idSpaceMethods.get(method);
    if (!prepared) {
      const spec = this.spec;
      prepared = IdSpaceMethod.prepare(method, this.members, spec.members, spec.main, spec, { cacheDir: spec.cacheDir, ...spec.alignCache, cacheWriteErrors: "note" });
      prepared.catch(() => this.idSpaceMethods.delete(method));
      this.idSpaceMethods.set(method, prepared);
    }
    return prepared;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.members.map((m) => m.dispose()));
  }

  private async *run(prompt: Prompt, options: GenerateOptions): AsyncGenerator<Step, GenerationResult, undefined> {
    const started = performance.now();
    const spec = this.spec;
    const method = options.method ?? spec.method ?? "gac";
    const topK = options.topK ?? spec.topK ?? 10;
    const heal = options.heal ?? spec.heal ?? true;
    const gate = options.gate === null ? undefined : (options.gate ?? spec.gate);
    const maxTokens = options.maxTokens ?? spec.maxTokens ?? 128;
    const sampling: SamplingOptions = {
      temperature: options.sampling?.temperature ?? spec.sampling?.temperature ?? 0,
      topP: options.sampling?.topP ?? spec.sampling?.topP ?? 1,
      topK: options.sampling?.topK ?? spec.sampling?.topK ?? 0,
      seed: options.sampling?.seed ?? spec.sampling?.seed ?? Math.floor(Math.random() * 2 ** 31),
    };
    const weights = this.resolveWeights(options);
    const primaryIndex = spec.members.findIndex((m) => m.primary);
    if (gate && primaryIndex < 0) throw new Error("gating needs a primary member: add `primary: true` to one member");
    const active = this.members.map((_, i) => i).filter((i) => weights[i]! > 0);
    let gated = gate !== undefined && active.length > 1 && weights[primaryIndex]! > 0;
    const dropped = new Set<number>();

    const idSpace = isIdSpaceMethod(method) && options.only === undefined && active.length > 1 ? await this.prepareAlignment(method) : undefined;
    // Only members with a vote are tokenized and tracked (a muted member's vocabulary may not even encode the prompt).
    const tracks: MemberTrack[] = [];
    for (const i of active) tracks[i] = new MemberTrack(this.members[i]!, this.members[i]!.promptTokens(prompt), heal);
    for (const i of active) {
      const track = tracks[i]!;
      if (track.tokenCount + 1 > this.members[i]!.contextSize) {
        throw new ContextOverflowError(
          this.members[i]!.name,
          `the prompt is ${track.tokenCount} tokens but this member's context holds ${this.members[i]!.contextSize}; shorten the prompt or raise contextSize`,
        );
      }
    }

    const random = seededRandom(sampling.seed);
    const output = new TextOutput(options.stop ?? spec.stop ?? []);
    const evaluations = this.members.map(() => 0);
    const memberMs: Record<string, number> = Object.fromEntries(this.members.map((m) => [m.name, 0]));
    let memberWallMs = 0;
    let extractionMs = 0;
    let syncMs = 0;
    let text = "";
    let steps = 0;
    let ensembledSteps = 0;
    let escalatedSteps = 0;
    let finishReason: FinishReason = "length";

    /** Evaluates members concurrently; members' own time is what `distributions` took. */
    const evaluate = async (indexes: readonly number[], fetch: (i: number) => FetchPlan): Promise<Map<number, MemberCandidates>> => {
      const plans = new Map<number, EvaluationPlan>();
      const planStart = performance.now();
      for (const i of indexes) plans.set(i, tracks[i]!.planFetch(text, fetch(i)));
      const wallStart = performance.now();
      syncMs += wallStart - planStart;
      const settled = await Promise.allSettled(
        indexes.map(async (i) => {
          const t0 = performance.now();
          const plan = plans.get(i)!;
          const dists: SparseDistribution[] = await this.members[i]!.distributions(plan.tokens, plan.requests);
          memberMs[this.members[i]!.name]! += performance.now() - t0;
          evaluations[i]!++;
          return dists;
        }),
      );
      memberWallMs += performance.now() - wallStart;
      const failed = indexes.filter((_, k) => settled[k]!.status === "rejected");
      if (failed.length > 0) {
        const reason = (i: number) => (settled[indexes.indexOf(i)] as PromiseRejectedResult).reason as unknown;
        const droppable = (i: number) => reason(i) instanceof MemberUnavailableError && spec.members[i]!.onFailure === "drop";
        const fatal = failed.find((i) => !droppable(i));
        if (fatal !== undefined || failed.length >= active.length) throw reason(fatal ?? failed[0]!);
        throw new DroppedMembers(failed);
      }
      const answers = settled.map((s) => (s as PromiseFulfilledResult<SparseDistribution[]>).value);
      const result = new Map<number, MemberCandidates>();
      const buildStart = performance.now();
      indexes.forEach((i, k) => result.set(i, tracks[i]!.build(plans.get(i)!, answers[k]!)));
      extractionMs += performance.now() - buildStart;
      return result;
    };

    const firstFetch = Math.max(topK, MIN_FETCH);
    const fetchFirst = (): FetchPlan => ({ topK: firstFetch, full: options.fullDistributions });

    /** One step's vote: evaluate (the primary first when gated), combine, and prove GaC's greedy choice. */
    const voteOnce = async (): Promise<Vote> => {
      let candidates: Map<number, MemberCandidates>;
      let decidedAlone = false;
      if (gated) {
        candidates = await evaluate([primaryIndex], fetchFirst);
        const primary = candidates.get(primaryIndex)!;
        decidedAlone = primary.probs.length > 0 && primary.probs[0]! > gate!.threshold;
        if (!decidedAlone) {
          const others = await evaluate(active.filter((i) => i !== primaryIndex), fetchFirst);
          for (const [i, c] of others) candidates.set(i, c);
        }
      } else {
        candidates = await evaluate(active, fetchFirst);
      }
      const voters = decidedAlone ? [primaryIndex] : [...active];
      const voterWeights = voters.map((i) => weights[i]!);
      if (idSpace && !decidedAlone && voters.length > 1) {
        const { combined, survivors } = idSpace.step(voters, voterWeights, candidates);
        return { candidates, combined, voters, decidedAlone, escalations: 0, survivors };
      }
      if (method === "unite" && !decidedAlone) {
        const combined = await this.uniteStep(voters, voterWeights, candidates, tracks, topK, evaluate);
        return { candidates, combined, voters, decidedAlone, escalations: 0 };
      }
      let combined = gac(voters.map((i) => candidates.get(i)!), voterWeights);
      let escalations = 0;
      // Prove the greedy choice equals full-vocabulary GaC; otherwise ask for more.
      for (let fetchK = firstFetch; sampling.temperature <= 0 && !options.fullDistributions; ) {
        if (isCertified(combined, argmax(combined.scores))) break;
        escalations++;
        const full = fetchK >= MAX_GROWN_FETCH;
        fetchK *= FETCH_GROWTH;
        const fetch: FetchPlan = full ? { topK: firstFetch, full: true } : { topK: Math.min(fetchK, MAX_GROWN_FETCH) };
        const more = await evaluate(voters, () => fetch);
        for (const [i, c] of more) candidates.set(i, c);
        combined = gac(voters.map((i) => candidates.get(i)!), voterWeights);
        if (full) break;
      }
      return { candidates, combined, voters, decidedAlone, escalations };
    };
    while (steps < maxTokens) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error("aborted");
      if (active.some((i) => tracks[i]!.tokenCount + 2 > this.members[i]!.contextSize)) break;
      let vote: Vote;
      try {
        vote = await voteOnce();
      } catch (error) {
        if (!(error instanceof DroppedMembers)) throw error;
        // Members on failed machines (`onFailure: drop`) leave; the step starts again without them.
        for (const i of error.indexes) {
          dropped.add(i);
          active.splice(active.indexOf(i), 1);
        }
        if (dropped.has(primaryIndex) || active.length < 2) gated = false;
        continue;
      }
      const { candidates, combined, voters, decidedAlone, escalations, survivors } = vote;
      if (escalations > 0) escalatedSteps++;
      const winner = pickIndex(combined.scores, sampling, random);
      const chosen = combined.texts[winner]!;
      steps++;
      if (!decidedAlone) ensembledSteps++;

      const trace = options.trace ? { ...this.traceOf(voters, candidates, combined, winner), survivors } : undefined;
      if (chosen === END_TEXT) {
        finishReason = "stop";
        const rest = output.next(text, true);
        yield { index: steps - 1, text: rest, bytes: chosen, ensembled: !decidedAlone, escalations, trace };
        break;
      }
      const before = text.length;
      text += chosen;
      const syncStart = performance.now();
      for (const i of voters) tracks[i]!.accept(chosen, before, voters.length === 1 || i === idSpace?.mainIndex);
      syncMs += performance.now() - syncStart;
      const stopAt = output.findStop(text);
      if (stopAt >= 0) {
        text = text.slice(0, stopAt);
        finishReason = "stop";
        yield { index: steps - 1, text: output.next(text, true), bytes: chosen, ensembled: !decidedAlone, escalations, trace };
        break;
      }
      yield { index: steps - 1, text: output.next(text, false), bytes: chosen, ensembled: !decidedAlone, escalations, trace };
    }
    const tail = output.next(text, true);
    if (tail && finishReason === "length") yield { index: steps, text: tail, bytes: "", ensembled: false, escalations: 0 };
    const totalMs = performance.now() - started;
    const engineMs = Math.max(0, totalMs - memberWallMs);
    return {
      text: surfaceToText(text),
      finishReason,
      steps,
      ensembledSteps,
      escalatedSteps,
      members: this.members.map((m, i) => ({ name: m.name, weight: weights[i]!, evaluations: evaluations[i]!, dropped: dropped.has(i) })),
      timings: {
        totalMs,
        memberMs,
        engineMs,
        extractionMs,
        syncMs,
        combinationMs: Math.max(0, engineMs - extractionMs - syncMs),
      },
    };
  }

  /** UniTE: union of top-k texts; a member that did not list a text is asked for it (or its first token). */
  private async uniteStep(
    voters: readonly number[],
    voterWeights: readonly number[],
    candidates: Map<number, MemberCandidates>,
    tracks: readonly MemberTrack[],
    topK: number,
    evaluate: (indexes: readonly number[], fetch: (i: number) => FetchPlan) => Promise<Map<number, MemberCandidates>>,
  ): Promise<Combined> {
    const union = uniteUnion(voters.map((i) => candidates.get(i)!), topK);
    const lookups = new Map<number, string[]>();
    const standIns = new Map<number, string[]>();
    for (const i of voters) {
      const track = tracks[i]!;
      const own = candidates.get(i)!;
      const texts = union.map((t) => (track.spellsAsOneToken(t) ? t : track.firstTokenText(t)));
      standIns.set(i, texts);
      const missing = texts.filter((t) => !own.index.has(t));
      if (missing.length > 0) lookups.set(i, missing);
    }
    if (lookups.size > 0) {
      const more = await evaluate([...lookups.keys()], (i) => ({ topK: Math.max(topK, MIN_FETCH), texts: lookups.get(i)!, extendLast: true }));
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

  private resolveWeights(options: GenerateOptions): number[] {
    const names = this.members.map((m) => m.name);
    if (options.only !== undefined) {
      const at = names.indexOf(options.only);
      if (at < 0) throw new Error(`--only ${options.only}: no member has that name; members are ${names.join(", ")}`);
      return names.map((_, i) => (i === at ? 1 : 0));
    }
    const weights = options.weights ?? this.spec.members.map((m) => m.weight ?? 1);
    checkWeights(weights, names.length);
    return [...weights];
  }

  private traceOf(
    voters: readonly number[],
    candidates: ReadonlyMap<number, MemberCandidates>,
    combined: Combined,
    winner: number,
  ): StepTrace {
    const show = (text: string, probability: number): CandidateTrace => ({
      text: text === END_TEXT ? "<end>" : surfaceToText(text),
      probability,
    });
    const order = Array.from(combined.scores.keys()).sort((a, b) => combined.scores[b]! - combined.scores[a]!);
    return {
      members: voters.map((i) => {
        const c = candidates.get(i)!;
        return {
          name: this.members[i]!.name,
          healed: c.healedSurface !== undefined,
          top: c.texts.slice(0, 5).map((t, k) => show(t, c.probs[k]!)),
        };
      }),
      combined: order.slice(0, 5).map((k) => show(combined.texts[k]!, combined.scores[k]!)),
      winner: show(combined.texts[winner]!, combined.scores[winner]!),
    };
  }
}

/** Raised inside a step when members with `onFailure: drop` failed; the step is redone without them. */
class DroppedMembers extends Error {
  constructor(readonly indexes: readonly number[]) {
    super(`members ${indexes.join(", ")} dropped`);
  }
}

function checkWeights(weights: readonly number[], count: number): void {
  if (weights.length !== count) throw new Error(`expected ${count} weights (one per member), got ${weights.length}`);
  if (weights.some((w) => !Number.isFinite(w) || w < 0)) throw new Error(`weights must be finite and ≥ 0, got ${weights.join(",")}`);
  if (!weights.some((w) => w > 0)) throw new Error("weights must not all be zero: give at least one member a positive weight");
}

function validateSpec(spec: EnsembleSpec): void {
  if (spec.members.length === 0) throw new Error("an ensemble needs at least one member");
  const names = new Set<string>();
  for (const m of spec.members) {
    if (names.has(m.name)) throw new Error(`two members are named '${m.name}': give each member its own name`);
    names.add(m.name);
  }
  checkWeights(spec.members.map((m) => m.weight ?? 1), spec.members.length);
  if (spec.gate && !spec.members.some((m) => m.primary)) {
    throw new Error("gating needs a primary member: add `primary: true` to one member");
  }
}
