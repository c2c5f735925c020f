/**
 * llama.cpp's GBNF grammar notation (grammars/README.md in llama.cpp): `name ::= alternatives`,
 * terminals "..." and [...] (with ranges, `^` negation, escapes \n \r \t \\ \" \] \xHH \uHHHH
 * \UHHHHHHHH), `.` for any character, groups ( ), repetition * + ? {m} {m,} {m,n}, comments
 * from # to the end of the line. A rule ends at a newline, except right after `::=` or `|` and
 * inside parentheses. Generation starts at `root`.
 */
import { GrammarBuilder, GrammarError, MAX_CODE_POINT, type Alternative, type Grammar, type GrammarElement } from "./grammar.js";

export function parseGbnf(source: string): Grammar {
  return new GbnfParser(source).parse();
}

const NAME = /[A-Za-z0-9_-]/;

class GbnfParser {
  private pos = 0;
  private readonly builder = new GrammarBuilder();
  private currentRule = "";

  constructor(private readonly src: string) {}

  parse(): Grammar {
    this.space(true);
    while (this.pos < this.src.length) {
      const name = this.name();
      this.currentRule = name;
      this.space(false);
      if (!this.src.startsWith("::=", this.pos)) this.fail(`expected ::= after the rule name '${name}'`);
      this.pos += 3;
      this.space(true);
      this.builder.define(name, this.alternatives(false));
      const end = this.peek();
      if (end !== undefined && end !== "\n" && end !== "\r") this.fail(`unexpected character ${JSON.stringify(end)}`);
      this.space(true);
    }
    return this.builder.build("root");
  }

  private alternatives(nested: boolean): Alternative[] {
    const out: Alternative[] = [this.sequence(nested)];
    while (this.peek() === "|") {
      this.pos++;
      this.space(true);
      out.push(this.sequence(nested));
    }
    return out;
  }

  private sequence(nested: boolean): GrammarElement[] {
    const out: GrammarElement[] = [];
    let last: GrammarElement[] | undefined;
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === "|" || c === ")" || c === "\n" || c === "\r") break;
      if (c === '"') {
        last = this.literal();
      } else if (c === "[") {
        last = [this.charClass()];
      } else if (c === ".") {
        this.pos++;
        last = [{ kind: "chars", ranges: [], negated: true }];
      } else if (c === "(") {
        this.pos++;
        this.space(true);
        const inner = this.alternatives(true);
        if (this.peek() !== ")") this.fail("expected ) to close the group");
        this.pos++;
        last = [this.builder.helper(this.currentRule, inner)];
      } else if (c === "*" || c === "+" || c === "?" || c === "{") {
        if (!last) this.fail(`'${c}' must follow something to repeat`);
        const [min, max] = this.repetition();
        out.splice(out.length - last.length, last.length, ...this.builder.repeat(this.currentRule, last, min, max));
        last = undefined;
        this.space(nested);
        continue;
      } else if (NAME.test(c)) {
        const name = this.name();
        if (this.peekAfterSpace() === "::=") {
          // The next rule starts on this line: the previous rule ended without a newline.
          this.fail(`a new rule '${name}' starts before the end of the line; put each rule on its own line`);
        }
        last = [this.builder.ref(name, `rule '${this.currentRule}'`)];
      } else {
        this.fail(`unexpected character ${JSON.stringify(c)}`);
      }
      out.push(...last);
      this.space(nested);
    }
    return out;
  }

  private repetition(): [number, number] {
    const c = this.src[this.pos++]!;
    if (c === "*") return [0, Infinity];
    if (c === "+") return [1, Infinity];
    if (c === "?") return [0, 1];
    const close = this.src.indexOf("}", this.pos);
    if (close < 0) this.fail("expected } to close the repetition");
    const body = this.src.slice(this.pos, close).replace(/\s+/g, "");
    this.pos = close + 1;
    const match = /^(\d+)(,(\d*))?$/.exec(body);
    if (!match) this.fail(`repetition {${body}} must be {m}, {m,} or {m,n}`);
    const min = Number(match[1]);
    const max = match[2] === undefined ? min : match[3] === "" ? Infinity : Number(match[3]);
    if (max < min) this.fail(`repetition {${body}}: the maximum is below the minimum`);
    if (max !== Infinity && max > 1000) this.fail(`repetition {${body}}: at most 1000 repeats`);
    return [min, max];
  }

  private literal(): GrammarElement[] {
    this.pos++;
    const out: GrammarElement[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === "\n") this.fail("unterminated string literal");
      if (c === '"') {
        this.pos++;
        return out;
      }
      const cp = this.char();
      out.push({ kind: "chars", ranges: [cp, cp], negated: false });
    }
  }

  private charClass(): GrammarElement {
    this.pos++;
    let negated = false;
    if (this.src[this.pos] === "^") {
      negated = true;
      this.pos++;
    }
    const ranges: number[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === "\n") this.fail("unterminated character class [...]");
      if (c === "]") {
        this.pos++;
        return { kind: "chars", ranges, negated };
      }
      const lo = this.char();
      let hi = lo;
      if (this.src[this.pos] === "-" && this.src[this.pos + 1] !== "]") {
        this.pos++;
        hi = this.char();
        if (hi < lo) this.fail("a range in [...] goes downwards");
      }
      ranges.push(lo, hi);
    }
  }

  /** One (possibly escaped) character of a literal or class. */
  private char(): number {
    const c = this.src.codePointAt(this.pos)!;
    if (c !== 0x5c) {
      this.pos += c > 0xffff ? 2 : 1;
      return c;
    }
    const e = this.src[this.pos + 1];
    this.pos += 2;
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, "\\": 0x5c, '"': 0x22, "[": 0x5b, "]": 0x5d, "-": 0x2d, "^": 0x5e, "/": 0x2f };
    if (e !== undefined && e in simple) return simple[e]!;
    const digits = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (digits === 0) this.fail(`unknown escape \\${e ?? ""}`);
    const hex = this.src.slice(this.pos, this.pos + digits);
    if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) this.fail(`\\${e} needs ${digits} hex digits`);
    this.pos += digits;
    const cp = parseInt(hex, 16);
    if (cp > MAX_CODE_POINT) this.fail(`\\${e}${hex} is beyond U+10FFFF`);
    return cp;
  }

  private name(): string {
    const start = this.pos;
    while (this.pos < this.src.length && NAME.test(this.src[this.pos]!)) this.pos++;
    if (this.pos === start) this.fail("expected a rule name");
    return this.src.slice(start, this.pos);
  }

  /** Skips blanks and comments; newlines only when `newlines`. */
  private space(newlines: boolean): void {
    for (;;) {
      const c = this.src[this.pos];
      if (c === " " || c === "\t" || (newlines && (c === "\n" || c === "\r"))) this.pos++;
      else if (c === "#") while (this.pos < this.src.length && this.src[this.pos] !== "\n") this.pos++;
      else return;
    }
  }

  private peek(): string | undefined {
    return this.src[this.pos];
  }

  private peekAfterSpace(): string {
    let p = this.pos;
    while (this.src[p] === " " || this.src[p] === "\t") p++;
    return this.src.slice(p, p + 3);
  }

  private fail(message: string): never {
    const before = this.src.slice(0, this.pos);
    const line = before.split("\n").length;
    const column = this.pos - before.lastIndexOf("\n");
    throw new GrammarError(`grammar line ${line}, column ${column}: ${message}`);
  }
}
