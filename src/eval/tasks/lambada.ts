import { firstWord, readJsonLines, stringField } from "./data-files.js";
import type { EvalItem, TaskDefinition } from "./task.js";

const FORMAT = 'JSON Lines, one {"text": "… passage ending with the target word"} per line (lambada_test.jsonl)';

export const lambada: TaskDefinition = {
  name: "lambada",
  format: FORMAT,
  defaultShots: 0,
  takesShots: false,
  maxSteps: 6,
  stop: ["\n"],
  async load(file) {
    const passages = await readJsonLines<{ context: string; word: string }>(file, FORMAT, (r) => {
      const text = stringField(r, "text")?.trimEnd();
      if (text === undefined) return 'no string field "text"';
      const at = text.lastIndexOf(" ");
      if (at <= 0) return 'the "text" has no last word after a space';
      return { context: text.slice(0, at), word: text.slice(at + 1) };
    });
    return passages.map((p, i): EvalItem => ({ id: `lambada-${i}`, prompt: p.context, expected: firstWord(p.word) || p.word }));
  },
  extract: firstWord,
  isCorrect: (extracted, item) => extracted !== "" && extracted === item.expected,
};
