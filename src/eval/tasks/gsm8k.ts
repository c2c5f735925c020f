import { readJsonLines, stringField } from "./data-files.js";
import type { EvalItem, TaskDefinition } from "./task.js";

const FORMAT = 'JSON Lines, one {"question": "...", "answer": "reasoning … #### 42"} per line (GSM8K test.jsonl)';

interface Problem {
  question: string;
  reasoning: string;
  answer: string;
}

/** "1,234.50" → "1234.5": numbers compare by value, not spelling. */
export function normalizeNumber(text: string): string {
  const cleaned = text.replace(/[,$\s]/g, "").replace(/\.$/, "");
  const n = Number(cleaned);
  return cleaned !== "" && Number.isFinite(n) ? String(n) : cleaned;
}

/** The number after "####" if the output gives one, otherwise the last number in it. */
export function extractGsm8kAnswer(output: string): string {
  const marked = /####\s*(-?[$\d,]*\d(?:\.\d+)?)/.exec(output);
  if (marked) return normalizeNumber(marked[1]!);
  const numbers = output.match(/-?\d[\d,]*(?:\.\d+)?/g);
  return numbers ? normalizeNumber(numbers[numbers.length - 1]!) : "";
}

function problemPrompt(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

/** GSM8K's calculator annotations ("<<16-3-4=9>>") are not part of the reasoning a model should imitate. */
function shotText(p: Problem): string {
  return `${problemPrompt(p.question)} ${p.reasoning.replace(/<<[^>]*>>/g, "")}\n#### ${p.answer}\n\n`;
}

export const gsm8k: TaskDefinition = {
  name: "gsm8k",
  format: FORMAT,
  defaultShots: 4,
  takesShots: true,
  maxSteps: 256,
  stop: ["\n\n", "\nQuestion:"],
  async load(file, { shots }) {
    const problems = await readJsonLines<Problem>(file, FORMAT, (r) => {
      const question = stringField(r, "question");
      const answer = stringField(r, "answer");
      if (question === undefined) return 'no string field "question"';
      if (answer === undefined) return 'no string field "answer"';
      const at = answer.lastIndexOf("####");
      if (at < 0) return 'the "answer" has no final "#### <number>"';
      return { question, reasoning: answer.slice(0, at).trim(), answer: answer.slice(at + 4).trim() };
    });
    // The first `shots` problems are the worked examples; the rest are evaluated.
    const prefix = problems.slice(0, shots).map(shotText).join("");
    return problems.slice(shots).map(
      (p, i): EvalItem => ({ id: `gsm8k-${i + shots}`, prompt: prefix + problemPrompt(p.question), expected: normalizeNumber(p.answer) }),
    );
  },
  extract: extractGsm8kAnswer,
  isCorrect: (extracted, item) => extracted !== "" && extracted === item.expected,
};
