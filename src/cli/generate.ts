import type { Command } from "commander";
import { Ensemble, type GenerateOptions, type GenerationResult, type MemberDrop, type Step } from "../engine/ensemble.js";
import type { Prompt } from "../members/member.js";
import { addEnsembleOptions, ensembleFromOptions, UsageError, type CommandEnsemble } from "./ensemble-options.js";
import { isIdSpaceMethod } from "../engine/id-space.js";
import type { AlignMethod } from "../align/alignment.js";
import { progressBar } from "./progress.js";
import { prepareBackend } from "./backend.js";
import { constraintFromFiles } from "./constraint-file.js";

interface GenerateFlags {
  chat?: boolean;
  only?: string;
  trace?: boolean;
  json?: boolean;
  jsonSchema?: string;
  grammar?: string;
}

export function registerGenerate(program: Command): void {
  const command = program
    .command("generate")
    .description("generate text with an ensemble; the output streams to stdout")
    .argument("[prompt]", "the prompt (read from stdin when left out)");
  addEnsembleOptions(command, { gate: true, generation: true, gpu: true })
    .option("--chat", "treat the prompt as a user message and use each member's chat template")
    .option("--only <name>", "run this one member alone through the same engine (the baseline)")
    .option("--json-schema <file>", "generate only JSON that validates against this JSON schema")
    .option("--grammar <file>", "generate only text in this GBNF grammar (llama.cpp's notation, starting at root)")
    .option("--trace", "print each step's member candidates and the winner to stderr")
    .option("--json", "print one JSON object with the text, counts and timings instead of streaming")
    .action(async (promptArg: string | undefined, flags: GenerateFlags, self: Command) => {
      await runGenerate(promptArg, flags, await ensembleFromOptions(self));
    });
}

async function runGenerate(promptArg: string | undefined, flags: GenerateFlags, { config }: CommandEnsemble): Promise<void> {
  let members = config.members;
  if (flags.only !== undefined) {
    members = members.filter((m) => m.name === flags.only);
    if (members.length === 0) {
      throw new UsageError(`--only ${flags.only}: no member has that name; members are ${config.members.map((m) => m.name).join(", ")}`);
    }
    members = members.map((m) => ({ ...m, weight: 1 }));
  }
  const constraint = await constraintFromFiles(flags);
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
    const options: GenerateOptions = { trace: flags.trace, constraint };
    if (isIdSpaceMethod(config.method) && members.length > 1) {
      await ensemble.prepareAlignment(config.method as AlignMethod).finally(bar.end);
    }
    const stream = ensemble.stream(prompt, options);
    let generated = "";
    let steps = 0;
    const dropped: MemberDrop[] = [];
    for (;;) {
      let next: IteratorResult<Step, GenerationResult>;
      try {
        next = await stream.next();
      } catch (error) {
        // The text generated before the failure is not lost: --json prints it with the error.
        if (flags.json) {
          process.stdout.write(JSON.stringify({ text: generated, finishReason: "error", error: (error as Error).message, steps, dropped }, null, 2) + "\n");
        } else if (generated) {
          process.stdout.write("\n");
        }
        throw error;
      }
      if (next.done) {
        if (flags.json) process.stdout.write(JSON.stringify({ ...next.value, backend: ensemble.backend }, null, 2) + "\n");
        else process.stdout.write("\n");
        break;
      }
      const step = next.value;
      for (const drop of step.dropped ?? []) {
        dropped.push(drop);
        process.stderr.write(`chorus: member '${drop.member}' dropped after ${drop.step} steps (onFailure: drop), going on without it: ${drop.reason}\n`);
      }
      steps++;
      generated += step.text;
      if (flags.trace) process.stderr.write(formatTrace(step) + "\n");
      if (!flags.json && step.text) process.stdout.write(step.text);
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
    const how = m.healed ? " (healed)" : m.fallback ? ` (${m.fallback})` : "";
    lines.push(`  ${m.name}${how}: ${m.top.map((c) => `${show(c.text)} ${c.probability.toFixed(3)}`).join("  ")}`);
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
