import { seededRandom } from "../../engine/sampling.js";
import { firstWord, readDataFile } from "./data-files.js";
import { DataFormatError, type EvalItem, type TaskDefinition } from "./task.js";

const FORMAT = "plain text: documents separated by <|endoftext|> lines or blank lines";
/** A context shorter than this says too little to predict from. */
const MIN_CONTEXT_CHARS = 20;
/**
 * Positions lie within a document's first 800 characters (about 420 tokens for a 512-token
 * vocabulary), so every context fits small models' 512-token windows and all systems see every item.
 */
const MAX_CONTEXT_CHARS = 800;

/** Splits text into documents at lines that are `<|endoftext|>` or blank. */
export function splitDocuments(text: string): string[] {
  return text
    .replace(/\r\n?/g, "\n")
    .split(/\n[ \t]*(?:<\|endoftext\|>[ \t]*)?\n|^[ \t]*<\|endoftext\|>[ \t]*(?:\n|$)|\n[ \t]*<\|endoftext\|>[ \t]*$/m)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

/**
 * Every place in a document where a word ends and, after one space, another word starts: the
 * context is the text up to the end of the first word (no trailing space), the answer the second word.
 */
function positions(doc: string): { at: number; word: string }[] {
  const out: { at: number; word: string }[] = [];
  for (const m of doc.matchAll(/(?<=[\p{L}\p{N}]) (?=[\p{L}\p{N}])/gu)) {
    if (m.index < MIN_CONTEXT_CHARS) continue;
    if (m.index > MAX_CONTEXT_CHARS) break;
    out.push({ at: m.index, word: firstWord(doc.slice(m.index + 1)) });
  }
  return out;
}

/** The word a generated continuation starts with; it must begin with a space, or it continues the context's last word. */
export function extractNextWord(output: string): string {
  return output.startsWith(" ") && !output.startsWith("  ") ? firstWord(output) : "";
}

export const nextWord: TaskDefinition = {
  name: "next-word",
  format: FORMAT,
  defaultShots: 0,
  takesShots: false,
  maxSteps: 6,
  stop: ["\n"],
  async load(file, { seed }) {
    const text = await readDataFile(file, FORMAT);
    const firstLine = text.trimStart().split("\n", 1)[0]!;
    if (firstLine.startsWith("{")) {
      let json = false;
      try {
        json = typeof JSON.parse(firstLine) === "object";
      } catch {}
      if (json) {
        const line = text.slice(0, text.indexOf(firstLine)).split("\n").length;
        throw new DataFormatError(file, line, "this is JSON Lines (for --task lambada or another task)", FORMAT);
      }
    }
    const docs = splitDocuments(text);
    const all: EvalItem[] = [];
    docs.forEach((doc, d) => {
      for (const p of positions(doc)) all.push({ id: `doc${d}@${p.at}`, prompt: doc.slice(0, p.at), expected: p.word });
    });
    // A seeded shuffle: any --limit takes a uniform sample, and the same seed gives the same items.
    const random = seededRandom(seed);
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    return all;
  },
  extract: extractNextWord,
  isCorrect: (extracted, item) => extracted !== "" && extracted === item.expected,
};
