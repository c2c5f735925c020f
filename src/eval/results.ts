/**
 * The results of an eval run on disk: `results.jsonl` gets one line per finished item and system,
 * appended as soon as it is known, so a killed run loses nothing; `run.json` records the settings
 * the results were made with, so `--resume` never mixes results from different settings.
 */
import { appendFileSync, existsSync, readFileSync, renameSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DirectoryError, ensureWritableDirectory } from "../files/writable-directory.js";

export interface ResultRecord {
  readonly id: string;
  readonly system: string;
  readonly output: string;
  readonly expected: string;
  readonly correct: boolean;
  /** Generation steps taken. */
  readonly tokens: number;
  readonly ms: number;
  /** Steps on which every member voted (the rest: the primary decided alone). */
  readonly ensembledSteps: number;
  /** Why the item could not be run (e.g. the prompt does not fit a member's context); scored as wrong. */
  readonly error?: string;
}

/** Everything that changes what a result means; a resumed run must match it exactly. */
export type RunIdentity = Record<string, unknown>;

export class OutputDirError extends Error {}
export class ResumeError extends Error {}

/** Writes a file completely or not at all: readers never see half of it. */
export function writeFileAtomic(file: string, content: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, content);
  renameSync(temporary, file);
}

/** Creates the folder if needed and proves it is writable by writing into it. */
export function ensureWritableDir(dir: string): void {
  try {
    ensureWritableDirectory(dir);
  } catch (error) {
    if (error instanceof DirectoryError) throw new OutputDirError(`the output folder cannot be used: ${error.message}; choose another --out`);
    throw error;
  }
}

/** Leaf values by path ("config.eva.minScore", "weights[1]"), so differences name the exact setting. */
function flatten(value: unknown, at: string, out: Map<string, string>): Map<string, string> {
  if (Array.isArray(value)) value.forEach((v, i) => flatten(v, `${at}[${i}]`, out));
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) flatten(v, at ? `${at}.${k}` : k, out);
  } else out.set(at, JSON.stringify(value));
  return out;
}

/** Lists the settings that differ between two identities, as "path: was → now". */
function differences(was: RunIdentity, now: RunIdentity): string[] {
  const before = flatten(was, "", new Map());
  const after = flatten(now, "", new Map());
  const paths = [...new Set([...before.keys(), ...after.keys()])];
  return paths
    .filter((p) => before.get(p) !== after.get(p))
    .map((p) => `${p}: ${before.get(p) ?? "(none)"} → ${after.get(p) ?? "(none)"}`);
}

export class ResultsStore {
  private readonly done = new Map<string, ResultRecord>();

  private constructor(readonly file: string) {}

  /**
   * Opens `dir/results.jsonl` for a run with the given settings. Existing results are continued
   * only with `resume` and only when they were made with the same settings.
   */
  static open(dir: string, identity: RunIdentity, resume: boolean): ResultsStore {
    ensureWritableDir(dir);
    const file = path.join(dir, "results.jsonl");
    const runFile = path.join(dir, "run.json");
    const store = new ResultsStore(file);
    const existing = existsSync(file) ? readFileSync(file, "utf8") : "";
    if (existing.trim() === "") {
      writeFileAtomic(runFile, JSON.stringify(identity, null, 2) + "\n");
      writeFileSync(file, "");
      return store;
    }
    if (!resume) {
      throw new ResumeError(`${dir} already holds results (${file}); pass --resume to continue that run, or choose another --out`);
    }
    if (!existsSync(runFile)) {
      throw new ResumeError(`cannot resume: ${runFile} is missing, so the settings those results were made with are unknown; start afresh with another --out`);
    }
    let recorded: RunIdentity;
    try {
      recorded = JSON.parse(readFileSync(runFile, "utf8")) as RunIdentity;
    } catch {
      throw new ResumeError(`cannot resume: ${runFile} is not valid JSON; start afresh with another --out`);
    }
    const changed = differences(recorded, identity);
    if (changed.length > 0) {
      throw new ResumeError(
        `cannot resume: the results in ${dir} were made with different settings (${changed.join("; ")}); ` +
          "mixing them would score items under different settings. Rerun with the same settings, or use another --out",
      );
    }
    store.load(existing);
    return store;
  }

  /** Reads finished results; a last line cut off by a kill is dropped (its item simply runs again). */
  private load(text: string): void {
    const lines = text.split("\n");
    let goodBytes = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const isLast = i === lines.length - 1 || (i === lines.length - 2 && lines[lines.length - 1] === "");
      if (line === "") {
        if (i < lines.length - 1) goodBytes += 1;
        continue;
      }
      let record: ResultRecord | undefined;
      try {
        record = JSON.parse(line) as ResultRecord;
      } catch {
        record = undefined;
      }
      const complete = record !== undefined && typeof record.id === "string" && typeof record.system === "string" && i < lines.length - 1;
      if (!complete) {
        if (isLast) break;
        throw new ResumeError(`cannot resume: ${this.file} line ${i + 1} is not a result record; remove that line or start afresh with another --out`);
      }
      this.done.set(key(record!.id, record!.system), record!);
      goodBytes += Buffer.byteLength(line) + 1;
    }
    if (goodBytes < Buffer.byteLength(text)) truncateSync(this.file, goodBytes);
  }

  has(id: string, system: string): boolean {
    return this.done.has(key(id, system));
  }

  get(id: string, system: string): ResultRecord | undefined {
    return this.done.get(key(id, system));
  }

  /** One `write` of one whole line: a kill leaves at most a partial last line, which `load` drops. */
  append(record: ResultRecord): void {
    appendFileSync(this.file, JSON.stringify(record) + "\n");
    this.done.set(key(record.id, record.system), record);
  }
}

const key = (id: string, system: string) => `${system}\u0000${id}`;
