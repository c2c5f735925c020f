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

/** The text has more tokens than the limit it was tokenized with (tokenizing stopped before its end). */
export class TokenLimitError extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} tokens`);
    this.name = "TokenLimitError";
  }
}

export interface TokenizeOptions {
  /** Stop, with a TokenLimitError, as soon as the text is known to take more tokens than this (a text tokenized to its end is returned whole). */
  readonly maxTokens?: number;
  /** Runs of text longer than this are tokenized window by window (default WINDOW_BYTES). */
  readonly windowBytes?: number;
}

/**
 * llama.cpp's SPM tokenizer takes time quadratic in a run's length (200 KB of CJK: 1.8 s on a
 * 512-token vocabulary, 256 KB of emoji: 2.2 s on Llama-2's), so long runs go in windows: linear
 * time, and a limit can stop the work about one window past it. On s260k, 150 KB of CJK took
 * 0.3 s in 2 KB windows and 1.9 s in 16 KB ones (a loaded machine).
 */
export const WINDOW_BYTES = 4096;
/** A window's last tokens, within this many bytes of its end, may merge with what follows: they are tokenized again with the next window. */
const WINDOW_OVERLAP = 512;

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
  options: TokenizeOptions = {},
): TokenRun {
  const limit = options.maxTokens ?? Infinity;
  const windowBytes = options.windowBytes ?? WINDOW_BYTES;
  const run: TokenRun = { ids: [], byteLengths: [] };
  const segments = segmentEncodable(vocab, bytes);
  for (let s = 0; s < segments.length; s++) {
    const segment = segments[s]!;
    let complete = true;
    if (segment.kind === "text") {
      complete = encodeWindowed(run, vocab, raw, segment.bytes, s === 0 ? mode : "continuation", windowBytes, limit);
    } else {
      const id = segment.kind === "stray" ? vocab.bySurface.get(segment.bytes) : undefined;
      run.ids.push(id ?? unknownId(vocab, segment.bytes));
      run.byteLengths.push(segment.bytes.length);
    }
    if (run.ids.length > limit && (!complete || s < segments.length - 1)) throw new TokenLimitError(limit);
  }
  return run;
}

/**
 * Tokenizes a run window by window: each window's tokens are kept up to a boundary at least
 * WINDOW_OVERLAP bytes before its end (next to a space when there is one, where vocabularies
 * start or end words), and the next window starts there, so the tokens are the ones the whole
 * run gets wherever tokenization is local (checked against whole runs on the 16 vocabularies in ../shared).
 * Returns false when it stopped before the end, past `limit` tokens.
 */
function encodeWindowed(run: TokenRun, vocab: Vocabulary, raw: RawTokenizer, bytes: string, mode: "start" | "continuation", windowBytes: number, limit: number): boolean {
  let start = 0;
  while (bytes.length - start > windowBytes && run.ids.length <= limit) {
    const end = utf8Boundary(bytes, start + windowBytes, start + 1);
    const window = encodeText(vocab, raw, bytes.slice(start, end), start === 0 ? mode : "continuation");
    const keepWithin = end - start - Math.min(WINDOW_OVERLAP, (end - start) >> 1);
    let kept = 0;
    let keptBytes = 0;
    let anchored = 0;
    let anchoredBytes = 0;
    for (let offset = 0; kept < window.ids.length && offset + window.byteLengths[kept]! <= keepWithin; ) {
      offset += window.byteLengths[kept++]!;
      keptBytes = offset;
      const at = start + offset;
      if (bytes.charCodeAt(at) === 0x20 || bytes.charCodeAt(at - 1) === 0x20) [anchored, anchoredBytes] = [kept, offset];
    }
    if (anchored > 0) [kept, keptBytes] = [anchored, anchoredBytes];
    // A first token longer than the kept part still moves the window on.
    if (keptBytes === 0) [kept, keptBytes] = firstProgress(window);
    for (let i = 0; i < kept; i++) {
      run.ids.push(window.ids[i]!);
      run.byteLengths.push(window.byteLengths[i]!);
    }
    start += keptBytes;
  }
  if (run.ids.length > limit) return false;
  appendRun(run, encodeText(vocab, raw, bytes.slice(start), start === 0 ? mode : "continuation"));
  return true;
}

/** The fewest leading tokens of a run that cover at least one byte. */
function firstProgress(run: TokenRun): [number, number] {
  let bytes = 0;
  for (let i = 0; i < run.ids.length; i++) {
    bytes += run.byteLengths[i]!;
    if (bytes > 0) return [i + 1, bytes];
  }
  return [run.ids.length, bytes];
}

/** The last offset at or before `at` (and after `floor`) that does not split a UTF-8 sequence. */
function utf8Boundary(bytes: string, at: number, floor: number): number {
  let end = at;
  while (end > floor && (bytes.charCodeAt(end) & 0xc0) === 0x80) end--;
  return end;
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
/** Bytes of the vocabulary's longest surface: no token of a plain text spells more. */
export function maxSurfaceLength(vocab: Vocabulary): number {
  let max = maxLengthCache.get(vocab);
  if (max === undefined) {
    max = 1;
    for (const surface of vocab.bySurface.keys()) if (surface.length > max) max = surface.length;
    maxLengthCache.set(vocab, max);
  }
  return max;
}
