import { z } from "zod";
import { IMPLEMENTED_METHODS, bytesConfigSchema } from "../config/schema.js";
import type { ChatMessage, ChatTool } from "../members/chat-template.js";
import type { Prompt } from "../members/member.js";
import type { GenerateOptions, MethodName } from "../engine/ensemble.js";
import type { TextConstraint } from "../constraints/constraint.js";
import { grammarConstraint, jsonObjectConstraint, jsonSchemaConstraint, GrammarError, SchemaError, type JsonSchema } from "../constraints/index.js";
import { invalid } from "./errors.js";
import { planTools, type ToolPlan } from "./tools.js";

/** The per-request `ensemble` object: overrides of the config for this request. */
const ensembleOverrides = z.strictObject({
  method: z.enum(IMPLEMENTED_METHODS).optional(),
  weights: z.array(z.number().min(0)).min(1).optional(),
  /** Run this one member alone through the same engine (its name, as in GET /v1/models' `members`). */
  only: z.string().min(1).optional(),
  gate: z.union([z.strictObject({ threshold: z.number().gt(0).lte(1) }), z.null()]).optional(),
  unite: z.strictObject({ k: z.number().int().min(1).max(1000).optional() }).optional(),
  /** UniTE's k was `ensemble.topK`; refused with the new spelling rather than ignored. */
  topK: z.never({ error: "ensemble.topK is now ensemble.unite.k (UniTE's k); for sampling's top-k send top_k" }).optional(),
  heal: z.boolean().optional(),
  bytes: bytesConfigSchema.optional(),
  /** Speculative ensembling for this request (`null`: off); `draft` names a member. */
  speculate: z.union([z.strictObject({ k: z.number().int().min(1).max(32), draft: z.string().min(1).optional() }), z.null()]).optional(),
  trace: z.boolean().optional(),
  /** With `logprobs`: each voting member's log-probability of every chosen piece, in the answer's `ensemble.member_logprobs`. */
  member_logprobs: z.boolean().optional(),
  /** A GBNF grammar (llama.cpp's notation) the text must follow. */
  grammar: z.string().min(1).optional(),
});

/**
 * OpenAI fields chorus accepts and ignores: they do not change what an ensemble generates (or
 * only at their neutral value). Anything else chorus does not support is a 400 naming it.
 */
const zeroOnly = (name: string) =>
  z.literal(0, { error: `${name}: chorus does not apply penalties; leave ${name} out or send 0` }).nullish();
const ignored = {
  user: z.string().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  store: z.boolean().nullish(),
  service_tier: z.string().nullish(),
  frequency_penalty: zeroOnly("frequency_penalty"),
  presence_penalty: zeroOnly("presence_penalty"),
  logit_bias: z
    .record(z.string(), z.number())
    .refine((bias) => Object.keys(bias).length === 0, { error: "logit_bias: chorus has no shared token ids to bias; leave it out" })
    .nullish(),
};
export const IGNORED_FIELDS = [...Object.keys(ignored), "parallel_tool_calls (chat)", "echo: false, best_of: 1 (completions)"];

const jsonSchemaFormat = z.strictObject({
  name: z.string().min(1).max(64),
  description: z.string().optional(),
  schema: z.record(z.string(), z.unknown()).optional(),
  strict: z.boolean().nullish(),
});
const responseFormat = z.discriminatedUnion(
  "type",
  [
    z.strictObject({ type: z.literal("text") }),
    z.strictObject({ type: z.literal("json_object") }),
    z.strictObject({ type: z.literal("json_schema"), json_schema: jsonSchemaFormat }),
  ],
  { error: "response_format.type must be text, json_object or json_schema" },
);

/** Fields both endpoints share. */
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
  response_format: responseFormat.nullish(),
  ensemble: ensembleOverrides.optional(),
  ...ignored,
};

const TEXT_ONLY = "chorus takes text only; send this content as text";
const contentPart = z
  .object({ type: z.string(), text: z.unknown().optional() })
  .superRefine((part, ctx) => {
    if (part.type !== "text") ctx.addIssue({ code: "custom", message: `'${part.type}' parts are not supported: ${TEXT_ONLY}` });
    else if (typeof part.text !== "string") ctx.addIssue({ code: "custom", path: ["text"], message: "a text part needs `text`, a string" });
  });
const content = z.union([z.string(), z.array(contentPart)], { error: "content must be a string or an array of text parts" });

const toolCall = z.strictObject({
  id: z.string().min(1),
  type: z.literal("function"),
  function: z.strictObject({ name: z.string().min(1), arguments: z.string() }),
});
const message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant", "tool"], { error: "role must be system, developer, user, assistant or tool" }),
    content: content.nullish(),
    name: z.string().optional(),
    tool_calls: z.array(toolCall).min(1).optional(),
    tool_call_id: z.string().min(1).optional(),
    refusal: z.string().nullish(),
  })
  .superRefine((m, ctx) => {
    if (m.role === "tool" && m.tool_call_id === undefined) ctx.addIssue({ code: "custom", path: ["tool_call_id"], message: "a tool message needs the tool_call_id it answers" });
    if (m.role !== "assistant" && m.tool_calls !== undefined) ctx.addIssue({ code: "custom", path: ["tool_calls"], message: "only assistant messages carry tool_calls" });
    if (m.role !== "tool" && m.tool_call_id !== undefined) ctx.addIssue({ code: "custom", path: ["tool_call_id"], message: "only tool messages carry tool_call_id" });
    if (m.content == null && !(m.role === "assistant" && m.tool_calls)) ctx.addIssue({ code: "custom", path: ["content"], message: "content is required (it may be null only in an assistant message with tool_calls)" });
  });

const tool = z.strictObject({
  type: z.literal("function", { error: "only function tools are supported" }),
  function: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, { error: "a function name is 1-64 letters, digits, _ or -" }),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});
const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.strictObject({ type: z.literal("function"), function: z.strictObject({ name: z.string().min(1) }) }),
]);

export const completionRequestSchema = z.strictObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, { error: "send one prompt per request" })]),
  /** Log-probabilities of this many best alternatives per step (OpenAI allows up to 5). */
  logprobs: z.number().int().min(0).max(20).nullish(),
  echo: z.literal(false, { error: "echo is not supported; leave it out" }).nullish(),
  best_of: z.literal(1, { error: "best_of must be 1" }).nullish(),
});

export const chatRequestSchema = z.strictObject({
  ...common,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice.nullish(),
  /** Accepted; an answer holds at most one tool call. */
  parallel_tool_calls: z.boolean().nullish(),
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
  const param = paramOf(issue.path);
  if (issue.code === "unrecognized_keys") {
    const field = param ? `${param}.${issue.keys[0]}` : issue.keys[0]!;
    const extra = param ? "" : ` (accepted and ignored: ${IGNORED_FIELDS.join(", ")})`;
    throw invalid(field, `${field}: chorus does not support this field; remove it${extra}`);
  }
  throw invalid(param || null, param ? `${param}: ${issue.message}` : issue.message);
}

function paramOf(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join("");
}

export interface GenerationRequest {
  readonly model: string;
  readonly prompt: Prompt;
  /** The body field that holds the prompt, for errors. */
  readonly promptParam: "prompt" | "messages";
  readonly options: GenerateOptions;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** Log-probabilities asked for (alternatives per step), else undefined. */
  readonly logprobs?: number;
  /** How to read tool calls out of the generated text (chat with `tools`). */
  readonly tools?: ToolPlan;
}

export function fromCompletion(body: CompletionRequest): GenerationRequest {
  const text = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
  return build(body, { text }, "prompt", body.max_tokens, body.logprobs ?? undefined, undefined);
}

export function fromChat(body: ChatRequest): GenerationRequest {
  const messages: ChatMessage[] = body.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: m.content == null ? "" : typeof m.content === "string" ? m.content : m.content.map((part) => part.text as string).join(""),
    ...(m.tool_calls ? { tool_calls: m.tool_calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.function.name, arguments: parseArguments(c.function.arguments) } })) } : {}),
    ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
    ...(m.name !== undefined ? { name: m.name } : {}),
  }));
  // A tool result names its function when the call it answers is in the conversation.
  const names = new Map(body.messages.flatMap((m) => m.tool_calls ?? []).map((c) => [c.id, c.function.name]));
  for (const m of messages) if (m.role === "tool" && m.name === undefined && names.has(m.tool_call_id!)) m.name = names.get(m.tool_call_id!);
  const plan = body.tools && body.tools.length > 0 ? planTools(body.tools as ChatTool[], body.tool_choice ?? "auto") : undefined;
  if (!plan && body.tool_choice != null && body.tool_choice !== "none" && body.tool_choice !== "auto") {
    throw invalid("tool_choice", "tool_choice: no tools were given; add `tools` or leave tool_choice out");
  }
  if (plan?.constraint && body.response_format && body.response_format.type !== "text") {
    throw invalid("response_format", "response_format: a tool call is generated as JSON already; send either response_format or tools that may be called, not both");
  }
  const logprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : undefined;
  if (body.top_logprobs != null && body.logprobs !== true) throw invalid("top_logprobs", "top_logprobs: also send `logprobs: true`");
  const prompt: Prompt = plan ? { messages, tools: plan.tools } : { messages };
  return build(body, prompt, "messages", body.max_completion_tokens ?? body.max_tokens, logprobs, plan);
}

/** Arguments as an object for chat templates (Hugging Face's form), or the string when it is not JSON. */
function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function build(
  body: CompletionRequest | ChatRequest,
  prompt: Prompt,
  promptParam: "prompt" | "messages",
  maxTokens: number | null | undefined,
  logprobs: number | undefined,
  tools: ToolPlan | undefined,
): GenerationRequest {
  const e = body.ensemble;
  const stop = body.stop == null ? undefined : typeof body.stop === "string" ? [body.stop] : body.stop;
  const constraint = tools?.constraint ?? constraintOf(body);
  return {
    model: body.model,
    prompt,
    promptParam,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    logprobs,
    tools,
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
      only: e?.only,
      gate: e?.gate,
      unite: e?.unite,
      heal: e?.heal,
      bytes: e?.bytes,
      speculate: e?.speculate,
      trace: e?.trace,
      constraint,
      logprobs,
      memberLogprobs: logprobs !== undefined && e?.member_logprobs === true,
    },
  };
}

/** The constraint `response_format` or `ensemble.grammar` asks for; a schema chorus cannot follow is a 400 naming the keyword. */
function constraintOf(body: CompletionRequest | ChatRequest): TextConstraint | undefined {
  const format = body.response_format;
  const grammar = body.ensemble?.grammar;
  if (grammar !== undefined && format && format.type !== "text") {
    throw invalid("ensemble.grammar", "ensemble.grammar: send either a grammar or a response_format, not both");
  }
  if (grammar !== undefined) {
    try {
      return grammarConstraint(grammar);
    } catch (error) {
      if (error instanceof GrammarError) throw invalid("ensemble.grammar", `ensemble.grammar: ${error.message}`);
      throw error;
    }
  }
  if (!format || format.type === "text") return undefined;
  if (format.type === "json_object") return jsonObjectConstraint();
  const param = "response_format.json_schema.schema";
  try {
    return jsonSchemaConstraint((format.json_schema.schema ?? true) as JsonSchema, format.json_schema.name);
  } catch (error) {
    if (error instanceof SchemaError) throw invalid(error.path ? `${param}.${error.path}` : param, `${param}: ${error.message}`);
    throw error;
  }
}
