import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { Ajv2020 } from "ajv/dist/2020.js";
import { grammarConstraint, jsonObjectConstraint, jsonSchemaConstraint, GrammarError, SchemaError, type JsonSchema, type ConstraintState, type TextConstraint } from "../src/constraints/index.js";
import { textToSurface } from "../src/tokens/vocabulary.js";

const accepts = (constraint: TextConstraint, text: string): ConstraintState | null => constraint.start().advance(textToSurface(text));
const complete = (constraint: TextConstraint, text: string): boolean => accepts(constraint, text)?.canEnd === true;

/** Random texts of the language: at each byte, a random allowed byte (or the end, when allowed). */
function sample(constraint: TextConstraint, random: () => number, maxBytes: number): string {
  let state = constraint.start();
  let bytes = "";
  for (;;) {
    const left = maxBytes - bytes.length;
    if (state.canEnd && (random() < 0.2 || !state.canContinue || left <= 0)) return bytes;
    const options: [string, ConstraintState][] = [];
    for (let b = 0; b < 256; b++) {
      const next = state.advance(String.fromCharCode(b));
      if (next && next.minBytesToEnd <= left - 1) options.push([String.fromCharCode(b), next]);
    }
    assert.ok(options.length > 0, `stuck after ${JSON.stringify(bytes)} with ${left} bytes left`);
    // Prefer ASCII so samples stay readable, but take other bytes too.
    const ascii = options.filter(([b]) => b.charCodeAt(0) < 0x80);
    const pool = ascii.length > 0 && random() < 0.9 ? ascii : options;
    const [byte, next] = pool[Math.floor(random() * pool.length)]!;
    bytes += byte;
    state = next;
  }
}

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const utf8 = (bytes: string) => Buffer.from(bytes, "latin1").toString("utf8");

describe("GBNF grammars", () => {
  test("literals, classes, groups and repetition match as in llama.cpp", () => {
    const g = grammarConstraint(`
      root ::= greeting (" " name){1,2} "!"?   # a comment
      greeting ::= "hi" | "hello"
      name ::= [A-Z] [a-z]*
    `);
    assert.ok(complete(g, "hi Bob"));
    assert.ok(complete(g, "hello Ann Lee!"));
    assert.ok(!complete(g, "hello"));
    assert.equal(accepts(g, "hello Ann Lee Kim"), null);
    assert.equal(accepts(g, "hey"), null);
    assert.ok(accepts(g, "hel")!.canContinue);
    assert.equal(accepts(g, "hel")!.minBytesToEnd, 4, "'lo' then ' ' and one capital");
    assert.equal(accepts(g, "hi Bob!")!.canContinue, false, "after '!' nothing may follow");
  });

  test("UTF-8: a candidate may end inside a character that the grammar allows", () => {
    const g = grammarConstraint(`root ::= "é" [α-ω]+`);
    const e = textToSurface("é");
    assert.ok(g.start().advance(e[0]!), "first byte of é");
    assert.equal(g.start().advance("\xc3\xa8"), null, "è is not é");
    const alpha = textToSurface("é\u03b1");
    assert.ok(g.start().advance(alpha.slice(0, 3)), "é and the lead byte of α");
    assert.equal(g.start().advance(e + "\xd0"), null, "0xd0 starts only characters outside α-ω");
    assert.equal(g.start().advance(e + "\xff"), null, "never a UTF-8 byte");
    assert.ok(complete(g, "éαβ"));
    assert.equal(g.start().advance(e.slice(0, 1))!.minBytesToEnd, 3, "the rest of é and one Greek letter");
  });

  test("every grammar llama.cpp ships parses; json.gbnf accepts JSON and rejects the rest", () => {
    const folder = path.join(path.dirname(createRequire(import.meta.url).resolve("node-llama-cpp")), "../llama/grammars");
    const files = fs.readdirSync(folder).filter((f) => f.endsWith(".gbnf"));
    assert.ok(files.length >= 5, files.join(", "));
    for (const file of files) grammarConstraint(fs.readFileSync(path.join(folder, file), "utf8"));
    const json = grammarConstraint(fs.readFileSync(path.join(folder, "json.gbnf"), "utf8"));
    assert.ok(complete(json, '{"a": [1, 2.5, {"b": null}], "c": "d\\n"}'));
    assert.ok(!complete(json, '{"a": '));
    assert.equal(accepts(json, '{"a" 1}'), null);
    const arithmetic = grammarConstraint(fs.readFileSync(path.join(folder, "arithmetic.gbnf"), "utf8"));
    assert.ok(complete(arithmetic, "1+2*(3-4)=x\n"));
    assert.ok(!complete(arithmetic, "1+2*(3-4)"));
  });

  test("mistakes are reported with the place and the fix", () => {
    assert.throws(() => grammarConstraint(`root ::= a\na ::= a "x" | "y"`), (e: Error) => e instanceof GrammarError && /left-recursive \(a → a\)/.test(e.message));
    assert.throws(() => grammarConstraint(`root ::= thing`), /rule 'thing' is used in rule 'root' but never defined/);
    assert.throws(() => grammarConstraint(`start ::= "x"`), /no 'root' rule/);
    assert.throws(() => grammarConstraint(`root ::= "x" )`), /line 1, column 14: unexpected character "\)"/);
    assert.throws(() => grammarConstraint(`root ::= [a-`), /unterminated character class/);
    assert.throws(() => grammarConstraint(`root ::= "x"{3,1}`), /maximum is below the minimum/);
  });
});

describe("JSON schemas", () => {
  const ajv = new Ajv2020({ strict: false });
  const schemas: Record<string, JsonSchema & object> = {
    person: {
      type: "object",
      properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer", minimum: 0 }, tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 3 } },
      required: ["name", "age"],
      additionalProperties: false,
    },
    optional: {
      type: "object",
      properties: { a: { type: "number" }, b: { type: ["string", "null"] }, c: { const: { x: [1] } } },
      additionalProperties: false,
    },
    nested: {
      $defs: { node: { type: "object", properties: { value: { type: "boolean" }, next: { anyOf: [{ $ref: "#/$defs/node" }, { type: "null" }] } }, required: ["value", "next"] } },
      $ref: "#/$defs/node",
    },
    bounded: { type: "array", items: { type: "string", minLength: 1, maxLength: 2 }, minItems: 2, maxItems: 4 },
    zodInteger: { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", properties: { n: { type: "integer", minimum: -9007199254740991, maximum: 9007199254740991 } }, required: ["n"], additionalProperties: false },
    map: { type: "object", additionalProperties: { type: "integer" } },
  };

  for (const [name, schema] of Object.entries(schemas)) {
    test(`${name}: random texts of the constraint always parse and validate`, () => {
      const constraint = jsonSchemaConstraint(schema, name);
      const validate = ajv.compile(schema);
      const random = seeded(name.length);
      for (let i = 0; i < 60; i++) {
        const text = utf8(sample(constraint, random, 40 + (i % 5) * 30));
        const value: unknown = JSON.parse(text);
        assert.ok(validate(value), `${text}: ${ajv.errorsText(validate.errors)}`);
      }
    });
  }

  test("the layout: keys in schema order, a single optional space, bounded numbers", () => {
    const c = jsonSchemaConstraint(schemas.person!);
    assert.ok(complete(c, '{"name": "Lily", "age": 3}'));
    assert.ok(complete(c, '{"name":"Lily","age":3,"tags":["a"]}'));
    assert.equal(accepts(c, '{"age"'), null, "keys come in the schema's order");
    assert.equal(accepts(c, '{ "name"'), null, "no space after {");
    assert.equal(accepts(c, '{"name":  '), null, "one space at most");
    assert.equal(accepts(c, '{"name": "Lily", "age": -'), null, "minimum 0: no sign");
    assert.equal(accepts(c, '{"name": "Lily", "age": 01'), null);
    assert.equal(accepts(c, `{"name": "Lily", "age": 1${"0".repeat(15)}`), null, "at most 15 digits");
    assert.equal(accepts(c, '{"name": "Lily", "extra"'), null);
    assert.equal(accepts(c, '{"name": "a\u0001'), null, "control characters are escaped in JSON");
    assert.ok(accepts(c, '{"name": "a\\u00e9\\n'));
    assert.equal(c.start().minBytesToEnd, '{"name":"","age":0}'.length);
  });

  test("json_object: any object, nothing else", () => {
    const c = jsonObjectConstraint();
    assert.ok(complete(c, '{"a": {"b": [true, null, -1.5, "x"]}}'));
    assert.ok(complete(c, "{}"));
    assert.equal(accepts(c, "["), null);
    assert.equal(accepts(c, '"x"'), null);
    const random = seeded(7);
    for (let i = 0; i < 40; i++) assert.equal(typeof JSON.parse(utf8(sample(c, random, 60))), "object");
  });

  test("what chorus cannot constrain answers with the keyword's path", () => {
    const refuse = (schema: JsonSchema, pattern: RegExp) => assert.throws(() => jsonSchemaConstraint(schema), (e: Error) => e instanceof SchemaError && pattern.test(e.message));
    refuse({ type: "object", properties: { email: { type: "string", pattern: "@" } } }, /^properties\.email\.pattern: 'pattern' is not supported/);
    refuse({ type: "integer", maximum: 10 }, /^maximum: .*remove the bound or widen it/);
    refuse({ type: "object", properties: {}, required: ["x"] }, /^required: 'x' is required but not in properties/);
    refuse({ $ref: "#/$defs/missing" }, /\$ref: #\/\$defs\/missing does not exist/);
    refuse({ type: "date" }, /^type: unknown type "date"/);
    refuse({ items: [{ type: "string" }] }, /tuple schemas/);
  });
});
