/**
 * Where a command's ensemble comes from: a config file (`-c`), or models on the command line
 * (`-m A -m B`) with every config field reachable by a flag. With a config file the same flags
 * override its values. Shared by generate, serve, eval, bench and align.
 */
import path from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { ConfigError, loadEnsembleConfig, resolveEnsembleConfig } from "../config/load.js";
import { crossFieldIssues, IMPLEMENTED_METHODS, MEMBER_NAME_PATTERN, methodProblem, type EnsembleConfig, type EnsembleMethod } from "../config/schema.js";
import { uniqueMemberNames } from "../members/model-reference.js";
import type { GpuSetting } from "../members/runtime.js";
import { GPU_OPTION_HELP, parseGpu } from "./backend.js";

/** A mistake in the command line found after parsing; printed without a stack trace. */
export class UsageError extends Error {}

interface EnsembleFlags {
  config?: string;
  model?: string[];
  method?: string;
  uniteK?: number;
  weights?: number[];
  primary?: string;
  main?: string;
  gate?: number | null;
  heal?: boolean;
  speculate?: number;
  draft?: string;
  exactReads?: boolean;
  contextSize?: number;
  threads?: number;
  gpu?: GpuSetting;
  cacheDir?: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
}

export interface EnsembleOptionSet {
  /** `--gate`: the config's gating (bench has its own `--gate`, the gated rows' threshold). */
  readonly gate?: boolean;
  /** Decoding defaults (`--max-tokens`, sampling, `--stop`): generate and serve. */
  readonly generation?: boolean;
  /** `--gpu`: commands that load models (align reads files only). */
  readonly gpu?: boolean;
}

export const parseNumber = (name: string, check: (n: number) => boolean, expected: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${name} must be ${expected}, got '${value}'`);
  return n;
};
const integer = (name: string, min: number) => parseNumber(name, (n) => Number.isInteger(n) && n >= min, `an integer ≥ ${min}`);
const collect = (value: string, previous: string[] = []) => [...previous, value];
const collectStop = (value: string, previous: string[] = []) => {
  if (value === "") throw new InvalidArgumentError("a stop string must not be empty (it would stop before the first character); give the text to stop at, e.g. --stop '\\n\\n'");
  return [...previous, value];
};

/** Registers `-c`, `-m` and the flags for the config's fields on a command. */
export function addEnsembleOptions(command: Command, set: EnsembleOptionSet = {}): Command {
  command
    .option("-c, --config <file>", "ensemble config file (YAML or JSON); or give the models with -m")
    .option("-m, --model <model>", "a member's model, repeatable: a .gguf path, an Ollama name (llama3.2:1b), hf:user/repo[:quant] or a URL already downloaded; NAME=MODEL names it", collect)
    .option("--method <m>", `combination method (${IMPLEMENTED_METHODS.join(" | ")}; default gac)`)
    .option("--unite-k <k>", "UniTE's k: each member's top-k texts form the union (default 10)", integer("--unite-k", 1))
    .option("--weights <list>", "member weights in member order, e.g. 1,0.5", (value: string) =>
      value.split(",").map(parseNumber("--weights", (n) => n >= 0, "a comma-separated list of numbers ≥ 0")),
    )
    .option("--primary <name>", "the primary member: gating's decider, whose tokens max_tokens counts (default with -m: the first)")
    .option("--main <name>", "EVA/DeePEn: the member whose vocabulary the others are mapped into");
  if (set.gate) {
    command.option("--gate <threshold|off>", "key-token gating: the primary member decides alone above this probability; off turns it off", (value: string) => {
      if (value === "off") return null;
      return parseNumber("--gate", (n) => n > 0 && n <= 1, 'a threshold in (0, 1] or "off"')(value);
    });
  }
  command
    .option("--no-heal", "turn token healing off (the papers' behaviour)")
    .option("--speculate <k>", "speculative ensembling: the drafter proposes k pieces (1–32), the others evaluate them in one batch; 0 turns it off", integer("--speculate", 0))
    .option("--draft <name>", "the drafting member for --speculate (default: the primary)")
    .option("--exact-reads", "decode one token per llama.cpp call, so reads never depend on batch sizes (slower)")
    .option("--context-size <n>", "context size per member (default: the model's training context, at most 4096)", integer("--context-size", 16))
    .option("--threads <n>", "threads per member (default: the cores less one, shared by the members' sizes)", integer("--threads", 1))
    .option("--cache-dir <dir>", "where EVA/DeePEn alignments are cached (default $CHORUS_CACHE or ~/.cache/chorus/align)");
  if (set.gpu) command.option("--gpu <where>", GPU_OPTION_HELP, parseGpu);
  if (set.generation) {
    command
      .option("--max-tokens <n>", "length limit in tokens of the primary member (default 128)", integer("--max-tokens", 1))
      .option("--temperature <t>", "0 = greedy (default)", parseNumber("--temperature", (n) => n >= 0, "≥ 0"))
      .option("--top-p <p>", "nucleus sampling mass (default 1 = off)", parseNumber("--top-p", (n) => n > 0 && n <= 1, "in (0, 1]"))
      .option("--top-k <k>", "sample among the k most likely texts (default 0 = all)", integer("--top-k", 0))
      .option("--seed <s>", "sampling seed: the same seed gives the same text", parseNumber("--seed", Number.isInteger, "an integer"))
      .option("--stop <text>", "stop string (repeatable)", collectStop);
  }
  return command;
}

export interface CommandEnsemble {
  readonly config: EnsembleConfig;
  /** The config file's name without extension, or the members' names joined by `+`. */
  readonly label: string;
}

/** The ensemble a command's flags describe, validated like a config file. */
export async function ensembleFromOptions(command: Command): Promise<CommandEnsemble> {
  const flags = command.opts<EnsembleFlags>();
  const models = flags.model ?? [];
  if (flags.config !== undefined && models.length > 0) {
    throw new UsageError("give either a config file (-c) or models (-m), not both; with -c, name the members in the file");
  }
  if (flags.method !== undefined && !(IMPLEMENTED_METHODS as readonly string[]).includes(flags.method)) {
    throw new UsageError(`--method: ${methodProblem(flags.method)}`);
  }
  let config: EnsembleConfig;
  let label: string;
  if (flags.config !== undefined) {
    config = await loadEnsembleConfig(flags.config);
    label = path.basename(flags.config).replace(/\.(ya?ml|json)$/i, "");
  } else if (models.length > 0) {
    config = await fromModels(models);
    label = config.members.map((m) => m.name).join("+");
  } else {
    throw new UsageError(
      "no models: give them with -m (e.g. -m a.gguf -m b.gguf; twice or more for an ensemble), or a config file with -c (`chorus init` writes one)",
    );
  }
  return { config: overlay(config, flags, command, models.length > 0), label };
}

/** Members for `-m` values: `NAME=MODEL` named, the others after their files, uniquely; the first is the primary. */
export function membersFromModelFlags(models: readonly string[]): { name: string; model: string; primary?: true }[] {
  const named = models.map((text) => {
    const equals = text.indexOf("=");
    const name = equals > 0 ? text.slice(0, equals) : "";
    return MEMBER_NAME_PATTERN.test(name) ? { name, model: text.slice(equals + 1) } : { name: undefined, model: text };
  });
  const unnamed = named.filter((m) => m.name === undefined);
  const derived = uniqueMemberNames(unnamed.map((m) => m.model), named.flatMap((m) => (m.name === undefined ? [] : [m.name])));
  return named.map((m, i) => ({
    name: m.name ?? derived[unnamed.indexOf(m)]!,
    model: m.model,
    // The first member is the primary: gating's decider, and whose tokens max_tokens and usage count.
    ...(i === 0 ? { primary: true as const } : {}),
  }));
}

async function fromModels(models: readonly string[]): Promise<EnsembleConfig> {
  const members = membersFromModelFlags(models);
  try {
    return await resolveEnsembleConfig({ members }, { baseDir: process.cwd(), source: "-m" });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // `members[1].model: …` means the second -m.
    const lines = error.issues.map((issue) => {
      const match = /^members\[(\d+)\]/.exec(issue.path);
      return match ? `-m ${models[Number(match[1])]}: ${issue.message}` : `${issue.path || "-m"}: ${issue.message}`;
    });
    throw new UsageError(lines.join("\n"));
  }
}

/** The flags given on the command line, applied over the config; cross-field rules checked again. */
function overlay(base: EnsembleConfig, flags: EnsembleFlags, command: Command, fromModels: boolean): EnsembleConfig {
  const given = (name: keyof EnsembleFlags) => flags[name] !== undefined && command.getOptionValueSource(name) === "cli";
  const names = base.members.map((m) => m.name);
  const memberNamed = (flag: string, name: string) => {
    if (!names.includes(name)) throw new UsageError(`${flag} ${name}: no member has that name; members are ${names.join(", ")}`);
    return name;
  };
  if (flags.weights !== undefined && flags.weights.length !== names.length) {
    throw new UsageError(`--weights: expected ${names.length} numbers (one per member: ${names.join(", ")}), got ${flags.weights.length}`);
  }
  const primary = flags.primary !== undefined ? memberNamed("--primary", flags.primary) : undefined;
  const members = base.members.map((m, i) => ({
    ...m,
    ...(flags.weights !== undefined ? { weight: flags.weights[i]! } : {}),
    ...(primary !== undefined ? { primary: m.name === primary } : {}),
  }));
  const sampling = {
    ...base.sampling,
    ...(flags.temperature !== undefined ? { temperature: flags.temperature } : {}),
    ...(flags.topP !== undefined ? { topP: flags.topP } : {}),
    ...(flags.topK !== undefined ? { topK: flags.topK } : {}),
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
  };
  const config: EnsembleConfig = {
    ...base,
    members,
    ...(flags.method !== undefined ? { method: flags.method as EnsembleMethod } : {}),
    ...(flags.uniteK !== undefined ? { unite: { k: flags.uniteK } } : {}),
    ...(given("heal") ? { heal: flags.heal! } : {}),
    ...speculation(base.speculate, flags, memberNamed),
    ...(flags.exactReads ? { exactReads: true } : {}),
    ...(flags.gate !== undefined ? { gate: flags.gate === null ? undefined : { threshold: flags.gate } } : {}),
    ...(flags.main !== undefined ? { main: memberNamed("--main", flags.main) } : {}),
    ...(flags.contextSize !== undefined ? { contextSize: flags.contextSize } : {}),
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    ...(flags.gpu !== undefined ? { gpu: flags.gpu } : {}),
    ...(flags.cacheDir !== undefined ? { cacheDir: path.resolve(flags.cacheDir) } : {}),
    ...(flags.maxTokens !== undefined ? { maxTokens: flags.maxTokens } : {}),
    ...(Object.keys(sampling).length > 0 ? { sampling: { temperature: 0, topP: 1, topK: 0, ...sampling } } : {}),
    ...(flags.stop !== undefined ? { stop: flags.stop } : {}),
  };
  const problems = crossFieldIssues(config).map((issue) => issue.message);
  if (problems.length > 0) throw new UsageError(problems.map((p) => `${fromModels ? "" : "with these flags: "}${p}`).join("\n"));
  return config;
}

/** `--speculate K` (0: off) and `--draft NAME` over the config's `speculate`. */
function speculation(base: EnsembleConfig["speculate"], flags: EnsembleFlags, memberNamed: (flag: string, name: string) => string): { speculate?: EnsembleConfig["speculate"] } {
  if (flags.speculate === 0) return { speculate: undefined };
  const k = flags.speculate ?? base?.k;
  const draft = flags.draft !== undefined ? memberNamed("--draft", flags.draft) : base?.draft;
  if (k === undefined) {
    if (flags.draft !== undefined) throw new UsageError("--draft names the drafting member of speculative ensembling: add --speculate K");
    return {};
  }
  if (k > 32) throw new UsageError(`--speculate ${k}: draft at most 32 pieces per round`);
  return { speculate: { k, ...(draft !== undefined ? { draft } : {}) } };
}
