import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { loadEnsembleConfig } from "../config/load.js";
import { Ensemble, type GenerateOptions, type MethodName, type Step } from "../engine/ensemble.js";
import type { Prompt } from "../members/member.js";
import { IMPLEMENTED_METHODS, methodProblem } from "../config/schema.js";
import { isIdSpaceMethod } from "../engine/id-space.js";
import type { AlignMethod } from "../align/alignment.js";
import { progressBar } from "./progress.js";
import { GPU_OPTION_HELP, parseGpu, prepareBackend, withGpu } from "./backend.js";
import type { GpuSetting } from "../members/runtime.js";

interface GenerateFlags {
  config: string;
  chat?: boolean;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  method?: string;
  weights?: number[];
  only?: string;
  heal: boolean;
  stop?: string[];
  trace?: boolean;
  json?: boolean;
  gpu?: GpuSetting;
}

const number = (name: string, check: (n: number) => boolean, expected: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${name} must be ${expected}, got '${value}'`);
  return n;
};

/** A mistake in the command line found after parsing; printed without a stack trace. */
class UsageError extends Error {}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerGenerate(program: Command): void {
  program
    .command("generate")
    .description("generate text with an ensemble; the output streams to stdout")
    .argument("[prompt]", "the prompt (read from stdin when left out)")
    .requiredOption("-c, --config <file>", "ensemble config file (YAML or JSON)")
    .option("--chat", "treat the prompt as a user message and use each member's chat template")
    .option("--max-tokens <n>", "steps to generate at most", number("--max-tokens", (n) => Number.isInteger(n) && n >= 1, "an integer ≥ 1"))
    .option("--temperature <t>", "0 = greedy", number("--temperature", (n) => n >= 0, "≥ 0"))
    .option("--top-p <p>", "nucleus sampling mass", number("--top-p", (n) => n > 0 && n <= 1, "in (0, 1]"))
    .option("--top-k <k>", "sample among the k best candidates (0 = all)", number("--top-k", (n) => Number.isInteger(n) && n >= 0, "an integer ≥ 0"))
    .option("--seed <s>", "sampling seed: the same seed gives the same text", number("--seed", Number.isInteger, "an integer"))
    .option("--method <m>", `combination method (${IMPLEMENTED_METHODS.join(" | ")})`)
    .option("--weights <list>", "member weights in config order, e.g. 1,0.5", (value: string) =>
      value.split(",").map(number("--weights", (n) => n >= 0, "a comma-separated list of numbers ≥ 0")),
    )
    .option("--only <name>", "run this one member alone through the same engine (the baseline)")
    .option("--no-heal", "turn token healing off (the papers' behaviour)")
    .option("--stop <text>", "stop string (repeatable)", collect)
    .option("--trace", "print each step's member candidates and the winner to stderr")
    .option("--json", "print one JSON object with the text, counts and timings instead of streaming")
    .option("--gpu <where>", GPU_OPTION_HELP, parseGpu)
    .action(async (promptArg: string | undefined, flags: GenerateFlags) => {
      await runGenerate(promptArg, flags);
    });
}

async function runGenerate(promptArg: string | undefined, flags: GenerateFlags): Promise<void> {
  const config = withGpu(await loadEnsembleConfig(flags.config), flags.gpu);
  if (flags.method !== undefined && !(IMPLEMENTED_METHODS as readonly string[]).includes(flags.method)) {
    throw new UsageError(`--method: ${methodProblem(flags.method)}`);
  }
  let members = config.members;
  if (flags.only !== undefined) {
    members = members.filter((m) => m.name === flags.only);
    if (members.length === 0) {
      throw new UsageError(`--only ${flags.only}: no member has that name; members are ${config.members.map((m) => m.name).join(", ")}`);
    }
    members = members.map((m) => ({ ...m, weight: 1 }));
  }
  if (flags.weights && flags.only === undefined && flags.weights.length !== members.length) {
    throw new UsageError(`--weights: expected ${members.length} numbers (one per member: ${members.map((m) => m.name).join(", ")}), got ${flags.weights.length}`);
  }
  const text = promptArg ?? (await readStdin());
  const prompt: Prompt = flags.chat ? { messages: [{ role: "user", content: text }] } : { text };
  const gate = flags.only !== undefined ? undefined : config.gate;
  await prepareBackend({ ...config, members });
  const bar = progressBar();
  const ensemble = await Ensemble.create({
    ...config,
    gate,
    members,
    main: flags.only === undefined ? config.main : undefined,
    alignCache: { onProgress: bar.update, onNote: (message) => process.stderr.write(`chorus: ${message}\n`) },
  });
  try {
    const options: GenerateOptions = {
      method: flags.method as MethodName | undefined,
      heal: flags.heal,
      maxTokens: flags.maxTokens,
      sampling: { temperature: flags.temperature, topP: flags.topP, topK: flags.topK, seed: flags.seed },
      stop: flags.stop,
      weights: flags.only === undefined ? flags.weights : undefined,
      trace: flags.trace,
    };
    if (isIdSpaceMethod(flags.method ?? config.method) && members.length > 1) {
      await ensemble.prepareAlignment((flags.method ?? config.method) as AlignMethod).finally(bar.end);
    }
    const stream = ensemble.stream(prompt, options);
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        if (flags.json) process.stdout.write(JSON.stringify({ ...next.value, backend: ensemble.backend }, null, 2) + "\n");
        else process.stdout.write("\n");
        break;
      }
      if (flags.trace) process.stderr.write(formatTrace(next.value) + "\n");
      if (!flags.json && next.value.text) process.stdout.write(next.value.text);
    }
  } finally {
    await ensemble.dispose();
  }
}

function formatTrace(step: Step): string {
  const t = step.trace;
  if (!t) return "";
  const show = (text: string) => JSON.stringify(text);
  const lines = [`step ${step.index}${step.ensembled ? "" : " (primary alone)"}${step.escalations ? ` (asked for more ×${step.escalations})` : ""}: ${show(t.winner.text)} ${t.winner.probability.toFixed(3)}`];
  for (const m of t.members) {
    lines.push(`  ${m.name}${m.healed ? " (healed)" : ""}: ${m.top.map((c) => `${show(c.text)} ${c.probability.toFixed(3)}`).join("  ")}`);
  }
  if (t.survivors) lines.push(`  EVA faithfulness filter: ${t.survivors.length > 0 ? `kept ${t.survivors.join(", ")}` : "no member passed; all averaged"}`);
  return lines.join("\n");
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError("no prompt: pass it as an argument or on stdin");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\n$/, "");
}
