/**
 * Byte-level recognizer for a Grammar: the text so far is a set of parse stacks (as in llama.cpp's
 * grammar sampler), advanced one byte at a time. Bytes are decoded as UTF-8 on the way, so a
 * candidate may end inside a character; it is kept when some stack can still take a character
 * that starts with those bytes. States are immutable: testing a candidate never changes the
 * state it starts from.
 */
import { charSetHas, charSetMeets, charSetMinBytes, type CharSet, type Grammar } from "./grammar.js";
import type { ConstraintState, TextConstraint } from "./constraint.js";

/** A parse stack as a linked list: `pos` is the next element of the innermost alternative, `next` the frames it returns to. */
interface Frame {
  readonly pos: number;
  readonly next: Frame | null;
  /** Frames are interned: equal stacks are the same object, with the same id. */
  readonly id: number;
}

/** Distinct states kept before the caches start over (each holds a row of transitions). */
const MAX_INTERNED = 200_000;

/** The grammar flattened: every element of every alternative gets a position; END marks an alternative's end. */
class CompiledGrammar {
  /** The terminal at each position, null for a rule reference or END. */
  readonly chars: (CharSet | null)[] = [];
  /** The rule referenced at each position, -1 for a terminal or END. */
  readonly refs: number[] = [];
  /** First position of each alternative of each rule. */
  readonly altStarts: number[][] = [];
  /** Fewest bytes that match the rest of the alternative from each position. */
  readonly suffixMin: number[] = [];
  readonly rootStarts: readonly number[];
  private readonly frames = new Map<string, Frame>();
  private readonly states = new Map<string, GrammarState>();

  constructor(readonly grammar: Grammar) {
    const ends: boolean[] = [];
    grammar.rules.forEach((alternatives, r) => {
      this.altStarts[r] = alternatives.map((alt) => {
        const start = this.chars.length;
        for (const e of alt) {
          this.chars.push(e.kind === "chars" ? e : null);
          this.refs.push(e.kind === "rule" ? e.rule : -1);
          ends.push(false);
        }
        this.chars.push(null);
        this.refs.push(-1);
        ends.push(true);
        return start;
      });
    });
    this.rootStarts = this.altStarts[grammar.root]!;
    this.computeMinimums(ends);
  }

  isEnd(pos: number): boolean {
    return this.chars[pos] === null && this.refs[pos] === -1;
  }

  private computeMinimums(ends: boolean[]): void {
    const n = this.chars.length;
    const charMin = this.chars.map((c) => (c ? charSetMinBytes(c) : 0));
    const ruleMin = this.altStarts.map(() => Infinity);
    const suffix = new Array<number>(n).fill(Infinity);
    for (let changed = true; changed; ) {
      changed = false;
      for (let p = n - 1; p >= 0; p--) {
        const value = ends[p] ? 0 : (this.refs[p]! >= 0 ? ruleMin[this.refs[p]!]! : charMin[p]!) + suffix[p + 1]!;
        if (value < suffix[p]!) {
          suffix[p] = value;
          changed = true;
        }
      }
      this.altStarts.forEach((starts, r) => {
        const best = Math.min(...starts.map((s) => suffix[s]!));
        if (best < ruleMin[r]!) {
          ruleMin[r] = best;
          changed = true;
        }
      });
    }
    this.suffixMin.push(...suffix);
  }

  /** The interned frame for `pos` over `next`. */
  frame(pos: number, next: Frame | null): Frame {
    const key = `${pos}:${next === null ? -1 : next.id}`;
    let frame = this.frames.get(key);
    if (!frame) {
      frame = { pos, next, id: this.frames.size };
      this.frames.set(key, frame);
    }
    return frame;
  }

  /**
   * The interned state for these stacks: states reached by different texts but with the same
   * stacks are one object, so each transition is computed once (a DFA built lazily).
   */
  state(stacks: readonly (Frame | null)[], partial: Partial | null): GrammarState {
    const ids = [...new Set(stacks.map((s) => (s === null ? -1 : s.id)))].sort((a, b) => a - b);
    const key = partial === null ? ids.join(",") : `${ids.join(",")}|${partial.value},${partial.remaining},${partial.length}`;
    let state = this.states.get(key);
    if (!state) {
      if (this.states.size >= MAX_INTERNED) {
        this.states.clear();
        this.frames.clear();
      }
      const unique = ids.length === stacks.length ? stacks : ids.map((id) => stacks.find((s) => (s === null ? -1 : s.id) === id)!);
      state = new GrammarState(this, unique, partial);
      this.states.set(key, state);
    }
    return state;
  }

  /** Adds to `out` every stack reachable from `frame` without reading input, each with a terminal on top (null: the end of the text). */
  expand(frame: Frame | null, out: (Frame | null)[]): void {
    while (frame !== null && this.isEnd(frame.pos)) frame = frame.next;
    if (frame === null) {
      out.push(null);
      return;
    }
    const rule = this.refs[frame.pos]!;
    if (rule < 0) {
      out.push(frame);
      return;
    }
    // The return point; an alternative's end is popped right away, so right recursion stays flat.
    let back: Frame | null = frame.next;
    if (!this.isEnd(frame.pos + 1)) back = this.frame(frame.pos + 1, frame.next);
    while (back !== null && this.isEnd(back.pos)) back = back.next;
    for (const start of this.altStarts[rule]!) this.expand(this.frame(start, back), out);
  }
}

/** A UTF-8 character begun but not finished: its bytes so far and how many are still to come. */
interface Partial {
  readonly value: number;
  readonly remaining: number;
  readonly length: number;
}

const MIN_OF_LENGTH = [0, 0, 0x80, 0x800, 0x10000];

export class GrammarState implements ConstraintState {
  private minCache = -1;
  /** The state after each byte, once computed (null: the byte leaves the language). */
  private readonly transitions: (GrammarState | null | undefined)[] = [];

  constructor(
    private readonly compiled: CompiledGrammar,
    private readonly stacks: readonly (Frame | null)[],
    private readonly partial: Partial | null,
  ) {}

  get canEnd(): boolean {
    return this.partial === null && this.stacks.includes(null);
  }

  /** Whether any text at all may follow (false: the text is finished). */
  get canContinue(): boolean {
    return this.stacks.some((s) => s !== null);
  }

  get minBytesToEnd(): number {
    if (this.minCache >= 0) return this.minCache;
    let best = Infinity;
    for (const stack of this.stacks) {
      let total = 0;
      if (stack === null) {
        best = 0;
        break;
      }
      for (let f: Frame | null = stack; f !== null; f = f.next) {
        total += f === stack && this.partial ? this.partial.remaining + this.compiled.suffixMin[f.pos + 1]! : this.compiled.suffixMin[f.pos]!;
      }
      if (total < best) best = total;
    }
    this.minCache = best;
    return best;
  }

  advance(bytes: string): GrammarState | null {
    let state: GrammarState | null = this;
    for (let i = 0; i < bytes.length && state !== null; i++) state = state.advanceByte(bytes.charCodeAt(i));
    return state;
  }

  advanceByte(byte: number): GrammarState | null {
    let next = this.transitions[byte];
    if (next === undefined) this.transitions[byte] = next = this.computeByte(byte);
    return next;
  }

  private computeByte(byte: number): GrammarState | null {
    const partial = this.partial;
    if (partial === null) {
      if (byte < 0x80) return this.advanceCodePoint(byte);
      const length = byte >= 0xf0 && byte <= 0xf4 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc2 && byte < 0xe0 ? 2 : 0;
      if (length === 0 || byte > 0xf4) return null;
      const value = byte & (0xff >> (length + 1));
      return this.withPartial({ value, remaining: length - 1, length });
    }
    if ((byte & 0xc0) !== 0x80) return null;
    const value = (partial.value << 6) | (byte & 0x3f);
    if (partial.remaining > 1) return this.withPartial({ value, remaining: partial.remaining - 1, length: partial.length });
    if (value < MIN_OF_LENGTH[partial.length]! || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return null;
    return this.compiled.state(this.stacks, null).advanceCodePoint(value);
  }

  /** Keeps a character in progress when some stack can take a character starting with these bytes. */
  private withPartial(partial: Partial): GrammarState | null {
    const bits = 6 * partial.remaining;
    const lo = Math.max(partial.value * 2 ** bits, MIN_OF_LENGTH[partial.length]!);
    const hi = Math.min(partial.value * 2 ** bits + 2 ** bits - 1, 0x10ffff);
    if (lo > hi) return null;
    const viable = this.stacks.filter((s) => s !== null && charSetMeets(this.compiled.chars[s.pos]!, lo, hi));
    return viable.length === 0 ? null : this.compiled.state(viable, partial);
  }

  private advanceCodePoint(cp: number): GrammarState | null {
    const out: (Frame | null)[] = [];
    for (const stack of this.stacks) {
      if (stack === null || !charSetHas(this.compiled.chars[stack.pos]!, cp)) continue;
      this.compiled.expand(this.compiled.frame(stack.pos + 1, stack.next), out);
    }
    if (out.length === 0) return null;
    return this.compiled.state(out, null);
  }
}

/** A grammar as a constraint on generated text. */
export class GrammarConstraint implements TextConstraint {
  private readonly compiled: CompiledGrammar;

  constructor(
    grammar: Grammar,
    readonly description: string,
  ) {
    this.compiled = new CompiledGrammar(grammar);
  }

  start(): GrammarState {
    const out: (Frame | null)[] = [];
    for (const start of this.compiled.rootStarts) this.compiled.expand(this.compiled.frame(start, null), out);
    return this.compiled.state(out, null);
  }
}
