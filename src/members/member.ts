import type { Vocabulary } from "../tokens/vocabulary.js";
import type { DistributionRequest, SparseDistribution } from "./distribution.js";
import type { ChatMessage, ChatTool } from "./chat-template.js";
import type { Device } from "./runtime.js";

/** A prompt: raw text, or a conversation (with the tools offered, if any) rendered with each member's own chat template. */
export type Prompt = { readonly text: string } | { readonly messages: readonly ChatMessage[]; readonly tools?: readonly ChatTool[] };

/** Token ids with the number of text bytes each one stands for (exact surfaces, or an unknown token's character). */
export interface TokenRun {
  readonly ids: number[];
  readonly byteLengths: number[];
}

/** The member's tokens for a prompt, and whether the prompt ends on a boundary of the member's own choosing. */
export interface PromptTokens {
  /** Special tokens (BOS, chat markup) that stand for no generated text. */
  readonly prefix: number[];
  /** Tokens of the prompt's text part. */
  readonly text: TokenRun;
  /** The bytes (latin1 string) those tokens spell: the raw prompt's text; empty for a rendered chat prompt. */
  readonly textBytes: string;
  /** A chat prompt ends where the template ends: the member's own boundary. A raw prompt's end is foreign. */
  readonly endsOnOwnBoundary: boolean;
}

/** Reads next-token distributions from one sequence (KV cache) of a model. */
export interface DistributionReader {
  /**
   * Brings the sequence to `tokens` (reusing its cache) and returns the distribution of the token
   * that follows `tokens[position]`, for each request.
   */
  distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]>;
  /**
   * Optional: evaluates `tokens` in one batch now and reads `requests` (positions in `tokens`),
   * keeping them, so later `distributions` calls on these tokens (or a prefix of them) are
   * answered without decoding again, exactly as if evaluated then. Speculative ensembling's
   * verification.
   */
  prefetch?(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<void>;
}

/**
 * A generation's own reader of a member: for a model in this process, one of its context's
 * sequences (its own KV cache), held until `close` returns it to the member's pool.
 */
export interface MemberSession extends DistributionReader {
  /**
   * Returns the session's sequence to the member's pool, once reads still running have settled;
   * idempotent. The sequence keeps its cache for the next session.
   */
  close(): Promise<void>;
}

/**
 * One model. Members know nothing about ensembles: they tokenize and return distributions.
 * `distributions` itself reads through a session taken for the call (the one used last when it
 * is free, so a single caller keeps its cache); concurrent generations each open their own.
 */
export interface Member extends DistributionReader {
  readonly name: string;
  /**
   * A reader of the member's own for one generation. A member in this process holds `parallel`
   * sequences: when all are taken this waits (in order) for one to be closed, or until `signal`
   * aborts. A member on a server is stateless: its session reads through the member itself.
   */
  openSession(signal?: AbortSignal): Promise<MemberSession>;
  readonly vocabulary: Vocabulary;
  /** Largest number of tokens the member's context holds. */
  readonly contextSize: number;
  /** Tokenizes text bytes (latin1 string) that continue a text at a boundary with no dummy space, exactly. */
  tokenizeContinuation(bytes: string): TokenRun;
  /** Refuses (ContextOverflowError) a prompt longer than the context, without tokenizing all of it. */
  promptTokens(prompt: Prompt): PromptTokens;
  /**
   * Forgets what was read (kept reads, KV caches), so that a repeated prompt is evaluated again:
   * for benchmarks comparing runs of the same prompts. Members that keep nothing between calls
   * leave it out.
   */
  forgetReads?(): Promise<void>;
  dispose(): Promise<void>;
  /** Where the model runs (absent: somewhere else, e.g. on a server). */
  readonly placement?: MemberPlacement;
  /**
   * Top tokens to ask of this member first at a step whose choice a bound proves anyway (greedy
   * GaC or byte voting), where each listed token costs it something (a server writes each as JSON):
   * the bound asks for more when it needs them. Absent: the engine's default (128).
   */
  readonly firstFetch?: number;
}

/** A model in this process: the device its GPU layers run on ("cpu" when none do), and its CPU threads. */
export interface MemberPlacement {
  readonly device: Device;
  readonly gpuLayers: number;
  readonly totalLayers: number;
  readonly threads: number;
}

export interface PositionRequest extends DistributionRequest {
  /** Index into the token list: the distribution is of the token after `tokens[position]`. */
  readonly position: number;
}

export class MemberError extends Error {
  constructor(readonly member: string, message: string) {
    super(`member '${member}': ${message}`);
    this.name = "MemberError";
  }
}

/** The prompt does not fit a member's context: the caller's input is at fault, not the member. */
export class ContextOverflowError extends MemberError {
  constructor(member: string, message: string) {
    super(member, message);
    this.name = "ContextOverflowError";
  }
}

/**
 * A member that runs elsewhere could not be reached (`unavailable`) or kept failing (5xx, 429,
 * timeouts) after its retries: the only failures `onFailure: drop` goes on without.
 */
export class MemberUnavailableError extends MemberError {
  constructor(member: string, message: string, readonly unavailable: boolean) {
    super(member, message);
    this.name = "MemberUnavailableError";
  }
}

/**
 * A member's server refused chorus's request (a 4xx other than 429), answered in a shape chorus
 * cannot read, or now serves another model: a configuration problem, never dropped.
 */
export class MemberRejectedError extends MemberError {
  constructor(member: string, message: string) {
    super(member, message);
    this.name = "MemberRejectedError";
  }
}
