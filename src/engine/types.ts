/** The engine's public shapes: how an ensemble is specified, per-call options, and what a generation yields. */
import type { SamplingOptions } from "./sampling.js";
import type { DeepenOptions, EvaOptions } from "./id-space.js";
import type { PrepareOptions } from "../align/cache.js";
import type { BytesOptions } from "../methods/bytes.js";
import type { GpuSetting } from "../members/runtime.js";
import type { MemberSpec } from "../members/spec.js";
import type { TextConstraint } from "../constraints/constraint.js";
import type { StepLogprobs } from "./step-logprobs.js";

export type MethodName = "gac" | "unite" | "eva" | "deepen" | "bytes";

export type { MemberSpec } from "../members/spec.js";

/** UniTE's settings. */
export interface UniteOptions {
  /** Each member's top-k texts form the union (default 10). */
  readonly k?: number;
}

/**
 * Speculative ensembling: a drafter proposes up to `k` pieces alone, every other member evaluates
 * its tokenization of the drafted text in one batch, and the ensemble's steps then read those
 * positions instead of decoding one at a time. Every step is still the ensemble's own choice (with
 * sampling, drafts are kept by speculative-sampling acceptance), so the text is the plain
 * ensemble's; the draft only decides what is evaluated ahead.
 */
export interface SpeculateOptions {
  /** Pieces drafted per round (1–32). */
  readonly k: number;
  /** The drafting member's name; default the primary, else the first voting member. */
  readonly draft?: string;
}

/** How an ensemble is built: the same fields as the config file. */
export interface EnsembleSpec {
  readonly speculate?: SpeculateOptions;
  /**
   * Decode one token per llama.cpp call, so a position's logits never depend on how tokens were
   * batched (llama.cpp's CPU kernels round differently for different batch sizes): with it, a
   * speculative run and a plain run agree bit for bit. Costs speed (prompts and verification batches).
   */
  readonly exactReads?: boolean;
  readonly method?: MethodName;
  readonly unite?: UniteOptions;
  readonly heal?: boolean;
  readonly gate?: { readonly threshold: number };
  /** Length limit in tokens of the primary member (else the first voting member) for the generated text. */
  readonly maxTokens?: number;
  readonly sampling?: Partial<SamplingOptions>;
  readonly stop?: readonly string[];
  readonly contextSize?: number;
  /** Threads per member context; default: members/threads.ts (the members together stay below the cores). */
  readonly threads?: number;
  /** Where local members run: `auto` (default) a GPU when node-llama-cpp finds one, else the CPU; `false` the CPU. */
  readonly gpu?: GpuSetting;
  /**
   * Generations that run at once (default 1); more wait in line. Each local member's context
   * holds this many sequences, each with its own KV cache of `contextSize` tokens.
   */
  readonly parallel?: number;
  /** EVA/DeePEn: the member whose vocabulary the others are mapped into (default: the primary, else the first). */
  readonly main?: string;
  readonly eva?: EvaOptions;
  readonly deepen?: DeepenOptions;
  /** Byte-level voting (`method: bytes`): how members' byte probabilities are aggregated and when a piece is committed. */
  readonly bytes?: BytesOptions;
  /** EVA/DeePEn alignment cache directory (the config's `cacheDir`); default $CHORUS_CACHE or ~/.cache/chorus/align. */
  readonly cacheDir?: string;
  /** EVA/DeePEn alignment cache options (progress, notes; `cacheDir: false` builds without caching); override `cacheDir`. */
  readonly alignCache?: Omit<PrepareOptions, "cacheWriteErrors">;
  readonly members: readonly MemberSpec[];
}

/** Per-call settings; anything left out comes from the spec. */
export interface GenerateOptions {
  /** `null` turns speculation off for this call. */
  readonly speculate?: SpeculateOptions | null;
  readonly method?: MethodName;
  readonly unite?: UniteOptions;
  readonly heal?: boolean;
  /** `null` turns gating off for this call. */
  readonly gate?: { readonly threshold: number } | null;
  /** Length limit in tokens of the primary member (else the first voting member) for the generated text. */
  readonly maxTokens?: number;
  /** Length limit in steps (chosen pieces of text), for measurements that count steps; default none. */
  readonly maxSteps?: number;
  readonly sampling?: Partial<SamplingOptions>;
  readonly stop?: readonly string[];
  /** One weight per member, in config order. */
  readonly weights?: readonly number[];
  /** Byte-level voting settings for this call (`method: bytes`). */
  readonly bytes?: BytesOptions;
  /** Run only this member, alone, through the same engine. */
  readonly only?: string;
  /** Attach per-step traces (each member's top candidates, the winner). */
  readonly trace?: boolean;
  /** Ask every member for its whole distribution every step (slow on large vocabularies; for checks). */
  readonly fullDistributions?: boolean;
  /** Generate only text in this language (a grammar, a JSON schema): every member's candidates outside it are dropped before combining. */
  readonly constraint?: TextConstraint;
  /** Attach per-step log-probabilities with this many best alternatives (0: the chosen piece only). */
  readonly logprobs?: number;
  /** With `logprobs`: each voting member's log-probability of the chosen piece too. */
  readonly memberLogprobs?: boolean;
  readonly signal?: AbortSignal;
}

/** A member the generation went on without (`onFailure: drop`), and why. */
export interface MemberDrop {
  readonly member: string;
  /** Steps generated before the drop. */
  readonly step: number;
  readonly reason: string;
}

export interface CandidateTrace {
  readonly text: string;
  readonly probability: number;
}

export interface StepTrace {
  readonly members: readonly {
    readonly name: string;
    readonly healed: boolean;
    /** Why this member's plain distribution stood in for healed candidates (a server that could not list the healed token). */
    readonly fallback?: string;
    readonly top: readonly CandidateTrace[];
    /**
     * This member's probability mass that agrees with the winner's bytes. Byte-level voting: its
     * probability that its next bytes start with the winner; the other methods: the sum over its
     * listed candidates that start with the winner or that the winner starts with (the end agrees
     * only with the end), at most 1.
     */
    readonly winnerMass: number;
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
  /** Whether every voting member voted (false when the primary decided alone or after a drop). */
  readonly ensembled: boolean;
  /** How many times members were asked for more candidates before the choice was proven exact. */
  readonly escalations: number;
  readonly trace?: StepTrace;
  /** With `logprobs`: the ensemble's combined score of the chosen piece and of its best alternatives, as natural logarithms. */
  readonly logprobs?: StepLogprobs;
  /** Members dropped just before this step (their failure's message). */
  readonly dropped?: readonly MemberDrop[];
}

export type FinishReason = "stop" | "length";

export interface GenerationResult {
  readonly text: string;
  readonly finishReason: FinishReason;
  /** Tokens of the primary member (else the first voting member) for the generated text: what `maxTokens` counts. */
  readonly completionTokens: number;
  readonly steps: number;
  /** Steps on which every voting member voted (not the primary alone, nobody dropped). */
  readonly ensembledSteps: number;
  /** Steps on which GaC's bound failed and members were asked for more candidates. */
  readonly escalatedSteps: number;
  readonly members: readonly { readonly name: string; readonly weight: number; readonly evaluations: number; readonly dropped: boolean }[];
  /** Members the generation went on without, in order. */
  readonly dropped: readonly MemberDrop[];
  /** With speculation: drafting rounds, pieces drafted, and drafted pieces the ensemble chose. */
  readonly speculation?: { readonly rounds: number; readonly drafted: number; readonly accepted: number };
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

