import { arc } from "./arc.js";
import { gsm8k } from "./gsm8k.js";
import { lambada } from "./lambada.js";
import { mmlu } from "./mmlu.js";
import { nextWord } from "./next-word.js";
import { nqOpen } from "./nq-open.js";
import type { TaskDefinition } from "./task.js";

export const TASKS: readonly TaskDefinition[] = [gsm8k, arc, mmlu, nqOpen, lambada, nextWord];
export const TASK_NAMES = TASKS.map((t) => t.name);

export function findTask(name: string): TaskDefinition {
  const task = TASKS.find((t) => t.name === name);
  if (!task) throw new Error(`unknown task "${name}": choose one of ${TASK_NAMES.join(", ")}`);
  return task;
}

export { DataFormatError, type EvalItem, type TaskDefinition } from "./task.js";
