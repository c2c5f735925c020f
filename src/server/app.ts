import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import cors from "@fastify/cors";
import type { Ensemble, GenerationResult, Step } from "../engine/ensemble.js";
import { ApiError, invalid, toApiError } from "./errors.js";
import { GenerationQueue } from "./queue.js";
import { chatRequestSchema, completionRequestSchema, fromChat, fromCompletion, parseBody, type GenerationRequest } from "./openai-request.js";
import { TRACE_PAGE } from "./trace-page.js";
import { AnswerBuilder } from "./answer.js";

export interface ServedModel {
  /** The name clients pass as `model`. */
  readonly id: string;
  readonly ensemble: Ensemble;
}

export interface ServerOptions {
  readonly models: readonly ServedModel[];
  /** When set, /v1/* requires `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string;
  /** Requests that may wait per model while one generates; more get 429. */
  readonly queueSize?: number;
  /** Largest request body in bytes. */
  readonly bodyLimit?: number;
  /** Origins allowed to call the API from a browser (CORS); none when left out. `*` allows any. */
  readonly cors?: string | readonly string[];
  /** Called when a generation ends, however it ends (for logs). */
  readonly onGenerationEnd?: (event: GenerationEnd) => void;
}

export interface GenerationEnd {
  readonly model: string;
  readonly stream: boolean;
  /** Steps generated (including one cut short). */
  readonly steps: number;
  /** `cancelled`: the client went away or the server shut down. */
  readonly outcome: "done" | "cancelled" | "failed";
  readonly ms: number;
}

export interface ChorusServer {
  readonly app: FastifyInstance;
  /** Stops taking requests, lets running generations finish for up to `graceMs`, ends the rest, then closes. */
  drain(graceMs: number): Promise<void>;
  /** Generations running or waiting now, over all models. */
  inFlight(): number;
}

interface Model extends ServedModel {
  readonly queue: GenerationQueue;
  readonly created: number;
  /** Recent generations' duration, for Retry-After. */
  averageMs: number;
}

const SHUTTING_DOWN = () => new ApiError(503, "the server is shutting down; retry on another instance", "server_error", null, "shutting_down");

export function createServer(options: ServerOptions): ChorusServer {
  const created = Math.floor(Date.now() / 1000);
  const models = new Map<string, Model>(
    options.models.map((m) => [m.id, { ...m, queue: new GenerationQueue(options.queueSize ?? 16), created, averageMs: 1000 }]),
  );
  const running = new Set<AbortController>();
  let draining = false;

  const app = Fastify({ bodyLimit: options.bodyLimit ?? 1024 * 1024, logger: false });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, _request, reply) => {
    if (error instanceof ApiError) return reply.status(error.status).headers(error.headers).send(error.body());
    const status = error.statusCode ?? 500;
    const message =
      error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error.code === "FST_ERR_CTP_EMPTY_JSON_BODY"
        ? `the request body is not valid JSON: ${error.message}`
        : error.code === "FST_ERR_CTP_BODY_TOO_LARGE"
          ? `the request body is larger than ${options.bodyLimit ?? 1024 * 1024} bytes; send a shorter prompt`
          : error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
            ? "send the body as JSON with `Content-Type: application/json`"
            : error.message;
    const type = status >= 500 ? "server_error" : "invalid_request_error";
    return reply.status(status).send(new ApiError(status, message, type, null, error.code ?? null).body());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = new ApiError(404, `no route ${request.method} ${request.url}; see GET /v1/models, POST /v1/completions, POST /v1/chat/completions`, "not_found_error");
    return reply.status(404).send(error.body());
  });

  if (options.cors !== undefined) {
    const origins = typeof options.cors === "string" ? [options.cors] : [...options.cors];
    app.register(cors, { origin: origins.includes("*") ? "*" : origins, methods: ["GET", "POST"], maxAge: 600 });
  }

  app.addHook("onRequest", async (request) => {
    if (!request.url.startsWith("/v1/")) return;
    // A browser's CORS preflight carries no credentials; @fastify/cors answers it.
    if (request.method === "OPTIONS" && options.cors !== undefined) return;
    if (draining) throw SHUTTING_DOWN();
    if (options.apiKey === undefined) return;
    const header = request.headers.authorization ?? "";
    if (!header.startsWith("Bearer ")) {
      throw new ApiError(401, "missing API key: send `Authorization: Bearer <key>`", "authentication_error", null, "invalid_api_key");
    }
    if (header.slice(7) !== options.apiKey) throw new ApiError(401, "incorrect API key", "authentication_error", null, "invalid_api_key");
  });

  app.get("/", async (_request, reply) => reply.type("text/html; charset=utf-8").send(TRACE_PAGE));

  app.get("/health", async (_request, reply) => {
    const queues = Object.fromEntries([...models].map(([id, m]) => [id, { ...m.queue.stats, backend: m.ensemble.backend }]));
    return reply.status(draining ? 503 : 200).send({ status: draining ? "draining" : "ok", models: queues });
  });

  const modelCard = (m: Model) => {
    // The ensemble's prompt and answer must fit every member's context.
    const contextLength = Math.min(...m.ensemble.members.map((member) => member.contextSize));
    return {
      id: m.id,
      object: "model",
      created: m.created,
      owned_by: "chorus",
      members: m.ensemble.members.map((member) => member.name),
      context_length: contextLength,
      max_model_len: contextLength,
    };
  };
  app.get("/v1/models", async () => ({ object: "list", data: [...models.values()].map(modelCard) }));
  app.get<{ Params: { id: string } }>("/v1/models/:id", async (request) => {
    const model = models.get(request.params.id);
    if (!model) throw unknownModel(request.params.id);
    return modelCard(model);
  });

  app.post("/v1/completions", async (request, reply) => {
    const body = parseBody(completionRequestSchema, request.body);
    await serve(reply, fromCompletion(body), "completion");
  });

  app.post("/v1/chat/completions", async (request, reply) => {
    const body = parseBody(chatRequestSchema, request.body);
    await serve(reply, fromChat(body), "chat");
  });

  function unknownModel(id: string): ApiError {
    return new ApiError(404, `the model '${id}' does not exist; served models: ${[...models.keys()].join(", ")}`, "not_found_error", "model", "model_not_found");
  }

  function modelFor(generation: GenerationRequest): Model {
    const model = models.get(generation.model);
    if (!model) throw unknownModel(generation.model);
    const count = model.ensemble.members.length;
    const weights = generation.options.weights;
    if (weights && weights.length !== count) {
      throw invalid("ensemble.weights", `ensemble.weights: expected ${count} numbers (one per member: ${model.ensemble.members.map((m) => m.name).join(", ")}), got ${weights.length}`);
    }
    if (weights && !weights.some((w) => w > 0)) throw invalid("ensemble.weights", "ensemble.weights: give at least one member a weight > 0");
    if (generation.options.gate && !model.ensemble.spec.members.some((m) => m.primary)) {
      throw invalid("ensemble.gate", "ensemble.gate: gating needs a primary member, and this model's config has none; leave out `gate`");
    }
    return model;
  }

  async function serve(reply: FastifyReply, generation: GenerationRequest, kind: "completion" | "chat"): Promise<void> {
    const model = modelFor(generation);
    const controller = new AbortController();
    // The response closing before it finished means the client went away: stop generating.
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) controller.abort(new Error("client disconnected"));
    });
    let release: () => void;
    try {
      release = await model.queue.acquire(controller.signal);
    } catch (error) {
      if (error instanceof ApiError && error.status === 429) {
        const seconds = Math.max(1, Math.ceil((model.averageMs * (model.queue.stats.waiting + 1)) / 1000));
        throw new ApiError(429, error.message, error.type, error.param, error.code, { "retry-after": String(seconds) });
      }
      throw error;
    }
    running.add(controller);
    const started = performance.now();
    const progress = { steps: 0, outcome: "failed" as GenerationEnd["outcome"] };
    let steps: AsyncGenerator<Step, GenerationResult, undefined> | undefined;
    try {
      if (controller.signal.aborted) return;
      steps = model.ensemble.stream(generation.prompt, { ...generation.options, signal: controller.signal });
      let first: IteratorResult<Step, GenerationResult>;
      try {
        first = await steps.next();
      } catch (error) {
        throw toApiError(error, generation.promptParam, true);
      }
      const promptTokens = countPromptTokens(model.ensemble, generation);
      const meta = { id: `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`, created: Math.floor(Date.now() / 1000), model: model.id };
      const answer = new AnswerBuilder(kind, generation);
      if (generation.stream) {
        await streamResponse(reply, steps, first, meta, kind, generation, answer, promptTokens, controller.signal, progress);
      } else {
        const trace: Step[] = [];
        let next = first;
        while (!next.done) {
          progress.steps++;
          answer.add(next.value);
          if (generation.options.trace) trace.push(next.value);
          try {
            next = await steps.next();
          } catch (error) {
            if (controller.signal.aborted && reply.raw.destroyed) return;
            throw toApiError(controller.signal.aborted ? SHUTTING_DOWN() : error, generation.promptParam, false);
          }
        }
        const result = next.value;
        const extra = answer.extra();
        await reply.send({
          ...meta,
          object: kind === "chat" ? "chat.completion" : "text_completion",
          choices: [answer.choice(result)],
          usage: usage(promptTokens, result.completionTokens),
          ...(generation.options.trace || extra ? { ensemble: { ...(generation.options.trace ? ensembleSummary(result, trace) : {}), ...extra } } : {}),
        });
        progress.outcome = "done";
      }
    } finally {
      // However the response ended, close the generation so the ensemble is free for the next one.
      await steps?.return(undefined as never).catch(() => undefined);
      running.delete(controller);
      release();
      if (controller.signal.aborted && progress.outcome !== "done") progress.outcome = "cancelled";
      if (progress.outcome === "done") model.averageMs = 0.8 * model.averageMs + 0.2 * (performance.now() - started);
      options.onGenerationEnd?.({ model: model.id, stream: generation.stream, steps: progress.steps, outcome: progress.outcome, ms: performance.now() - started });
    }
  }

  async function streamResponse(
    reply: FastifyReply,
    steps: AsyncGenerator<Step, GenerationResult, undefined>,
    first: IteratorResult<Step, GenerationResult>,
    meta: { id: string; created: number; model: string },
    kind: "completion" | "chat",
    generation: GenerationRequest,
    answer: AnswerBuilder,
    promptTokens: number,
    signal: AbortSignal,
    progress: { steps: number; outcome: GenerationEnd["outcome"] },
  ): Promise<void> {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const send = (data: unknown) => {
      if (!raw.destroyed) raw.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => send({ ...meta, object, choices: [choice], ...extra });
    if (kind === "chat") send({ ...meta, object, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] });
    // The engine's step texts are already whole characters, held back where a stop string may begin.
    let next = first;
    try {
      while (!next.done) {
        const step = next.value;
        progress.steps++;
        const choices = answer.add(step);
        const stepExtra = answer.stepExtra(step);
        const ensemble = {
          ...(step.trace ? { step: { index: step.index, text: step.text, ensembled: step.ensembled, trace: step.trace } } : {}),
          ...stepExtra,
        };
        const extra = step.trace || stepExtra ? { ensemble } : {};
        if (choices.length === 0 && (step.trace || stepExtra)) choices.push(kind === "chat" ? { index: 0, delta: {}, logprobs: null, finish_reason: null } : { index: 0, text: "", logprobs: null, finish_reason: null });
        choices.forEach((choice, k) => chunk(choice, k === 0 ? extra : {}));
        next = await steps.next();
      }
      const result = next.value;
      chunk(answer.finish(result), generation.options.trace ? { ensemble: ensembleSummary(result, []) } : {});
      if (generation.includeUsage) send({ ...meta, object, choices: [], usage: usage(promptTokens, result.completionTokens) });
      progress.outcome = "done";
    } catch (error) {
      if (signal.aborted && raw.destroyed) return;
      send(toApiError(signal.aborted ? SHUTTING_DOWN() : error, generation.promptParam, false).body());
    }
    if (!raw.destroyed) raw.end("data: [DONE]\n\n");
  }

  return {
    app,
    inFlight: () => [...models.values()].reduce((n, m) => n + m.queue.stats.running + m.queue.stats.waiting, 0),
    async drain(graceMs: number): Promise<void> {
      draining = true;
      for (const m of models.values()) m.queue.rejectWaiting(SHUTTING_DOWN());
      const deadline = Date.now() + graceMs;
      while (running.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      for (const controller of running) controller.abort(SHUTTING_DOWN());
      await app.close();
    },
  };
}

function usage(promptTokens: number, completionTokens: number) {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Prompt tokens as the primary member (else the first) counts them; completion tokens are ensemble steps. */
function countPromptTokens(ensemble: Ensemble, generation: GenerationRequest): number {
  const at = Math.max(0, ensemble.spec.members.findIndex((m) => m.primary));
  const tokens = ensemble.members[at]!.promptTokens(generation.prompt);
  return tokens.prefix.length + tokens.text.ids.length;
}

function ensembleSummary(result: GenerationResult, trace: readonly Step[]) {
  return {
    steps: result.steps,
    ensembled_steps: result.ensembledSteps,
    escalated_steps: result.escalatedSteps,
    members: result.members,
    timings: result.timings,
    ...(trace.length > 0 ? { trace: trace.map((s) => ({ index: s.index, text: s.text, ensembled: s.ensembled, trace: s.trace })) } : {}),
  };
}
