import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import cors from "@fastify/cors";
import type { Ensemble, GenerationResult, MemberDrop, Step } from "../engine/ensemble.js";
import { bearerCheck } from "./api-key.js";
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
  /** When set, /v1/* requires `Authorization: Bearer <apiKey>`; an empty key is refused (see apiKeyProblem). */
  readonly apiKey?: string;
  /** Requests that may wait per model while the ensemble's `parallel` generations run; more get 429. */
  readonly queueSize?: number;
  /** Largest request body in bytes. */
  readonly bodyLimit?: number;
  /** Most milliseconds a client may take to send a whole request, headers and body; slower ones get 408. */
  readonly requestTimeout?: number;
  /** Origins allowed to call the API from a browser (CORS); none when left out. `*` allows any. */
  readonly cors?: string | readonly string[];
  /** Called when a generation ends, however it ends. */
  readonly onGenerationEnd?: (event: GenerationEnd) => void;
  /** Called once per request when its response closes, whatever its status (for logs). */
  readonly onRequestEnd?: (event: RequestEnd) => void;
}

export interface RequestEnd {
  readonly method: string;
  readonly url: string;
  /** The status sent (200 for a stream, even one that ended with an error event). */
  readonly status: number;
  readonly ms: number;
  /** Why it failed: the error's code and message; for a stream, the error event it ended with. */
  readonly reason?: string;
  /** The generation it ran, if it got that far. */
  readonly generation?: GenerationEnd;
}

export interface GenerationEnd {
  readonly model: string;
  readonly stream: boolean;
  /** Steps generated (including one cut short). */
  readonly steps: number;
  /** `cancelled`: the client went away or the server shut down. */
  readonly outcome: "done" | "cancelled" | "failed";
  readonly ms: number;
  /** Members the generation went on without (`onFailure: drop`), and why. */
  readonly dropped: readonly MemberDrop[];
}

export interface ChorusServer {
  readonly app: FastifyInstance;
  /**
   * Stops taking requests, lets running generations finish for up to `graceMs`, ends the rest
   * (an error event and `[DONE]` on streams), then closes every connection, even one still sending
   * a request. Calling it again while draining shortens the grace (a second signal: `drain(0)`).
   */
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

export const DEFAULT_BODY_LIMIT = 1024 * 1024;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** How long ended generations' last events may take to reach their clients before connections are closed. */
const FLUSH_MS = 2000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const SHUTTING_DOWN = () => new ApiError(503, "the server is shutting down; retry on another instance", "server_error", null, "shutting_down");

export function createServer(options: ServerOptions): ChorusServer {
  const created = Math.floor(Date.now() / 1000);
  const models = new Map<string, Model>(
    options.models.map((m) => [m.id, { ...m, queue: new GenerationQueue(options.queueSize ?? 16, m.ensemble.parallel), created, averageMs: 1000 }]),
  );
  const running = new Set<AbortController>();
  /** Generation responses not yet closed, so a drain can let their last events go out. */
  const openResponses = new Set<Promise<void>>();
  let draining = false;
  let drainDeadline = Infinity;
  let drained: Promise<void> | undefined;

  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const app = Fastify({
    bodyLimit,
    logger: false,
    requestTimeout,
    // Node checks these timeouts every connectionsCheckingInterval (30 s by default).
    http: { headersTimeout: requestTimeout, connectionsCheckingInterval: Math.min(1000, requestTimeout) },
  });

  // Per request (keyed by the Node request), what the log line reports besides the status.
  const failures = new WeakMap<object, string>();
  const generations = new WeakMap<object, Promise<GenerationEnd>>();
  const fail = (request: FastifyRequest, error: ApiError): ApiError => {
    failures.set(request.raw, `${error.code ?? error.type}: ${error.message}`);
    return error;
  };
  app.addHook("onRequest", async (request, reply) => {
    const started = performance.now();
    reply.raw.once("close", () => {
      const ms = performance.now() - started;
      const status = reply.raw.statusCode;
      const finished = reply.raw.writableFinished;
      // A generation's cleanup may finish just after its response closed.
      void (generations.get(request.raw) ?? Promise.resolve(undefined)).then((generation) => {
        const reason = failures.get(request.raw) ?? (finished ? undefined : "the client disconnected");
        options.onRequestEnd?.({ method: request.method, url: request.url, status, ms, reason, generation });
      });
    });
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof ApiError) return reply.status(error.status).headers(error.headers).send(fail(request, error).body());
    const status = error.statusCode ?? 500;
    const message =
      error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error.code === "FST_ERR_CTP_EMPTY_JSON_BODY"
        ? `the request body is not valid JSON: ${error.message}`
        : error.code === "FST_ERR_CTP_BODY_TOO_LARGE"
          ? `the request body is larger than ${bodyLimit} bytes; send a shorter prompt`
          : error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
            ? "send the body as JSON with `Content-Type: application/json`"
            : error.message;
    const type = status >= 500 ? "server_error" : "invalid_request_error";
    return reply.status(status).send(fail(request, new ApiError(status, message, type, null, error.code ?? null)).body());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = new ApiError(404, `no route ${request.method} ${request.url}; see GET /v1/models, POST /v1/completions, POST /v1/chat/completions`, "not_found_error");
    return reply.status(404).send(fail(request, error).body());
  });

  if (options.cors !== undefined) {
    const origins = typeof options.cors === "string" ? [options.cors] : [...options.cors];
    app.register(cors, { origin: origins.includes("*") ? "*" : origins, methods: ["GET", "POST"], maxAge: 600 });
  }

  const checkKey = options.apiKey === undefined ? undefined : bearerCheck(options.apiKey);
  app.addHook("onRequest", async (request) => {
    // Decided on the route the router matched, not on the raw target: the router percent-decodes
    // (`/%761/completions`) and takes absolute-form targets (`POST http://host/v1/completions`).
    if (request.routeOptions.url?.startsWith("/v1/") !== true) return;
    // A browser's CORS preflight carries no credentials; @fastify/cors answers it.
    if (request.method === "OPTIONS" && options.cors !== undefined) return;
    if (draining) throw SHUTTING_DOWN();
    checkKey?.(request.headers.authorization);
  });

  app.get("/", async (_request, reply) => reply.type("text/html; charset=utf-8").send(TRACE_PAGE));

  app.get("/health", async (_request, reply) => {
    const queues = Object.fromEntries([...models].map(([id, m]) => [id, { ...m.queue.stats, backend: m.ensemble.backend }]));
    return reply.status(draining ? 503 : 200).send({ status: draining ? "draining" : "ok", models: queues });
  });

  const modelCard = (m: Model) => {
    // The ensemble's prompt and answer must fit every member's context.
    const contextLength = Math.min(...m.ensemble.members.map((member) => member.contextSize));
    const spec = m.ensemble.spec;
    return {
      id: m.id,
      object: "model",
      created: m.created,
      owned_by: "chorus",
      members: m.ensemble.members.map((member) => member.name),
      context_length: contextLength,
      max_model_len: contextLength,
      // What a request's `ensemble` fields default to (the trace page starts its controls here).
      ensemble: {
        method: spec.method ?? "gac",
        weights: spec.members.map((member) => member.weight ?? 1),
        gate: spec.gate ?? null,
        primary: spec.members.find((member) => member.primary)?.name ?? null,
      },
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
    const names = model.ensemble.members.map((m) => m.name);
    const count = names.length;
    const { weights, only } = generation.options;
    if (only !== undefined && !names.includes(only)) {
      throw invalid("ensemble.only", `ensemble.only: no member is named '${only}'; members: ${names.join(", ")}`);
    }
    const draft = generation.options.speculate?.draft;
    if (draft !== undefined && !names.includes(draft)) {
      throw invalid("ensemble.speculate.draft", `ensemble.speculate.draft: no member is named '${draft}'; members: ${names.join(", ")}`);
    }
    if (only !== undefined && weights) throw invalid("ensemble.only", "ensemble.only: send either `only` (one member alone) or `weights`, not both");
    if (weights && weights.length !== count) {
      throw invalid("ensemble.weights", `ensemble.weights: expected ${count} numbers (one per member: ${names.join(", ")}), got ${weights.length}`);
    }
    if (weights && !weights.some((w) => w > 0)) throw invalid("ensemble.weights", "ensemble.weights: give at least one member a weight > 0");
    if (generation.options.gate && !model.ensemble.spec.members.some((m) => m.primary)) {
      throw invalid("ensemble.gate", "ensemble.gate: gating needs a primary member, and this model's config has none; leave out `gate`");
    }
    return model;
  }

  async function serve(reply: FastifyReply, generation: GenerationRequest, kind: "completion" | "chat"): Promise<void> {
    // A request whose body was still arriving when the drain began.
    if (draining) throw SHUTTING_DOWN();
    const model = modelFor(generation);
    const controller = new AbortController();
    const closed = new Promise<void>((resolve) => {
      // The response closing before it finished means the client went away: stop generating.
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) controller.abort(new Error("client disconnected"));
        resolve();
      });
    });
    openResponses.add(closed);
    void closed.then(() => openResponses.delete(closed));
    let release: () => void;
    try {
      release = await model.queue.acquire(controller.signal);
    } catch (error) {
      if (error instanceof ApiError && error.status === 429) {
        const seconds = Math.max(1, Math.ceil((model.averageMs * (Math.floor(model.queue.stats.waiting / model.queue.parallel) + 1)) / 1000));
        throw new ApiError(429, error.message, error.type, error.param, error.code, { "retry-after": String(seconds) });
      }
      throw error;
    }
    let ended!: (end: GenerationEnd) => void;
    generations.set(reply.request.raw, new Promise((resolve) => (ended = resolve)));
    running.add(controller);
    const started = performance.now();
    const progress = { steps: 0, outcome: "failed" as GenerationEnd["outcome"], dropped: [] as MemberDrop[] };
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
          progress.dropped.push(...(next.value.dropped ?? []));
          if (generation.options.trace) trace.push(next.value);
          try {
            next = await steps.next();
          } catch (error) {
            if (controller.signal.aborted && reply.raw.destroyed) return;
            throw toApiError(controller.signal.aborted ? SHUTTING_DOWN() : error, generation.promptParam, false);
          }
        }
        const result = next.value;
        const extra = result.dropped.length > 0 ? { ...answer.extra(), dropped: result.dropped } : answer.extra();
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
      const end: GenerationEnd = { model: model.id, stream: generation.stream, steps: progress.steps, outcome: progress.outcome, ms: performance.now() - started, dropped: progress.dropped };
      ended(end);
      options.onGenerationEnd?.(end);
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
    progress: { steps: number; outcome: GenerationEnd["outcome"]; dropped: MemberDrop[] },
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
        if (step.dropped) progress.dropped.push(...step.dropped);
        const ensemble = {
          ...(step.trace ? { step: { index: step.index, text: step.text, ensembled: step.ensembled, trace: step.trace } } : {}),
          ...stepExtra,
          ...(step.dropped ? { dropped: step.dropped } : {}),
        };
        const extra = step.trace || stepExtra || step.dropped ? { ensemble } : {};
        if (choices.length === 0 && (step.trace || stepExtra || step.dropped)) choices.push(kind === "chat" ? { index: 0, delta: {}, logprobs: null, finish_reason: null } : { index: 0, text: "", logprobs: null, finish_reason: null });
        choices.forEach((choice, k) => chunk(choice, k === 0 ? extra : {}));
        next = await steps.next();
      }
      const result = next.value;
      chunk(answer.finish(result), generation.options.trace ? { ensemble: ensembleSummary(result, []) } : {});
      if (generation.includeUsage) send({ ...meta, object, choices: [], usage: usage(promptTokens, result.completionTokens) });
      progress.outcome = "done";
    } catch (error) {
      if (signal.aborted && raw.destroyed) return;
      send(fail(reply.request, toApiError(signal.aborted ? SHUTTING_DOWN() : error, generation.promptParam, false)).body());
    }
    if (!raw.destroyed) raw.end("data: [DONE]\n\n");
  }

  async function finishDraining(): Promise<void> {
    for (const m of models.values()) m.queue.rejectWaiting(SHUTTING_DOWN());
    while (running.size > 0 && Date.now() < drainDeadline) await sleep(50);
    for (const controller of running) controller.abort(SHUTTING_DOWN());
    // An ended generation stops after its current step, then writes its error event and [DONE].
    while (running.size > 0) await sleep(20);
    let flushTimer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(openResponses), new Promise((resolve) => (flushTimer = setTimeout(resolve, FLUSH_MS)))]);
    clearTimeout(flushTimer);
    const closed = app.close();
    // Connections still sending a request (or idle) would hold the close open for as long as their clients like.
    app.server.closeAllConnections();
    const sweep = setInterval(() => app.server.closeAllConnections(), 50);
    try {
      await closed;
    } finally {
      clearInterval(sweep);
    }
  }

  return {
    app,
    inFlight: () => [...models.values()].reduce((n, m) => n + m.queue.stats.running + m.queue.stats.waiting, 0),
    drain(graceMs: number): Promise<void> {
      draining = true;
      drainDeadline = Math.min(drainDeadline, Date.now() + graceMs);
      drained ??= finishDraining();
      return drained;
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
    dropped: result.dropped,
    timings: result.timings,
    ...(trace.length > 0 ? { trace: trace.map((s) => ({ index: s.index, text: s.text, ensembled: s.ensembled, trace: s.trace })) } : {}),
  };
}
