/**
 * The server's wire format as TypeScript types: request bodies (with chorus's `ensemble`
 * extension) and answers (with the `ensemble` object chorus adds). Request types are derived from
 * the schemas the server validates with, so they cannot drift from what it accepts.
 */
import type { z } from "zod";
import type { chatRequestSchema, completionRequestSchema } from "./openai-request.js";
import type { GenerationResult, StepTrace } from "../engine/ensemble.js";
import type { ChatTokenLogprob, CompletionLogprobs } from "./logprobs.js";

export type ChorusCompletionRequest = z.input<typeof completionRequestSchema>;
export type ChorusChatRequest = z.input<typeof chatRequestSchema>;
/** The `ensemble` object of a request: this request's overrides of the config. */
export type EnsembleRequestOptions = NonNullable<ChorusChatRequest["ensemble"]>;

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface TraceStep {
  index: number;
  text: string;
  ensembled: boolean;
  trace: StepTrace;
}

/** The `ensemble` object of an answer: with `ensemble.trace`, the summary and each step's trace; with `ensemble.member_logprobs`, each voter's log-probability of each piece. */
export interface EnsembleAnswer {
  steps?: number;
  ensembled_steps?: number;
  escalated_steps?: number;
  members?: GenerationResult["members"];
  timings?: GenerationResult["timings"];
  trace?: TraceStep[];
  member_logprobs?: ({ name: string; logprob: number | null }[] | undefined)[];
}

export type FinishReason = "stop" | "length" | "tool_calls";

export interface ChorusToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChorusCompletion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: 0; text: string; logprobs: CompletionLogprobs | null; finish_reason: FinishReason }[];
  usage: Usage;
  ensemble?: EnsembleAnswer;
}

export interface ChorusChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: 0;
    message: { role: "assistant"; content: string | null; tool_calls?: ChorusToolCall[] };
    logprobs: { content: ChatTokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason;
  }[];
  usage: Usage;
  ensemble?: EnsembleAnswer;
}

export interface ChorusChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: 0;
    delta: { role?: "assistant"; content?: string; tool_calls?: { index: 0; id?: string; type?: "function"; function: { name?: string; arguments: string } }[] };
    logprobs: { content: ChatTokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason | null;
  }[];
  usage?: Usage;
  /** With `ensemble.trace`: the step this chunk carries (`step`), and the summary on the last chunk. */
  ensemble?: EnsembleAnswer & { step?: TraceStep };
}

export type { ChatTokenLogprob, CompletionLogprobs };
