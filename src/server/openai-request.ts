import { z } from "zod";
import { IMPLEMENTED_METHODS, bytesConfigSchema } from "../config/schema.js";
import type { ChatMessage } from "../members/chat-template.js";
import type { Prompt } from "../members/member.js";
import type { GenerateOptions, MethodName } from "../engine/ensemble.js";
import { invalid } from "./errors.js";

/** The per-request `ensemble` object: overrides of the config for this request. */
const ensembleOverrides = z.strictObject({
  method: z.enum(IMPLEMENTED_METHODS).optional(),
  weights: z.array(z.number().min(0)).min(1).optional(),
  gate: z.union([z.strictObject({ threshold: z.number().gt(0).lte(1) }), z.null()]).optional(),
  unite: z.strictObject({ k: z.number().int().min(1).max(1000).optional() }).optional(),
  /** UniTE's k was `ensemble.topK`; refused with the new spelling rather than ignored. */
  topK: z.never({ error: "ensemble.topK is now ensemble.unite.k (UniTE's k); for sampling's top-k send top_k" }).optional(),
  heal: z.boolean().optional(),
  bytes: bytesConfigSchema.optional(),
  trace: z.boolean().optional(),
});

/** Fields both endpoints share. Unknown OpenAI fields (user, n = 1, ...) are accepted and ignored. */
const common = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).lte(1).nullish(),
  /** Sampling among the k most likely texts; 0 (or vLLM's -1) = off. */
  top_k: z.number().int().min(-1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  n: z.literal(1, { error: "only n = 1 is supported" }).nullish(),
  ensemble: ensembleOverrides.optional(),
};

const contentPart = z.object({ type: z.literal("text"), text: z.string() });
const message = z.object({
  role: z.enum(["system", "user", "assistant", "developer"]),
  content: z.union([z.string(), z.array(contentPart)]),
});

export const completionRequestSchema = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, { error: "send one prompt per request" })]),
});

export const chatRequestSchema = z.object({
  ...common,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
});

export type CompletionRequest = z.output<typeof completionRequestSchema>;
export type ChatRequest = z.output<typeof chatRequestSchema>;

/** Parses a body, or throws a 400 naming the first wrong field (`ensemble.weights[1]`). */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw invalid(null, "the request body must be a JSON object");
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join("");
  const detail = issue.code === "unrecognized_keys" ? `unknown field(s) ${issue.keys.join(", ")}` : issue.message;
  throw invalid(param || null, param ? `${param}: ${detail}` : detail);
}

export interface GenerationRequest {
  readonly model: string;
  readonly prompt: Prompt;
  /** The body field that holds the prompt, for errors. */
  readonly promptParam: "prompt" | "messages";
  readonly options: GenerateOptions;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

export function fromCompletion(body: CompletionRequest): GenerationRequest {
  const text = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
  return build(body, { text }, "prompt", body.max_tokens);
}

export function fromChat(body: ChatRequest): GenerationRequest {
  const messages: ChatMessage[] = body.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join(""),
  }));
  return build(body, { messages }, "messages", body.max_completion_tokens ?? body.max_tokens);
}

function build(
  body: CompletionRequest | ChatRequest,
  prompt: Prompt,
  promptParam: "prompt" | "messages",
  maxTokens: number | null | undefined,
): GenerationRequest {
  const e = body.ensemble;
  const stop = body.stop == null ? undefined : typeof body.stop === "string" ? [body.stop] : body.stop;
  return {
    model: body.model,
    prompt,
    promptParam,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    options: {
      maxTokens: maxTokens ?? undefined,
      sampling: {
        temperature: body.temperature ?? undefined,
        topP: body.top_p ?? undefined,
        topK: body.top_k == null ? undefined : Math.max(0, body.top_k),
        seed: body.seed ?? undefined,
      },
      stop,
      method: e?.method as MethodName | undefined,
      weights: e?.weights,
      gate: e?.gate,
      unite: e?.unite,
      heal: e?.heal,
      bytes: e?.bytes,
      trace: e?.trace,
    },
  };
}
