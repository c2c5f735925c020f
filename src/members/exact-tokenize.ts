import { surfaceToText, utf8SequenceLength, type Vocabulary } from "../tokens/vocabulary.js";
import type { TokenRun } from "./member.js";

/** llama.cpp's own tokenizer for plain text (no special tokens, no BOS; SPM vocabularies add their dummy space). */
export type RawTokenizer = (text: string) => readonly number[];

export class EncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EncodeError";
  }
}

type Segment = { readonly kind: "text" | "stray" | "unencodable"; readonly bytes: string };

/**
 * Tokenizes text bytes (a latin1 string, one char per byte) so that the tokens' surfaces are
 * exactly those bytes. `start` allows an SPM vocabulary's dummy leading space (the start of a raw
 * prompt, as the model saw text in training); `continuation` tokenizes bytes that follow earlier
 * text directly. Characters the vocabulary cannot encode become its unknown token: llama.cpp would
 * abort the process on them.
 */
export function tokenizeExact(
  vocab: Vocabulary,
  raw: RawTokenizer,
  bytes: string,
  mode: "start" | "continuation",
): TokenRun {
  const run: TokenRun = { ids: [], byteLengths: [] };
  let first = true;
  for (const segment of segmentEncodable(vocab, bytes)) {
    if (segment.kind === "text") {
      appendRun(run, encodeText(vocab, raw, segment.bytes, first ? mode : "continuation"));
    } else {
      const id = segment.kind === "stray" ? vocab.bySurface.get(segment.bytes) : undefined;
      run.ids.push(id ?? unknownId(vocab, segment.bytes));
      run.byteLengths.push(segment.bytes.length);
    }
    first = false;
  }
  return run;
}

function appendRun(into: TokenRun, run: TokenRun): void {
  for (let i = 0; i < run.ids.length; i++) {
    into.ids.push(run.ids[i]!);
    into.byteLengths.push(run.byteLengths[i]!);
  }
}

function unknownId(vocab: Vocabulary, bytes: string): number {
  if (vocab.unk !== undefined) return vocab.unk;
  const text = surfaceToText(bytes);
  const cp = text.codePointAt(0) ?? 0;
  throw new EncodeError(
    `cannot encode ${JSON.stringify(text)} (U+${cp.toString(16).toUpperCase().padStart(4, "0")}): ` +
      `the vocabulary has neither a token for it nor an unknown token; remove the character from the input`,
  );
}

const byteFallbackCache = new WeakMap<Vocabulary, boolean>();

/** Bytes that never occur in UTF-8 text (overlong lead bytes, leads above U+10FFFF): vocabularies may leave them out. */
const neverInUtf8 = (b: number): boolean => b === 0xc0 || b === 0xc1 || b >= 0xf5;

/**
 * True when every byte that can occur in UTF-8 text is a token (SPM `<0xNN>` or GPT-2 byte-level;
 * GPT-NeoX's byte-level vocabulary has no C0, C1, F5–FF): any text can be encoded.
 */
export function hasByteFallback(vocab: Vocabulary): boolean {
  let known = byteFallbackCache.get(vocab);
  if (known === undefined) {
    known = true;
    for (let b = 0; b < 256 && known; b++) if (!neverInUtf8(b) && !vocab.bySurface.has(String.fromCharCode(b))) known = false;
    byteFallbackCache.set(vocab, known);
  }
  return known;
}


/** The first character of `bytes` (a stray byte counts as one) the vocabulary cannot encode, if any. */
export function firstUnencodable(vocab: Vocabulary, bytes: string): string | undefined {
  if (hasByteFallback(vocab)) return undefined;
  for (let i = 0; i < bytes.length; ) {
    const n = Math.max(1, utf8SequenceLength(bytes, i));
    const char = bytes.slice(i, i + n);
    if (!vocab.bySurface.has(char)) return char;
    i += n;
  }
  return undefined;
}

/** Splits bytes into runs llama.cpp can tokenize, stray bytes that are not valid UTF-8, and characters the vocabulary cannot encode. */
function segmentEncodable(vocab: Vocabulary, bytes: string): Segment[] {
  const segments: Segment[] = [];
  const checkChars = !hasByteFallback(vocab);
  let runStart = 0;
  const flush = (end: number) => {
    if (end > runStart) segments.push({ kind: "text", bytes: bytes.slice(runStart, end) });
  };
  let i = 0;
  while (i < bytes.length) {
    const n = utf8SequenceLength(bytes, i);
    if (n === 0) {
      flush(i);
      segments.push({ kind: "stray", bytes: bytes[i]! });
      runStart = ++i;
      continue;
    }
    if (checkChars && !vocab.bySurface.has(bytes.slice(i, i + n))) {
      flush(i);
      segments.push({ kind: "unencodable", bytes: bytes.slice(i, i + n) });
      runStart = i += n;
      continue;
    }
    i += n;
  }
  flush(bytes.length);
  return segments;
}

const SENTINELS = ["\n", ".", ",", "!"];

function encodeText(vocab: Vocabulary, raw: RawTokenizer, bytes: string, mode: "start" | "continuation"): TokenRun {
  const text = surfaceToText(bytes);
  if (!vocab.addsLeadingSpace) return matchSurfaces(vocab, raw(text), "", bytes) ?? greedyLongestMatch(vocab, bytes);
  if (mode === "start") return matchSurfaces(vocab, raw(text), " ", bytes, true) ?? greedyLongestMatch(vocab, bytes);
  if (bytes.startsWith(" ")) {
    const run = matchSurfaces(vocab, raw(text.slice(1)), "", bytes);
    if (run) return run;
  }
  for (const sentinel of SENTINELS) {
    const run = matchSurfaces(vocab, raw(sentinel + text), " " + sentinel, bytes);
    if (run) return run;
  }
  return greedyLongestMatch(vocab, bytes);
}

/**
 * Checks that the tokens spell `lead + bytes` exactly; returns the tokens that spell `bytes`, or null.
 * A dummy space (`keepLead`) stays with the tokens, standing for no bytes; a sentinel lead must end
 * on a token boundary and its tokens are dropped.
 */
function matchSurfaces(
  vocab: Vocabulary,
  ids: readonly number[],
  lead: string,
  bytes: string,
  keepLead = false,
): TokenRun | null {
  const expected = lead + bytes;
  const run: TokenRun = { ids: [], byteLengths: [] };
  let offset = 0;
  for (const id of ids) {
    const surface = vocab.surfaces[id] ?? "";
    if (surface.length === 0 || !expected.startsWith(surface, offset)) return null;
    const end = offset + surface.length;
    if (end > lead.length || keepLead) {
      if (!keepLead && offset < lead.length) return null; // the sentinel merged into the text
      run.ids.push(id);
      run.byteLengths.push(Math.max(0, end - Math.max(offset, lead.length)));
    }
    offset = end;
  }
  return offset === expected.length ? run : null;
}

/** Fallback when llama.cpp's tokens do not spell the bytes: longest known surface first, unknown token otherwise. */
function greedyLongestMatch(vocab: Vocabulary, bytes: string): TokenRun {
  const run: TokenRun = { ids: [], byteLengths: [] };
  const maxLength = maxSurfaceLength(vocab);
  let i = 0;
  while (i < bytes.length) {
    let matched = 0;
    for (let len = Math.min(maxLength, bytes.length - i); len > 0; len--) {
      const id = vocab.bySurface.get(bytes.slice(i, i + len));
      if (id !== undefined) {
        run.ids.push(id);
        run.byteLengths.push(len);
        matched = len;
        break;
      }
    }
    if (matched === 0) {
      const n = Math.max(1, utf8SequenceLength(bytes, i));
      run.ids.push(unknownId(vocab, bytes.slice(i, i + n)));
      run.byteLengths.push(n);
      matched = n;
    }
    i += matched;
  }
  return run;
}

const maxLengthCache = new WeakMap<Vocabulary, number>();
function maxSurfaceLength(vocab: Vocabulary): number {
  let max = maxLengthCache.get(vocab);
  if (max === undefined) {
    max = 1;
    for (const surface of vocab.bySurface.keys()) if (surface.length > max) max = surface.length;
    maxLengthCache.set(vocab, max);
  }
  return max;
}
