import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import os from "node:os";
import { benchEnsemble, benchRatios, benchTable, peakRssMiB } from "../bench/measure.js";
import { formatBackend, type BackendReport } from "../members/backend.js";
import { prepareBackend } from "./backend.js";
import { addEnsembleOptions, ensembleFromOptions } from "./ensemble-options.js";

interface BenchFlags {
  steps: number;
  prompt: string;
  gate?: number;
  json?: boolean;
}

export function registerBench(program: Command): void {
  const command = program
    .command("bench")
    .description("speed and memory: each member alone, then each method with and without gating, on the same prompt");
  addEnsembleOptions(command, { gpu: true })
    .option("--steps <n>", "greedy steps per row", (value: string) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--steps must be an integer ≥ 1, got '${value}'`);
      return n;
    }, 64)
    .option("--prompt <text>", "the prompt every row starts from", "Once upon a time, there was a little girl named Lily. She")
    .option("--gate <threshold>", "threshold for the gated rows (default: the config's, else 0.9)", (value: string) => {
      const n = Number(value);
      if (value.trim() === "" || !(n > 0 && n <= 1)) throw new InvalidArgumentError(`--gate must be a threshold in (0, 1], got '${value}'`);
      return n;
    })
    .option("--json", "print JSON instead of the table")
    .action(async (flags: BenchFlags, self: Command) => {
      const { config, label } = await ensembleFromOptions(self);
      const log = (message: string) => process.stderr.write(message + "\n");
      log(`chorus bench: ${flags.steps} steps per row, ${os.availableParallelism()} cores, node ${process.version}`);
      await prepareBackend(config);
      let backend: BackendReport | undefined;
      const rows = await benchEnsemble(config, { setup: label, steps: flags.steps, prompt: flags.prompt, threshold: flags.gate, log, onBackend: (b) => (backend = b) });
      if (flags.json) process.stdout.write(JSON.stringify({ steps: flags.steps, peakRssMiB: peakRssMiB(), backend, rows }, null, 2) + "\n");
      else process.stdout.write(`${backend ? formatBackend(backend) + "\n\n" : ""}${benchTable(rows)}\n\n${benchRatios(rows)}\n\npeak RSS ${peakRssMiB().toFixed(0)} MiB\n`);
    });
}
