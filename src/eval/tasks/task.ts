/** What every eval task provides: items read from a data file, and how an output is scored. */

export interface EvalItem {
  /** Stable within a data file, so a resumed run recognizes finished items. */
  readonly id: string;
  readonly prompt: string;
  /** The reference answer as shown in results (for nq-open: the answers joined with " | "). */
  readonly expected: string;
  /** Every accepted answer (nq-open has several); defaults to `[expected]`. */
  readonly answers?: readonly string[];
}

export interface LoadOptions {
  /** Few-shot examples to put before each question (taken from the data, never evaluated). */
  readonly shots: number;
  /** Seeds the sampling of positions (next-word). */
  readonly seed: number;
}

export interface TaskDefinition {
  readonly name: string;
  /** One line describing the data the task reads, used in error messages. */
  readonly format: string;
  readonly defaultShots: number;
  /** Whether --shots means anything for this task. */
  readonly takesShots: boolean;
  /** Steps (chosen pieces of text) to generate at most: enough for the answer. */
  readonly maxSteps: number;
  readonly stop: readonly string[];
  load(dataPath: string, options: LoadOptions): Promise<EvalItem[]>;
  /** The answer the output gives, normalized for comparison ("" when it gives none). */
  extract(output: string): string;
  /** Whether an extracted answer matches one of the item's answers. */
  isCorrect(extracted: string, item: EvalItem): boolean;
}

/** A problem with a data file, naming the file, the line and what was expected there. */
export class DataFormatError extends Error {
  constructor(file: string, line: number | undefined, problem: string, expected: string) {
    super(`${file}${line === undefined ? "" : `:${line}`}: ${problem}; expected ${expected}`);
    this.name = "DataFormatError";
  }
}
