import { readJsonLines, stringField } from "./data-files.js";
import type { EvalItem, TaskDefinition } from "./task.js";

const FORMAT = 'JSON Lines, one {"question": "...", "answer": ["...", ...]} per line (NQ-open.dev.jsonl)';

/** SQuAD-style normalization: lower case, no punctuation, no articles, single spaces. */
export function normalizeAnswer(text: string): string {
  return text
    .toLowerCase()
    .replace(/[\p{P}\p{S}]/gu, " ")
    .replace(/\b(a|an|the)\b/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

interface Question {
  question: string;
  answers: string[];
}

const questionPrompt = (q: string) => `Question: ${q.trim()}?\nAnswer:`;

export const nqOpen: TaskDefinition = {
  name: "nq-open",
  format: FORMAT,
  defaultShots: 3,
  takesShots: true,
  maxSteps: 24,
  stop: ["\n"],
  async load(file, { shots }) {
    const questions = await readJsonLines<Question>(file, FORMAT, (r) => {
      const question = stringField(r, "question");
      const answers = r.answer;
      if (question === undefined) return 'no string field "question"';
      if (!Array.isArray(answers) || answers.length === 0 || !answers.every((a) => typeof a === "string")) {
        return '"answer" is not a non-empty list of strings';
      }
      return { question, answers: answers as string[] };
    });
    const prefix = questions.slice(0, shots).map((q) => `${questionPrompt(q.question)} ${q.answers[0]}\n\n`).join("");
    return questions.slice(shots).map(
      (q, i): EvalItem => ({
        id: `nq-${i + shots}`,
        prompt: prefix + questionPrompt(q.question),
        expected: q.answers.join(" | "),
        answers: q.answers,
      }),
    );
  },
  extract: (output) => normalizeAnswer(output.split("\n")[0]!),
  isCorrect: (extracted, item) => extracted !== "" && (item.answers ?? [item.expected]).some((a) => normalizeAnswer(a) === extracted),
};
