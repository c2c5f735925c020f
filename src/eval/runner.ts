/**
 * Runs an eval: every system × every item (the ensemble and, optionally, each member alone through
 * the same engine), appending each result as soon as it is known and skipping what a resumed run
 * already has. One Ensemble loads the models once for all systems.
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { EnsembleConfig } from "../config/schema.js";
import { Ensemble, type GenerateOptions, type MethodName } from "../engine/ensemble.js";
import { MemberError } from "../members/member.js";
import { summarize, writeReports, type Summary } from "./report.js";
import { ResultsStore, type RunIdentity } from "./results.js";
import type { EvalItem, TaskDefinition } from "./tasks/task.js";

export const ENSEMBLE_SYSTEM = "ensemble";

export interface EvalOptions {
  readonly task: TaskDefinition;
  readonly dataPath: string;
  readonly out: string;
  readonly limit?: number;
  readonly shots?: number;
  readonly seed?: number;
  readonly resume?: boolean;
  readonly membersToo?: boolean;
  /** Steps per item (default: the task's). */
  readonly maxSteps?: number;
  readonly method?: MethodName;
  /** A threshold, `null` for no gating, or undefined for the config's. */
  readonly gate?: number | null;
  readonly weights?: readonly number[];
  /** Token healing on or off, overriding the config. */
  readonly heal?: boolean;
  readonly progress?: EvalProgress;
}

/** Told about progress in units of (item, system) pairs. */
export interface EvalProgress {
  start(total: number, alreadyDone: number): void;
  /** `correct` of `ran`: this system's results in this run so far. */
  advance(done: number, system: string, correct: number, ran: number): void;
  stop(): void;
}

export class EmptyDataError extends Error {}

interface System {
  readonly name: string;
  readonly isEnsemble: boolean;
  readonly options: GenerateOptions;
}

export async function loadItems(task: TaskDefinition, dataPath: string, shots: number, seed: number, limit?: number): Promise<EvalItem[]> {
  const items = await task.load(dataPath, { shots, seed });
  if (items.length === 0) {
    throw new EmptyDataError(`${dataPath} holds no ${task.name} items${shots > 0 ? ` after the ${shots} few-shot examples` : ""}; expected ${task.format}`);
  }
  return limit === undefined ? items : items.slice(0, limit);
}

function dataFingerprint(dataPath: string): string {
  const info = statSync(dataPath);
  if (!info.isFile()) return `folder ${path.resolve(dataPath)}`;
  return "sha256:" + createHash("sha256").update(readFileSync(dataPath)).digest("hex");
}

export async function runEval(config: EnsembleConfig, options: EvalOptions): Promise<{ summary: Summary; files: ReturnType<typeof writeReports> }> {
  const { task } = options;
  const shots = options.shots ?? task.defaultShots;
  if (!task.takesShots && shots > 0) throw new Error(`--shots: the ${task.name} task takes no few-shot examples; leave --shots out`);
  const seed = options.seed ?? 0;
  const items = await loadItems(task, options.dataPath, shots, seed, options.limit);
  const names = config.members.map((m) => m.name);
  if (names.includes(ENSEMBLE_SYSTEM)) throw new Error(`a member is named "${ENSEMBLE_SYSTEM}", which is the ensemble's name in results; rename that member`);

  const gate = options.gate === undefined ? config.gate : options.gate === null ? undefined : { threshold: options.gate };
  const method = options.method ?? config.method;
  const weights = options.weights ?? config.members.map((m) => m.weight);
  const maxSteps = options.maxSteps ?? task.maxSteps;
  const heal = options.heal ?? config.heal;
  // Greedy decoding whatever the config says: results must be reproducible for --resume and comparisons.
  const common: GenerateOptions = { maxSteps, maxTokens: Infinity, heal, stop: task.stop, sampling: { temperature: 0 } };
  const systems: System[] = [
    { name: ENSEMBLE_SYSTEM, isEnsemble: true, options: { ...common, method, weights, gate: gate ?? null } },
    ...(options.membersToo ? names.map((name) => ({ name, isEnsemble: false, options: { ...common, only: name, gate: null } })) : []),
  ];

  const identity: RunIdentity = {
    task: task.name,
    data: path.resolve(options.dataPath),
    dataFingerprint: dataFingerprint(options.dataPath),
    shots,
    seed,
    maxSteps,
    method,
    heal,
    gate: gate ?? null,
    weights,
    systems: systems.map((s) => s.name),
    // Everything else in the config that shapes the output (members, topK, method parameters…);
    // threads and gpu change speed (gpu: auto differs per machine anyway), and the eval sets
    // decoding, length and stop strings itself. Weights are recorded above (a -m ensemble's or
    // --weights' are in the members too).
    config: { ...withoutKeys(config, ["threads", "gpu", "maxTokens", "stop", "sampling", "method", "heal", "gate"]), members: config.members.map(({ weight: _weight, ...member }) => member) },
  };
  const store = ResultsStore.open(options.out, identity, options.resume ?? false);

  // System by system, not item by item: a system run right after another on the same prompt would
  // find the prompt already in the members' KV caches and look faster than it is.
  const pending = systems.flatMap((system) => items.filter((item) => !store.has(item.id, system.name)).map((item) => ({ item, system })));
  const total = items.length * systems.length;
  if (pending.length > 0) {
    const ensemble = await Ensemble.create({ ...config, gate });
    const progress = options.progress;
    progress?.start(total, total - pending.length);
    let done = total - pending.length;
    const tally = new Map<string, { correct: number; ran: number }>();
    try {
      for (const { item, system } of pending) {
        const record = await runOne(ensemble, task, item, system);
        store.append(record);
        done++;
        const t = tally.get(system.name) ?? { correct: 0, ran: 0 };
        t.ran++;
        if (record.correct) t.correct++;
        tally.set(system.name, t);
        progress?.advance(done, system.name, t.correct, t.ran);
      }
    } finally {
      progress?.stop();
      await ensemble.dispose();
    }
  }
  const settings = { method, weights: Object.fromEntries(names.map((name, i) => [name, weights[i]!])), gate: gate?.threshold ?? null, heal };
  const summary = summarize(task.name, items.map((i) => i.id), systems, (id, system) => store.get(id, system), settings);
  return { summary, files: writeReports(options.out, summary) };
}

async function runOne(ensemble: Ensemble, task: TaskDefinition, item: EvalItem, system: System) {
  const base = { id: item.id, system: system.name, expected: item.expected };
  try {
    const result = await ensemble.generate({ text: item.prompt }, system.options);
    const extracted = task.extract(result.text);
    return {
      ...base,
      output: result.text,
      correct: task.isCorrect(extracted, item),
      tokens: result.steps,
      ms: Math.round(result.timings.totalMs * 1000) / 1000,
      ensembledSteps: system.isEnsemble ? result.ensembledSteps : 0,
    };
  } catch (error) {
    // A member-specific problem with this item (e.g. a prompt longer than its context) fails the item, not the run.
    if (!(error instanceof MemberError)) throw error;
    return { ...base, output: "", correct: false, tokens: 0, ms: 0, ensembledSteps: 0, error: error.message };
  }
}

function withoutKeys(object: object, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).filter(([k, v]) => !keys.includes(k) && v !== undefined));
}
