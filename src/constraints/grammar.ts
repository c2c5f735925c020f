/**
 * A context-free grammar over Unicode code points, in the form llama.cpp's GBNF grammars compile
 * to: each rule is a list of alternatives, each alternative a sequence of terminals (sets of code
 * point ranges) and references to other rules. Repetition, options and groups are rewritten into
 * helper rules when the grammar is built, so the matcher sees only these two kinds of element.
 */

/** A set of code points: `ranges` holds inclusive [lo, hi] pairs; `negated` matches every code point outside them. */
export interface CharSet {
  readonly kind: "chars";
  readonly ranges: readonly number[];
  readonly negated: boolean;
}

export interface RuleRef {
  readonly kind: "rule";
  readonly rule: number;
}

export type GrammarElement = CharSet | RuleRef;
export type Alternative = readonly GrammarElement[];

export interface Grammar {
  /** `rules[r]` lists the alternatives of rule r. */
  readonly rules: readonly (readonly Alternative[])[];
  readonly names: readonly string[];
  readonly root: number;
}

export class GrammarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GrammarError";
  }
}

export const MAX_CODE_POINT = 0x10ffff;

export function charSetHas(set: CharSet, cp: number): boolean {
  let inside = false;
  for (let i = 0; i < set.ranges.length; i += 2) {
    if (cp >= set.ranges[i]! && cp <= set.ranges[i + 1]!) {
      inside = true;
      break;
    }
  }
  return inside !== set.negated;
}

/** Whether the set holds any code point in [lo, hi] (for a UTF-8 character not yet complete). */
export function charSetMeets(set: CharSet, lo: number, hi: number): boolean {
  if (!set.negated) {
    for (let i = 0; i < set.ranges.length; i += 2) if (set.ranges[i]! <= hi && set.ranges[i + 1]! >= lo) return true;
    return false;
  }
  // Some code point of [lo, hi] lies outside every range: walk the ranges in order of their start.
  const sorted: [number, number][] = [];
  for (let i = 0; i < set.ranges.length; i += 2) sorted.push([set.ranges[i]!, set.ranges[i + 1]!]);
  sorted.sort((a, b) => a[0] - b[0]);
  let next = lo;
  for (const [a, b] of sorted) {
    if (a > next) return true;
    if (b >= next) next = b + 1;
    if (next > hi) return false;
  }
  return next <= hi;
}

/** Fewest UTF-8 bytes any code point of the set takes (Infinity for an empty set). */
export function charSetMinBytes(set: CharSet): number {
  const bounds = [0x7f, 0x7ff, 0xffff, MAX_CODE_POINT];
  let lo = 0;
  for (let n = 0; n < bounds.length; n++) {
    if (charSetMeets(set, lo, bounds[n]!)) return n + 1;
    lo = bounds[n]! + 1;
  }
  return Infinity;
}

/** Builds a grammar rule by rule; helper rules for groups and repetitions get derived names. */
export class GrammarBuilder {
  private readonly rules: Alternative[][] = [];
  private readonly names: string[] = [];
  private readonly byName = new Map<string, number>();
  private readonly defined = new Set<number>();
  /** Where each rule was first referenced, for "undefined rule" errors. */
  private readonly referencedAt = new Map<number, string>();

  /** The id of a named rule, created (undefined) on first reference. */
  ref(name: string, where = ""): RuleRef {
    let id = this.byName.get(name);
    if (id === undefined) {
      id = this.rules.length;
      this.rules.push([]);
      this.names.push(name);
      this.byName.set(name, id);
    }
    if (!this.referencedAt.has(id)) this.referencedAt.set(id, where);
    return { kind: "rule", rule: id };
  }

  define(name: string, alternatives: Alternative[]): void {
    const { rule } = this.ref(name);
    if (this.defined.has(rule)) throw new GrammarError(`rule '${name}' is defined twice; merge its alternatives with |`);
    this.defined.add(rule);
    this.rules[rule] = alternatives;
  }

  has(name: string): boolean {
    const id = this.byName.get(name);
    return id !== undefined && this.defined.has(id);
  }

  /** A fresh helper rule named after `base`. */
  helper(base: string, alternatives: Alternative[]): RuleRef {
    let n = this.rules.length;
    while (this.byName.has(`${base}-${n}`)) n++;
    const name = `${base}-${n}`;
    this.define(name, alternatives);
    return this.ref(name);
  }

  /** `element` repeated between `min` and `max` times (max Infinity: unbounded). */
  repeat(base: string, element: Alternative, min: number, max: number): Alternative {
    const out: GrammarElement[] = [];
    for (let i = 0; i < min; i++) out.push(...element);
    if (max === Infinity) {
      const name = `${base}-star-${this.rules.length}`;
      const self = this.ref(name);
      this.define(name, [[...element, self], []]);
      out.push(self);
    } else {
      // x{0,k} as nested options: (x (x (x)?)?)? — k rules, no ambiguity.
      let tail: RuleRef | undefined;
      for (let i = min; i < max; i++) tail = this.helper(`${base}-opt`, [tail ? [...element, tail] : [...element], []]);
      if (tail) out.push(tail);
    }
    return out;
  }

  build(root = "root"): Grammar {
    const rootId = this.byName.get(root);
    if (rootId === undefined || !this.defined.has(rootId)) throw new GrammarError(`the grammar has no '${root}' rule; add one (generation starts there)`);
    for (let id = 0; id < this.rules.length; id++) {
      if (!this.defined.has(id)) {
        const where = this.referencedAt.get(id);
        throw new GrammarError(`rule '${this.names[id]}' is used${where ? ` in ${where}` : ""} but never defined; define it or fix the name`);
      }
    }
    const grammar: Grammar = { rules: this.rules, names: this.names, root: rootId };
    checkLeftRecursion(grammar);
    return grammar;
  }
}

/** Rules that can match the empty text. */
export function nullableRules(grammar: Grammar): boolean[] {
  const nullable = grammar.rules.map(() => false);
  for (let changed = true; changed; ) {
    changed = false;
    grammar.rules.forEach((alternatives, r) => {
      if (nullable[r]) return;
      if (alternatives.some((alt) => alt.every((e) => e.kind === "rule" && nullable[e.rule]))) {
        nullable[r] = true;
        changed = true;
      }
    });
  }
  return nullable;
}

/** A left-recursive rule (`a ::= a "x" | "y"`) would expand forever; llama.cpp refuses them too. */
function checkLeftRecursion(grammar: Grammar): void {
  const nullable = nullableRules(grammar);
  // Edges r → s when s can start r's text.
  const starts = grammar.rules.map((alternatives) => {
    const out = new Set<number>();
    for (const alt of alternatives) {
      for (const e of alt) {
        if (e.kind === "chars") break;
        out.add(e.rule);
        if (!nullable[e.rule]) break;
      }
    }
    return out;
  });
  const state = grammar.rules.map(() => 0); // 0 new, 1 on the path, 2 done
  const visit = (r: number, path: number[]): void => {
    state[r] = 1;
    path.push(r);
    for (const s of starts[r]!) {
      if (state[s] === 1) {
        const cycle = path.slice(path.indexOf(s)).concat(s).map((id) => grammar.names[id]);
        throw new GrammarError(`the grammar is left-recursive (${cycle.join(" → ")}); rewrite it with repetition, e.g. a ::= "y" ("x")*`);
      }
      if (state[s] === 0) visit(s, path);
    }
    path.pop();
    state[r] = 2;
  };
  grammar.rules.forEach((_, r) => {
    if (state[r] === 0) visit(r, []);
  });
}
