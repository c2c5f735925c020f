/** Shared prompt and scoring for lettered multiple-choice tasks (ARC, MMLU). */

export interface Choice {
  readonly label: string;
  readonly text: string;
}

export function choicePrompt(question: string, choices: readonly Choice[]): string {
  return `Question: ${question.trim()}\n${choices.map((c) => `${c.label}. ${c.text.trim()}`).join("\n")}\nAnswer:`;
}

export function choiceShot(question: string, choices: readonly Choice[], answer: string): string {
  return `${choicePrompt(question, choices)} ${answer}\n\n`;
}

/** The first standalone choice label in the output ("B", " (B)", "B. Paris" → "B"). */
export function extractChoice(output: string): string {
  return /^[\s(]*([A-Z]|[1-9])(?![A-Za-z0-9])/.exec(output)?.[1] ?? "";
}
