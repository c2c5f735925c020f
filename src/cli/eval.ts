import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import cliProgress from "cli-progress";
import { loadEnsembleConfig } from "../config/load.js";
import { IMPLEMENTED_METHODS, methodProblem } from "../config/schema.js";
import type { MethodName } from "../engine/ensemble.js";
import { textTable } from "../eval/report.js";
import { runEval, type EvalProgress } from "../eval/runner.js";
import { findTask, TASK_NAMES } from "../eval/tasks/index.js";
import type { GpuSetting } from "../members/runtime.js";
import { GPU_OPTION_HELP, parseGpu, prepareBackend, withGpu } from "./backend.js";

interface EvalFlags {
  config: string;
  task: string;
  data: string;
  limit?: number;
  shots?: number;
  seed?: number;
  out?: string;
  resume?: boolean;
  membersToo?: boolean;
  maxTokens?: number;
  method?: string;
  gate?: number | null;
  weights?: number[];
  heal: boolean;
  gpu?: GpuSetting;
}

const integer = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
  return n;
};

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description("measure accuracy on a task: the ensemble and, with --members-too, each member alone on the same items")
    .requiredOption("-c, --config <file>", "ensemble config file (YAML or JSON)")
    .requiredOption("--task <task>", `task: ${TASK_NAMES.join(", ")}`)
    .requiredOption("--data <path>", "data file (mmlu: a *_test.csv file or the mmlu folder)")
    .option("--limit <n>", "evaluate the first n items only", integer("--limit", 1))
    .option("--shots <k>", "few-shot examples before each question (gsm8k, arc, mmlu, nq-open)", integer("--shots", 0))
    .option("--seed <s>", "seed for sampling items (next-word); decoding is always greedy", integer("--seed", 0))
    .option("--out <dir>", "folder for results.jsonl, summary.json, summary.md, chart.svg (default: eval-results/<task>)")
    .option("--resume", "continue the results in --out, skipping finished items")
    .option("--members-too", "also run every member alone on the same items")
    .option("--max-tokens <n>", "steps to generate per item (default: the task's)", integer("--max-tokens", 1))
    .option("--method <m>", `combination method (${IMPLEMENTED_METHODS.join(" | ")}), overriding the config`)
    .option("--gate <threshold|off>", "gating threshold for the primary member, or off, overriding the config", (value: string) => {
      if (value === "off") return null;
      const n = Number(value);
      if (value.trim() === "" || !(n > 0 && n <= 1)) throw new InvalidArgumentError(`--gate must be a threshold in (0, 1] or "off", got '${value}'`);
      return n;
    })
    .option("--weights <list>", "member weights in config order, e.g. 1,0.5", (value: string) =>
      value.split(",").map((v) => {
        const n = Number(v);
        if (v.trim() === "" || !(n >= 0)) throw new InvalidArgumentError(`--weights must be a comma-separated list of numbers ≥ 0, got '${value}'`);
        return n;
      }),
    )
    .option("--no-heal", "turn token healing off (overriding the config)")
    .option("--gpu <where>", GPU_OPTION_HELP, parseGpu)
    .action(async (flags: EvalFlags) => {
      await runEvalCommand(flags);
    });
}

async function runEvalCommand(flags: EvalFlags): Promise<void> {
  const task = findTask(flags.task);
  if (flags.method !== undefined && !(IMPLEMENTED_METHODS as readonly string[]).includes(flags.method)) {
    throw new Error(`--method: ${methodProblem(flags.method)}`);
  }
  const config = withGpu(await loadEnsembleConfig(flags.config), flags.gpu);
  if (flags.weights && flags.weights.length !== config.members.length) {
    throw new Error(`--weights: expected ${config.members.length} numbers (one per member: ${config.members.map((m) => m.name).join(", ")}), got ${flags.weights.length}`);
  }
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
    maxTokens: flags.maxTokens,
    method: flags.method as MethodName | undefined,
    gate: flags.gate,
    weights: flags.weights,
    heal: flags.heal === false ? false : undefined,
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
