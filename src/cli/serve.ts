import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { addEnsembleOptions, ensembleFromOptions, type CommandEnsemble } from "./ensemble-options.js";
import { Ensemble } from "../engine/ensemble.js";
import { createServer } from "../server/app.js";
import { formatBackend } from "../members/backend.js";
import { prepareBackend } from "./backend.js";

interface ServeFlags {
  host: string;
  port: number;
  apiKey?: string;
  name?: string;
  queueSize: number;
  bodyLimit: number;
  drainTimeout: number;
  cors?: string[];
}

const integer = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
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
    .option("--queue-size <n>", "requests that may wait while one generates; more get 429", integer("--queue-size", 0), 16)
    .option("--body-limit <bytes>", "largest request body", integer("--body-limit", 1024), 1024 * 1024)
    .option("--cors <origin>", "let browser apps from this origin call the API (repeatable; * for any); off by default", (value: string, previous: string[] = []) => [...previous, value])
    .option("--drain-timeout <ms>", "on SIGTERM, how long running generations may finish before they are ended", integer("--drain-timeout", 0), 30_000)
    .action(async (flags: ServeFlags, self: Command) => {
      await runServe(flags, await ensembleFromOptions(self));
    });
}

async function runServe(flags: ServeFlags, { config, label }: CommandEnsemble): Promise<void> {
  const id = flags.name ?? label;
  await prepareBackend(config);
  const ensemble = await Ensemble.create(config);
  const server = createServer({
    models: [{ id, ensemble }],
    apiKey: flags.apiKey ?? (process.env.CHORUS_API_KEY || undefined),
    queueSize: flags.queueSize,
    bodyLimit: flags.bodyLimit,
    cors: flags.cors,
    onGenerationEnd: (e) =>
      process.stderr.write(`chorus: ${e.model} ${e.stream ? "stream" : "request"} ${e.outcome}: ${e.steps} steps in ${Math.round(e.ms)} ms\n`),
  });
  let address: string;
  try {
    address = await server.app.listen({ host: flags.host, port: flags.port });
  } catch (error) {
    await ensemble.dispose();
    throw new Error(`cannot listen on ${flags.host}:${flags.port}: ${(error as Error).message}; pick another --port or --host`);
  }
  process.stderr.write(`chorus: serving model '${id}' (${ensemble.members.map((m) => m.name).join(" + ")}) at ${address}\n`);
  process.stderr.write(`chorus: ${formatBackend(ensemble.backend)}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`chorus: ${signal}: finishing ${server.inFlight()} request(s), then exiting\n`);
      server
        .drain(flags.drainTimeout)
        .then(() => ensemble.dispose())
        .then(resolve, (error: Error) => {
          process.stderr.write(`chorus: shutdown: ${error.message}\n`);
          resolve();
        });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
