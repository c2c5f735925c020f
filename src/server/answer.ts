/**
 * Turns a generation's steps into OpenAI's answer objects: the choice of a whole answer, or the
 * choices of streamed chunks, with log-probabilities and tool calls when they were asked for.
 */
import type { GenerationResult, Step } from "../engine/ensemble.js";
import { chatLogprob, CompletionLogprobsBuilder, mergeCompletionLogprobs, memberLogprobs, type ChatTokenLogprob, type CompletionLogprobs } from "./logprobs.js";
import type { GenerationRequest } from "./openai-request.js";
import { ToolCallReader } from "./tools.js";

export type AnswerKind = "completion" | "chat";

export class AnswerBuilder {
  private text = "";
  private readonly chatLogprobs: ChatTokenLogprob[] = [];
  private readonly completionLogprobs: CompletionLogprobs[] = [];
  private readonly completionOffsets = new CompletionLogprobsBuilder();
  private readonly memberSteps: ({ name: string; logprob: number | null }[] | undefined)[] = [];
  private readonly tools: ToolCallReader | undefined;

  constructor(
    private readonly kind: AnswerKind,
    private readonly generation: GenerationRequest,
  ) {
    this.tools = kind === "chat" && generation.tools ? new ToolCallReader(generation.tools.mode) : undefined;
  }

  private get wantsLogprobs(): boolean {
    return this.generation.logprobs !== undefined;
  }

  /** Takes one step (streamed or not); returns the chunk choices it makes when streaming. */
  add(step: Step): Record<string, unknown>[] {
    this.text += step.text;
    const logprobs = this.logprobsOf(step);
    if (this.generation.options.memberLogprobs && step.logprobs) this.memberSteps.push(memberLogprobs(step));
    if (this.kind === "completion") {
      return step.text || logprobs ? [{ index: 0, text: step.text, logprobs: logprobs ?? null, finish_reason: null }] : [];
    }
    const chunks: Record<string, unknown>[] = [];
    const withLogprobs = (delta: Record<string, unknown>, first: boolean) => ({ index: 0, delta, logprobs: first && logprobs ? logprobs : null, finish_reason: null });
    if (this.tools) {
      const deltas = this.tools.push(step.text);
      // Until the first character, `auto` cannot tell a call from text (and there is no text to send).
      if (this.tools.isCall !== false) {
        deltas.forEach((d, k) => chunks.push(withLogprobs({ tool_calls: [d] }, k === 0)));
        if (chunks.length === 0 && logprobs) chunks.push(withLogprobs({}, true));
        return chunks;
      }
    }
    return step.text || logprobs ? [withLogprobs({ content: step.text }, true)] : [];
  }

  /** The last streamed chunk's choice. */
  finish(result: GenerationResult): Record<string, unknown> {
    const reason = this.finishReason(result);
    return this.kind === "chat" ? { index: 0, delta: {}, logprobs: null, finish_reason: reason } : { index: 0, text: "", logprobs: null, finish_reason: reason };
  }

  /** The whole answer's choice (after every step was added). */
  choice(result: GenerationResult): Record<string, unknown> {
    const reason = this.finishReason(result);
    if (this.kind === "completion") {
      return { index: 0, text: this.text, logprobs: this.wantsLogprobs ? mergeCompletionLogprobs(this.completionLogprobs) : null, finish_reason: reason };
    }
    const logprobs = this.wantsLogprobs ? { content: this.chatLogprobs, refusal: null } : null;
    const call = this.tools?.call();
    const message = call ? { role: "assistant", content: null, tool_calls: [call] } : { role: "assistant", content: this.text };
    return { index: 0, message, logprobs, finish_reason: reason };
  }

  /** chorus's own additions to the answer (`ensemble.member_logprobs`), when asked for. */
  extra(): Record<string, unknown> | undefined {
    return this.generation.options.memberLogprobs ? { member_logprobs: this.memberSteps } : undefined;
  }

  /** The step's part of a streamed chunk's `ensemble` object. */
  stepExtra(step: Step): Record<string, unknown> | undefined {
    return this.generation.options.memberLogprobs && step.logprobs ? { member_logprobs: [memberLogprobs(step)] } : undefined;
  }

  private finishReason(result: GenerationResult): string {
    return this.tools?.call() ? "tool_calls" : result.finishReason;
  }

  private logprobsOf(step: Step): Record<string, unknown> | undefined {
    if (!this.wantsLogprobs || !step.logprobs) return undefined;
    if (this.kind === "completion") {
      const part = this.completionOffsets.add(step);
      if (part.tokens.length === 0) return undefined;
      this.completionLogprobs.push(part);
      return { ...part };
    }
    const entry = chatLogprob(step);
    if (!entry) return undefined;
    this.chatLogprobs.push(entry);
    return { content: [entry], refusal: null };
  }
}
