import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { parse } from "csv-parse/sync";
import { readDataFile } from "./data-files.js";
import { choicePrompt, choiceShot, extractChoice } from "./multiple-choice.js";
import { DataFormatError, type EvalItem, type TaskDefinition } from "./task.js";

const FORMAT =
  "MMLU CSV without a header, one question,A,B,C,D,answer-letter row per question (a *_test.csv file, or the mmlu folder with test/ and dev/)";
const LABELS = ["A", "B", "C", "D"];

interface Row {
  question: string;
  options: string[];
  answer: string;
}

async function readRows(file: string): Promise<Row[]> {
  const text = await readDataFile(file, FORMAT);
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { info: true, relax_column_count: true, skip_empty_lines: true }) as unknown as typeof records;
  } catch (error) {
    const line = (error as { lines?: number }).lines;
    throw new DataFormatError(file, line, `not valid CSV (${(error as Error).message})`, FORMAT);
  }
  return records.map(({ record, info }) => {
    if (record.length !== 6) throw new DataFormatError(file, info.lines, `${record.length} columns`, FORMAT);
    const answer = record[5]!.trim();
    if (!LABELS.includes(answer)) throw new DataFormatError(file, info.lines, `answer ${JSON.stringify(answer)} is not A, B, C or D`, FORMAT);
    return { question: record[0]!, options: record.slice(1, 5), answer };
  });
}

/** "high_school_biology_test.csv" → "high school biology". */
function subjectOf(file: string): string {
  return path.basename(file, ".csv").replace(/_(test|dev|val)$/, "").replace(/_/g, " ");
}

async function testFiles(dataPath: string): Promise<string[]> {
  const info = await stat(dataPath).catch(() => undefined);
  if (!info) throw new DataFormatError(dataPath, undefined, "no such file or folder", FORMAT);
  if (info.isFile()) return [dataPath];
  const folder = existsSync(path.join(dataPath, "test")) ? path.join(dataPath, "test") : dataPath;
  const files = (await readdir(folder)).filter((f) => f.endsWith(".csv")).sort();
  if (files.length === 0) throw new DataFormatError(folder, undefined, "holds no .csv files", FORMAT);
  return files.map((f) => path.join(folder, f));
}

function choices(row: Row) {
  return row.options.map((text, i) => ({ label: LABELS[i]!, text }));
}

export const mmlu: TaskDefinition = {
  name: "mmlu",
  format: FORMAT,
  defaultShots: 5,
  takesShots: true,
  maxSteps: 4,
  stop: ["\n"],
  async load(dataPath, { shots }) {
    const items: EvalItem[] = [];
    for (const file of await testFiles(dataPath)) {
      const subject = subjectOf(file);
      const rows = await readRows(file);
      // Few-shot examples come from the subject's dev file (as in the MMLU paper), else from this file's first rows.
      const devFile = path.join(path.dirname(file), "..", "dev", path.basename(file).replace(/_test\.csv$/, "_dev.csv"));
      const fromDev = shots > 0 && devFile !== file && existsSync(devFile);
      const shotRows = fromDev ? (await readRows(devFile)).slice(0, shots) : rows.slice(0, shots);
      const evaluated = fromDev ? rows : rows.slice(shots);
      const header = `The following are multiple choice questions (with answers) about ${subject}.\n\n`;
      const prefix = header + shotRows.map((r) => choiceShot(r.question, choices(r), r.answer)).join("");
      const offset = rows.length - evaluated.length;
      evaluated.forEach((r, i) =>
        items.push({ id: `${path.basename(file, ".csv")}-${i + offset}`, prompt: prefix + choicePrompt(r.question, choices(r)), expected: r.answer }),
      );
    }
    return items;
  },
  extract: extractChoice,
  isCorrect: (extracted, item) => extracted === item.expected,
};
