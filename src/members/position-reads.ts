import { extendWithLogits, fromLogits, type DistributionRequest, type SparseDistribution } from "./distribution.js";
import type { RawPositionRead } from "./direct-reads.js";

/** Logits by id. */
export interface LogitLookup {
  get(id: number): number | undefined;
  has(id: number): boolean;
}

/**
 * What was read at one position of a sequence: logits by id, the top of the vocabulary in
 * descending order, and the total logit weight `Σ exp(logit − maxLogit)` over the whole vocabulary.
 * A `row` read holds every logit (small vocabularies): it answers any request.
 */
export type PositionRead = RowRead | TopRead;

interface ReadBase {
  /** How many of the most probable ids are known in order (every id, for a row). */
  readonly topCount: number;
  /** The `count` (≤ topCount) most probable ids, in descending order. */
  top(count: number): readonly number[];
  readonly totalLogitWeight: number;
}

export interface RowRead extends ReadBase {
  readonly row: true;
  readonly logits: LogitLookup;
}

export interface TopRead extends ReadBase {
  readonly row: false;
  readonly logits: ReadonlyMap<number, number>;
}

/**
 * The read of a whole row of logits (id → logit, every id of the vocabulary) with llama.cpp's total
 * logit weight, as node-llama-cpp's stock binding returns it.
 */
export function rowRead(logits: ReadonlyMap<number, number>, totalLogitWeight: number): RowRead {
  const row = new Float32Array(logits.size);
  for (const [id, logit] of logits) {
    if (!(id >= 0 && id < row.length)) throw new Error(`a row read lists id ${id} outside its ${row.length} ids`);
    row[id] = logit;
  }
  return rowOf(row, totalLogitWeight);
}

/** A top-k read: `logits` lists the top ids first, in descending order (as llama.cpp returns them), then any extras. */
export function topRead(logits: ReadonlyMap<number, number>, topCount: number, totalLogitWeight: number): TopRead {
  const ids = [...logits.keys()].slice(0, topCount);
  return { logits, topCount: ids.length, top: (count) => ids.slice(0, count), totalLogitWeight, row: false };
}

/** A whole row read by the patched binding, its top from the binding's list as far as that goes. */
export function directRowRead(raw: RawPositionRead & { readonly row: Float32Array }): RowRead {
  return rowOf(raw.row, raw.totalLogitWeight, raw.topIds);
}

/** A row read over every logit by id; `knownTop`: the row's most probable ids already in order (ties: lower id first). */
function rowOf(row: Float32Array, totalLogitWeight: number, knownTop: Int32Array = new Int32Array(0)): RowRead {
  const logits: LogitLookup = {
    get: (id) => (Number.isInteger(id) && id >= 0 && id < row.length ? row[id] : undefined),
    has: (id) => Number.isInteger(id) && id >= 0 && id < row.length,
  };
  const top = (count: number): readonly number[] => (count <= knownTop.length ? Array.from(knownTop.subarray(0, count)) : topOfRow(row, count));
  return { row: true, logits, topCount: row.length, top, totalLogitWeight };
}

/**
 * The ids of a row's `count` highest logits in descending order (ties: lower id first), without
 * sorting the ids of the whole row: the count-th highest value from a sorted copy of the values
 * (a native typed-array sort), then only the ids at or above it are ordered.
 */
function topOfRow(row: Float32Array, count: number): number[] {
  const n = Math.min(count, row.length);
  if (n <= 0) return [];
  const threshold = row.slice().sort()[row.length - n]!;
  const ids: number[] = [];
  for (let id = 0; id < row.length; id++) if (row[id]! >= threshold) ids.push(id);
  ids.sort((a, b) => row[b]! - row[a]! || a - b);
  return ids.slice(0, n);
}

/** A top-k read by the patched binding (the top ids, then the requested ones): the stock read's shape. */
export function directTopRead(raw: RawPositionRead): TopRead {
  const logits = new Map<number, number>();
  raw.topIds.forEach((id, i) => logits.set(id, raw.topLogits[i]!));
  raw.ids.forEach((id, i) => {
    const logit = raw.idLogits[i]!;
    if (!Number.isNaN(logit) && !logits.has(id)) logits.set(id, logit);
  });
  const ids = Array.from(raw.topIds);
  return { row: false, logits, topCount: ids.length, top: (count) => ids.slice(0, count), totalLogitWeight: raw.totalLogitWeight };
}

/** Whether `read` holds everything `request` asks for. */
export function covers(read: PositionRead, request: DistributionRequest): boolean {
  if (read.row) return true;
  if (request.full) return false;
  if (!request.extend && request.topK > read.topCount) return false;
  return (request.extraIds ?? []).every((id) => read.logits.has(id));
}

/**
 * The answer to `request` from what was read, computed as a fresh read computes it: the top
 * `topK` ids in descending order, then the requested extras (descending), probabilities
 * `exp(logit − maxLogit) / totalLogitWeight`. Call only when `covers(read, request)`.
 */
export function answer(read: PositionRead, request: DistributionRequest, vocabularySize: number): SparseDistribution {
  if (request.extend) {
    const extra = new Map<number, number>();
    for (const id of byLogit(read, request.extraIds ?? [])) extra.set(id, read.logits.get(id)!);
    return extendWithLogits(request.extend, extra);
  }
  const listedTop = request.full ? read.topCount : Math.min(request.topK, read.topCount);
  const listed = new Map<number, number>();
  for (const id of read.top(listedTop)) listed.set(id, read.logits.get(id)!);
  for (const id of byLogit(read, request.extraIds ?? [])) if (!listed.has(id)) listed.set(id, read.logits.get(id)!);
  return fromLogits(listed, read.totalLogitWeight, Math.min(request.topK, listedTop), vocabularySize);
}

function byLogit(read: PositionRead, ids: readonly number[]): number[] {
  return [...new Set(ids)].filter((id) => read.logits.has(id)).sort((a, b) => read.logits.get(b)! - read.logits.get(a)! || a - b);
}

/**
 * Reads of one sequence, by position, valid while the tokens up to each position stay the same:
 * the sequence's owner drops positions from where its tokens change, and positions far behind
 * the end (never read again) to bound memory.
 */
export class PositionReadCache {
  private readonly reads = new Map<number, PositionRead>();

  constructor(private readonly keepBehind = 64) {}

  get(position: number): PositionRead | undefined {
    return this.reads.get(position);
  }

  set(position: number, read: PositionRead): void {
    const previous = this.reads.get(position);
    this.reads.set(position, previous && !read.row && !previous.row ? merged(previous, read) : read);
  }

  /** Logits looked up by id at a position already read (they extend it; a position not read keeps nothing). */
  addLookups(position: number, logits: ReadonlyMap<number, number>): void {
    const read = this.reads.get(position);
    if (read && !read.row) this.reads.set(position, withLogits(read, logits));
  }

  /** Whether anything is kept at or after `position`. */
  hasFrom(position: number): boolean {
    for (const p of this.reads.keys()) if (p >= position) return true;
    return false;
  }

  /** The tokens changed from `start` on: reads at and after it are of another text. */
  dropFrom(start: number): void {
    for (const position of this.reads.keys()) if (position >= start) this.reads.delete(position);
  }

  /** Forgets reads more than `keepBehind` positions before `end`. */
  trim(end: number): void {
    for (const position of this.reads.keys()) if (position < end - this.keepBehind) this.reads.delete(position);
  }
}

/** Two top-k reads of the same position: the longer top list, every logit either saw. */
function merged(a: TopRead, b: TopRead): TopRead {
  return b.topCount > a.topCount ? withLogits(b, a.logits) : withLogits(a, b.logits);
}

/** `read` knowing more logits of the same position. */
function withLogits(read: TopRead, more: ReadonlyMap<number, number>): TopRead {
  const logits = new Map(read.logits);
  for (const [id, logit] of more) if (!logits.has(id)) logits.set(id, logit);
  return { ...read, logits };
}
