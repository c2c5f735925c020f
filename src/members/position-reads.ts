import { extendWithLogits, fromLogits, type DistributionRequest, type SparseDistribution } from "./distribution.js";

/**
 * What was read at one position of a sequence: logits by id, the top of the vocabulary in
 * descending order, and the total logit weight `Σ exp(logit − maxLogit)` over the whole vocabulary.
 * A `row` read holds every logit (small vocabularies): it answers any request.
 */
export interface PositionRead {
  readonly logits: ReadonlyMap<number, number>;
  /** The most probable ids in descending order (every id, for a row). */
  readonly top: readonly number[];
  readonly totalLogitWeight: number;
  readonly row: boolean;
}

/** The read of a whole row of logits (id → logit) with llama.cpp's total logit weight. */
export function rowRead(logits: ReadonlyMap<number, number>, totalLogitWeight: number): PositionRead {
  const top = [...logits.keys()].sort((a, b) => logits.get(b)! - logits.get(a)! || a - b);
  return { logits, top, totalLogitWeight, row: true };
}

/** A top-k read: `logits` lists the top ids first, in descending order (as llama.cpp returns them), then any extras. */
export function topRead(logits: ReadonlyMap<number, number>, topCount: number, totalLogitWeight: number): PositionRead {
  return { logits, top: [...logits.keys()].slice(0, topCount), totalLogitWeight, row: false };
}

/** Whether `read` holds everything `request` asks for. */
export function covers(read: PositionRead, request: DistributionRequest): boolean {
  if (read.row) return true;
  if (request.full) return false;
  if (!request.extend && request.topK > read.top.length) return false;
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
  const listedTop = request.full ? read.top.length : Math.min(request.topK, read.top.length);
  const listed = new Map<number, number>();
  for (let k = 0; k < listedTop; k++) listed.set(read.top[k]!, read.logits.get(read.top[k]!)!);
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
    if (!read || read.row) return;
    const all = new Map(read.logits);
    for (const [id, logit] of logits) all.set(id, logit);
    this.reads.set(position, { ...read, logits: all });
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
function merged(a: PositionRead, b: PositionRead): PositionRead {
  const logits = new Map(a.logits);
  for (const [id, logit] of b.logits) logits.set(id, logit);
  const longer = b.top.length > a.top.length ? b : a;
  return { logits, top: longer.top, totalLogitWeight: longer.totalLogitWeight, row: false };
}
