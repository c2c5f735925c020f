import { readJsonLines, stringField } from "./data-files.js";
import { choicePrompt, choiceShot, extractChoice, type Choice } from "./multiple-choice.js";
import type { EvalItem, TaskDefinition } from "./task.js";

const FORMAT =
  'JSON Lines, one {"id", "question", "choices": {"text": [...], "label": [...]}, "answerKey"} per line (ARC-Easy/Challenge *.jsonl)';

interface Question {
  id: string;
  question: string;
  choices: Choice[];
  answer: string;
}

export const arc: TaskDefinition = {
  name: "arc",
  format: FORMAT,
  defaultShots: 3,
  takesShots: true,
  maxSteps: 4,
  stop: ["\n"],
  async load(file, { shots }) {
    const questions = await readJsonLines<Question>(file, FORMAT, (r) => {
      const id = stringField(r, "id");
      const question = stringField(r, "question");
      const answer = stringField(r, "answerKey");
      const choices = r.choices as { text?: unknown; label?: unknown } | undefined;
      if (id === undefined) return 'no string field "id"';
      if (question === undefined) return 'no string field "question"';
      if (answer === undefined) return 'no string field "answerKey"';
      const texts = choices?.text;
      const labels = choices?.label;
      if (!Array.isArray(texts) || !Array.isArray(labels) || texts.length !== labels.length || texts.length < 2) {
        return '"choices" is not {"text": [...], "label": [...]} with two or more entries of equal length';
      }
      if (!labels.includes(answer)) return `"answerKey" ${JSON.stringify(answer)} is not one of the labels ${labels.join(", ")}`;
      return { id, question, answer, choices: texts.map((t, i) => ({ label: String(labels[i]), text: String(t) })) };
    });
    const prefix = questions.slice(0, shots).map((q) => choiceShot(q.question, q.choices, q.answer)).join("");
    return questions.slice(shots).map((q): EvalItem => ({ id: q.id, prompt: prefix + choicePrompt(q.question, q.choices), expected: q.answer }));
  },
  extract: extractChoice,
  isCorrect: (extracted, item) => extracted === item.expected,
};
