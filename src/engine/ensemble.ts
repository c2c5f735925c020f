import { createMembers } from "../members/factory.js";
import { describeBackend, type BackendReport } from "../members/backend.js";
import type { Member, MemberSession, Prompt } from "../members/member.js";
import { SessionPool } from "../members/session-pool.js";
import { Generation, type GenerationSettings } from "./generation.js";
import { IdSpaceMethod, isIdSpaceMethod } from "./id-space.js";
import type { AlignMethod } from "../align/alignment.js";
import type { EnsembleSpec, GenerateOptions, GenerationResult, SpeculateOptions, Step } from "./types.js";

export type {
  CandidateTrace,
  EnsembleSpec,
  FinishReason,
  GenerateOptions,
  GenerationResult,
  MemberDrop,
  MemberSpec,
  MethodName,
  SpeculateOptions,
  Step,
  StepTrace,
} from "./types.js";

/**
 * An ensemble of members that vote on every next piece of text. Create with `Ensemble.create`,
 * generate with `stream` (an async iterator of steps) or `generate`, then `dispose`.
 */
export class Ensemble {
  /** One turn per generation that may run at once (`spec.parallel`). */
  private readonly turns: SessionPool<number>;

  private constructor(
    readonly spec: EnsembleSpec,
    readonly members: readonly Member[],
  ) {
    this.parallel = spec.parallel ?? 1;
    this.turns = new SessionPool(Array.from({ length: this.parallel }, (_, i) => i));
  }

  /** Generations that run at once; more wait in line (FIFO) in `stream`. */
  readonly parallel: number;

  /** Generations running now, and waiting for a turn. */
  get generations(): { running: number; waiting: number } {
    return { running: this.turns.lent, waiting: this.turns.queued };
  }

  static async create(spec: EnsembleSpec): Promise<Ensemble> {
    validateSpec(spec);
    const members = await createMembers(spec.members, {
      threads: spec.threads,
      contextSize: spec.contextSize,
      gpu: spec.gpu,
      exactReads: spec.exactReads,
      parallel: spec.parallel,
      // Speculation configured for the ensemble: each generation gets a side sequence per member.
      sidePaths: spec.speculate !== undefined,
    });
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

  /**
   * One generation, step by step. Up to `parallel` run at once, each reading every voting member
   * through a session of its own (its own sequence of a local member); a later one waits for a
   * turn (leaving the line if `options.signal` aborts). Its sessions and turn are given back
   * however it ends: done, failed, aborted, or the iterator returned early.
   */
  async *stream(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<Step, GenerationResult, undefined> {
    const settings = this.settings(options);
    const turn = await this.turns.take(settings.signal);
    const sessions: MemberSession[] = [];
    try {
      const voting = settings.weights.map((w, i) => (w > 0 ? i : -1)).filter((i) => i >= 0);
      const idSpace = isIdSpaceMethod(settings.method) && settings.only === undefined && voting.length > 1 ? await this.prepareAlignment(settings.method) : undefined;
      // In member order, one at a time: generations that share members never wait on each other in a circle.
      const readers: (Member | MemberSession)[] = [...this.members];
      for (const i of voting) {
        const session = await this.members[i]!.openSession(settings.signal);
        sessions.push(session);
        readers[i] = session;
      }
      const generation = new Generation(this.members, this.spec.members, prompt, settings, idSpace, readers);
      return yield* generation.run();
    } finally {
      await Promise.all(sessions.map((s) => s.close()));
      this.turns.give(turn);
    }
  }

  /** The call's options over the spec's defaults. */
  private settings(options: GenerateOptions): GenerationSettings {
    const spec = this.spec;
    refuseRenamed(options, "options");
    const weights = this.resolveWeights(options);
    return {
      speculate: this.resolveSpeculation(options, weights),
      method: options.method ?? spec.method ?? "gac",
      uniteK: options.unite?.k ?? spec.unite?.k ?? 10,
      heal: options.heal ?? spec.heal ?? true,
      gate: options.gate === null ? undefined : (options.gate ?? spec.gate),
      maxTokens: options.maxTokens ?? spec.maxTokens ?? 128,
      maxSteps: options.maxSteps ?? Infinity,
      sampling: {
        temperature: options.sampling?.temperature ?? spec.sampling?.temperature ?? 0,
        topP: options.sampling?.topP ?? spec.sampling?.topP ?? 1,
        topK: options.sampling?.topK ?? spec.sampling?.topK ?? 0,
        seed: options.sampling?.seed ?? spec.sampling?.seed ?? Math.floor(Math.random() * 2 ** 31),
      },
      stop: options.stop ?? spec.stop ?? [],
      weights,
      bytes: { ...spec.bytes, ...options.bytes },
      only: options.only,
      trace: options.trace ?? false,
      fullDistributions: options.fullDistributions ?? false,
      constraint: options.constraint,
      logprobs: options.logprobs,
      memberLogprobs: options.memberLogprobs ?? false,
      signal: options.signal,
    };
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

  /** Every member forgets its kept reads and KV caches (see Member.forgetReads); call between generations. */
  async forgetReads(): Promise<void> {
    await Promise.all(this.members.map((m) => m.forgetReads?.()));
  }

  /** The drafter (by index) and k, when speculation is on and at least two members vote. */
  private resolveSpeculation(options: GenerateOptions, weights: readonly number[]): GenerationSettings["speculate"] {
    const speculate = options.speculate === null ? undefined : (options.speculate ?? this.spec.speculate);
    if (!speculate || weights.filter((w) => w > 0).length < 2) return undefined;
    checkSpeculation(speculate);
    const names = this.members.map((m) => m.name);
    const named = speculate.draft ?? this.spec.members.find((m) => m.primary)?.name;
    const drafter = named === undefined ? weights.findIndex((w) => w > 0) : names.indexOf(named);
    if (drafter < 0) throw new Error(`speculate.draft: no member is named '${named}'; members are ${names.join(", ")}`);
    if (!(weights[drafter]! > 0)) throw new Error(`speculate.draft: '${names[drafter]}' has weight 0 here; draft with a voting member`);
    return { drafter, k: speculate.k };
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

}

function checkSpeculation(speculate: SpeculateOptions): void {
  if (!Number.isInteger(speculate.k) || speculate.k < 1 || speculate.k > 32) {
    throw new Error(`speculate.k must be a whole number from 1 to 32 (pieces drafted per round), got ${String(speculate.k)}`);
  }
}

function checkWeights(weights: readonly number[], count: number): void {
  if (weights.length !== count) throw new Error(`expected ${count} weights (one per member), got ${weights.length}`);
  if (weights.some((w) => !Number.isFinite(w) || w < 0)) throw new Error(`weights must be finite and ≥ 0, got ${weights.join(",")}`);
  if (!weights.some((w) => w > 0)) throw new Error("weights must not all be zero: give at least one member a positive weight");
}

/** UniTE's k was `topK`, which sampling's top-k also is: the old spelling is refused, not ignored. */
function refuseRenamed(object: object, where: string): void {
  if ("topK" in object) throw new Error(`${where}.topK is now unite.k (UniTE's k; sampling's top-k is sampling.topK): write { unite: { k: ${String((object as { topK: unknown }).topK)} } }`);
}

function validateSpec(spec: EnsembleSpec): void {
  refuseRenamed(spec, "spec");
  if (spec.parallel !== undefined && (!Number.isInteger(spec.parallel) || spec.parallel < 1)) {
    throw new Error(`parallel must be an integer ≥ 1 (generations at once), got ${spec.parallel}`);
  }
  if (spec.members.length === 0) throw new Error("an ensemble needs at least one member");
  const names = new Set<string>();
  for (const m of spec.members) {
    if (names.has(m.name)) throw new Error(`two members are named '${m.name}': give each member its own name`);
    names.add(m.name);
  }
  checkWeights(spec.members.map((m) => m.weight ?? 1), spec.members.length);
  if (spec.speculate) checkSpeculation(spec.speculate);
  if (spec.gate && !spec.members.some((m) => m.primary)) {
    throw new Error("gating needs a primary member: add `primary: true` to one member");
  }
}
