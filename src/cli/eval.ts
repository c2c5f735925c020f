import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import cliProgress from "cli-progress";
import { textTable } from "../eval/report.js";
import { runEval, type EvalProgress } from "../eval/runner.js";
import { findTask, TASK_NAMES } from "../eval/tasks/index.js";
import type { TaskDefinition } from "../eval/tasks/task.js";
import { prepareBackend } from "./backend.js";
import { addEnsembleOptions, ensembleFromOptions, type CommandEnsemble } from "./ensemble-options.js";

interface EvalFlags {
  task: string;
  data: string;
  limit?: number;
  shots?: number;
  seed?: number;
  out?: string;
  resume?: boolean;
  membersToo?: boolean;
  maxSteps?: number;
}

const integer = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
  return n;
};

export function registerEval(program: Command): void {
  const command = program
    .command("eval")
    .description("measure accuracy on a task: the ensemble and, with --members-too, each member alone on the same items");
  addEnsembleOptions(command, { gate: true, gpu: true })
    .requiredOption("--task <task>", `task: ${TASK_NAMES.join(", ")}`)
    .requiredOption("--data <path>", "data file (mmlu: a *_test.csv file or the mmlu folder)")
    .option("--limit <n>", "evaluate the first n items only", integer("--limit", 1))
    .option("--shots <k>", "few-shot examples before each question (gsm8k, arc, mmlu, nq-open)", integer("--shots", 0))
    .option("--seed <s>", "seed for sampling items (next-word); decoding is always greedy", integer("--seed", 0))
    .option("--out <dir>", "folder for results.jsonl, summary.json, summary.md, chart.svg (default: eval-results/<task>)")
    .option("--resume", "continue the results in --out, skipping finished items")
    .option("--members-too", "also run every member alone on the same items")
    .option("--max-steps <n>", "steps (chosen pieces of text) to generate per item (default: the task's)", integer("--max-steps", 1))
    .action(async (flags: EvalFlags, self: Command) => {
      const task = findTask(flags.task);
      await runEvalCommand(flags, task, await ensembleFromOptions(self));
    });
}

async function runEvalCommand(flags: EvalFlags, task: TaskDefinition, { config }: CommandEnsemble): Promise<void> {
  const out = flags.out ?? `eval-results/${task.name}`;
  await prepareBackend(config);
  const { summary, files } = await runEval(config, {
    task,
    dataPath: flags.data,
    out,
    limit: flags.limit,
    shots: flags.shots,
    seed: flags.seed,
    resume: flags.resume,
    membersToo: flags.membersToo,
    maxSteps: flags.maxSteps,
    progress: progressBar(out),
  });
  process.stdout.write(textTable(summary) + "\n");
  const failed = summary.systems.filter((s) => s.errors > 0);
  if (failed.length > 0) {
    process.stderr.write(
      `${failed.map((s) => `${s.name}: ${s.errors} of ${s.n}`).join(", ")} items could not run and count as wrong; ` +
        `the "error" field in results.jsonl says why (usually a prompt longer than a member's context: fewer --shots, or a larger contextSize)\n`,
    );
  }
  process.stderr.write(`results: ${out}/results.jsonl\nsummary: ${files.summary}\nmarkdown: ${files.markdown}\nchart: ${files.chart}\n`);
}

/**
 * A cli-progress bar on stderr; when stderr is not a terminal, a status line every 10 s. Ctrl-C
 * restores the terminal and says how to continue (finished results are already on disk).
 */
function progressBar(out: string): EvalProgress {
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: "{bar} {percentage}% | {value}/{total} item×system | ETA {eta_formatted} | {system}: {correct}/{ran} correct",
      noTTYOutput: !process.stderr.isTTY,
      notTTYSchedule: 10_000,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const interrupted = () => {
    bar.stop();
    process.stderr.write(`interrupted: finished results are in ${out}/results.jsonl; add --resume to the same command to continue\n`);
    process.exit(130);
  };
  return {
    start(total, alreadyDone) {
      process.once("SIGINT", interrupted);
      bar.start(total, alreadyDone, { system: "", correct: 0, ran: 0 });
    },
    advance(done, system, correct, ran) {
      bar.update(done, { system, correct, ran });
    },
    stop() {
      process.off("SIGINT", interrupted);
      bar.stop();
    },
  };
}
