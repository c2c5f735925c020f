import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { addEnsembleOptions, ensembleFromOptions, type CommandEnsemble } from "./ensemble-options.js";
import { Ensemble } from "../engine/ensemble.js";
import { createServer, DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT_MS, type RequestEnd } from "../server/app.js";
import { formatBackend } from "../members/backend.js";
import { prepareBackend } from "./backend.js";
import { apiKeyProblem } from "../server/api-key.js";

interface ServeFlags {
  host: string;
  port: number;
  apiKey?: string;
  name?: string;
  queueSize: number;
  parallel: number;
  bodyLimit: number;
  requestTimeout: number;
  drainTimeout: number;
  cors?: string[];
}

/** Generations a server runs at once unless told: see the README's measurements (bench/serve.ts). */
export const DEFAULT_PARALLEL = 4;

const integer = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
  return n;
};

export function registerServe(program: Command): void {
  const command = program
    .command("serve")
    .description("serve an ensemble over an OpenAI-compatible HTTP API, with a live trace page at /");
  addEnsembleOptions(command, { gate: true, generation: true, gpu: true })
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0 = any free port)", integer("--port", 0), 8080)
    .option("--api-key <key>", "require `Authorization: Bearer <key>` on /v1/* (default: $CHORUS_API_KEY, else none)")
    .option("--name <id>", "the model id clients ask for (default: the config file's name without extension, or the members' names joined by +)")
    .option("--parallel <n>", "generations at once, each with its own sequence (KV cache of contextSize tokens) per local member", integer("--parallel", 1), DEFAULT_PARALLEL)
    .option("--queue-size <n>", "requests that may wait while --parallel generate; more get 429", integer("--queue-size", 0), 16)
    .option("--body-limit <bytes>", "largest request body", integer("--body-limit", 1024), DEFAULT_BODY_LIMIT)
    .option("--request-timeout <ms>", "most time a client may take to send a whole request (headers and body); slower ones get 408", integer("--request-timeout", 1), DEFAULT_REQUEST_TIMEOUT_MS)
    .option("--cors <origin>", "let browser apps from this origin call the API (repeatable; * for any); off by default", (value: string, previous: string[] = []) => [...previous, value])
    .option("--drain-timeout <ms>", "on SIGTERM/SIGINT, how long running generations may finish before they are ended (a second signal ends them at once)", integer("--drain-timeout", 0), 30_000)
    .action(async (flags: ServeFlags, self: Command) => {
      await runServe(flags, await ensembleFromOptions(self));
    });
}

async function runServe(flags: ServeFlags, { config, label }: CommandEnsemble): Promise<void> {
  const apiKey = chosenApiKey(flags.apiKey, process.env.CHORUS_API_KEY);
  const id = flags.name ?? label;
  await prepareBackend(config);
  const ensemble = await Ensemble.create({ ...config, parallel: flags.parallel });
  const server = createServer({
    models: [{ id, ensemble }],
    apiKey,
    queueSize: flags.queueSize,
    bodyLimit: flags.bodyLimit,
    requestTimeout: flags.requestTimeout,
    onRequestEnd: (e) => process.stderr.write(`chorus: ${requestLine(e)}\n`),
    cors: flags.cors,
  });
  let address: string;
  try {
    address = await server.app.listen({ host: flags.host, port: flags.port });
  } catch (error) {
    await ensemble.dispose();
    throw new Error(`cannot listen on ${flags.host}:${flags.port}: ${(error as Error).message}; pick another --port or --host`);
  }
  process.stderr.write(`chorus: serving model '${id}' (${ensemble.members.map((m) => m.name).join(" + ")}) at ${address}, ${ensemble.parallel} generation(s) at once\n`);
  process.stderr.write(`chorus: ${formatBackend(ensemble.backend)}\n`);
  await new Promise<void>((resolve) => {
    let signals = 0;
    // First signal: drain. Second: end running generations now, still with an error event and [DONE]. Third: exit at once.
    const stop = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        process.stderr.write(`chorus: ${signal}: finishing ${server.inFlight()} request(s), then exiting\n`);
        server
          .drain(flags.drainTimeout)
          .then(() => ensemble.dispose())
          .then(resolve, (error: Error) => {
            process.stderr.write(`chorus: shutdown: ${error.message}\n`);
            resolve();
          });
      } else if (signals === 2) {
        process.stderr.write(`chorus: ${signal} again: ending ${server.inFlight()} request(s) now (once more to exit at once)\n`);
        void server.drain(0);
      } else {
        process.exit(signal === "SIGINT" ? 130 : 143);
      }
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}

/** --api-key, else $CHORUS_API_KEY; either one set but empty is a mistake, not "no authentication". */
function chosenApiKey(flag: string | undefined, env: string | undefined): string | undefined {
  const [key, source] = flag !== undefined ? [flag, "--api-key"] : [env, "CHORUS_API_KEY"];
  if (key === undefined) return undefined;
  const problem = apiKeyProblem(key);
  if (problem) throw new Error(`${source}: ${problem}`);
  return key;
}

/** One log line per request: `POST /v1/completions 200 812 ms · tiny stream done: 30 steps`, then the reason it failed, if it did. */
function requestLine(e: RequestEnd): string {
  const url = e.url.length > 200 ? `${e.url.slice(0, 200)}…` : e.url;
  const parts = [`${e.method} ${url} ${e.status} ${Math.round(e.ms)} ms`];
  const g = e.generation;
  if (g) parts.push(`${g.model} ${g.stream ? "stream" : "request"} ${g.outcome}: ${g.steps} steps`);
  for (const drop of g?.dropped ?? []) parts.push(`member '${drop.member}' dropped after ${drop.step} steps (onFailure: drop): ${drop.reason}`);
  if (e.reason) parts.push(e.reason);
  return parts.join(" · ");
}
