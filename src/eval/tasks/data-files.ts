import { readFile, stat } from "node:fs/promises";
import { DataFormatError } from "./task.js";

/** Reads a data file as UTF-8 text, with messages that say what is wrong with the path. */
export async function readDataFile(file: string, expected: string): Promise<string> {
  let info;
  try {
    info = await stat(file);
  } catch {
    throw new DataFormatError(file, undefined, "no such file", expected);
  }
  if (info.isDirectory()) throw new DataFormatError(file, undefined, "is a folder, not a file", expected);
  const bytes = await readFile(file);
  const text = bytes.toString("utf8");
  const bad = text.search(/[\uFFFD\u0000]/);
  if (bad >= 0) {
    const line = text.slice(0, bad).split("\n").length;
    throw new DataFormatError(file, line, "not UTF-8 text (binary data or another encoding)", expected);
  }
  return text;
}

/**
 * Parses a JSON Lines file: one object per non-empty line, checked by `read`, which returns the
 * item or a description of what is missing. Errors name the line.
 */
export async function readJsonLines<T>(
  file: string,
  expected: string,
  read: (record: Record<string, unknown>) => T | string,
): Promise<T[]> {
  const text = await readDataFile(file, expected);
  const out: T[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      throw new DataFormatError(file, i + 1, `not a JSON object (${JSON.stringify(line.slice(0, 40))}${line.length > 40 ? "…" : ""})`, expected);
    }
    if (typeof record !== "object" || record === null || Array.isArray(record)) {
      throw new DataFormatError(file, i + 1, "not a JSON object", expected);
    }
    const item = read(record as Record<string, unknown>);
    if (typeof item === "string") throw new DataFormatError(file, i + 1, item, expected);
    out.push(item);
  }
  return out;
}

export function stringField(record: Record<string, unknown>, key: string): string | undefined {
  const value = record[key];
  return typeof value === "string" ? value : undefined;
}

/** The leading word of a generated text (letters, digits, apostrophes, inner hyphens), or "". */
export function firstWord(text: string): string {
  return /^\s*([\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*)/u.exec(text)?.[1] ?? "";
}
