/**
 * JSON schemas (the subset OpenAI's structured outputs and tool parameters use) compiled to a
 * Grammar whose every text parses as JSON and validates against the schema.
 *
 * The generated JSON has one layout, so that small models cannot wander off in whitespace: no
 * whitespace except an optional single space after `:` and `,`; object keys in the schema's
 * order; integers of at most 15 digits and fractions of at most 15 digits, no exponent (so every
 * number is exact in a double). Properties the schema does not list are never generated.
 */
import { GrammarBuilder, GrammarError, type Alternative, type CharSet, type Grammar, type GrammarElement, type RuleRef } from "./grammar.js";

export type JsonSchema = boolean | { readonly [keyword: string]: unknown };

/** Keywords that only describe (they constrain nothing); ignored. */
const ANNOTATIONS = new Set(["$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict"]);
const SUPPORTED = [
  "type", "enum", "const", "anyOf", "oneOf", "allOf (one schema)", "$ref (#/$defs/… or #/definitions/…)", "nullable",
  "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength",
  "minimum (0, or any bound outside ±10^15)", "maximum (any bound outside ±10^15)", "exclusiveMinimum (integer, 0)",
];
const KNOWN = new Set([...ANNOTATIONS, "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "nullable", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum"]);
const TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"] as const;
type JsonType = (typeof TYPES)[number];

/** Digits kept in an integer part and in a fraction: |x| < 10^15 is exact in a double. */
const MAX_DIGITS = 15;
const BIG = 1e15;

/** A schema chorus cannot turn into a constraint; `path` names the place (`properties.age.pattern`). */
export class SchemaError extends GrammarError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(path ? `${path}: ${message}` : message);
    this.name = "SchemaError";
  }
}

const chars = (ranges: number[], negated = false): CharSet => ({ kind: "chars", ranges, negated });
const code = (c: string) => c.codePointAt(0)!;

/** A literal text as a sequence of single characters. */
export function literal(text: string): GrammarElement[] {
  return [...text].map((c) => chars([code(c), code(c)]));
}

/** Compiles schemas into rules of one GrammarBuilder; several schemas may share it (tool calls). */
export class JsonGrammarCompiler {
  readonly builder = new GrammarBuilder();
  private readonly shared = new Map<string, RuleRef>();
  /** `$ref` rules per root schema: two tools may each have a `#/$defs/item` of their own. */
  private readonly refs = new Map<JsonSchema, Map<string, RuleRef>>();
  private refCount = 0;
  private root: JsonSchema = true;

  /** The optional single space after `:` and `,`. */
  space(): RuleRef {
    return this.once("sp", () => [[chars([0x20, 0x20])], []]);
  }

  /** A value the schema allows, as a sequence of elements. `root` resolves `#/$defs/…` references. */
  value(schema: JsonSchema, path: string, root: JsonSchema = schema): Alternative {
    const previous = this.root;
    this.root = root;
    try {
      return this.compile(schema, path);
    } finally {
      this.root = previous;
    }
  }

  /** Any JSON object (OpenAI's `json_object` mode). */
  anyObject(): Alternative {
    return [this.genericObject()];
  }

  build(root: Alternative): Grammar {
    this.builder.define("root", [root]);
    return this.builder.build("root");
  }

  private compile(schema: JsonSchema, path: string): Alternative {
    if (schema === true) return [this.genericValue()];
    if (schema === false) throw new SchemaError(path, "the schema `false` allows no value");
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw new SchemaError(path, "a schema must be an object or a boolean");
    for (const key of Object.keys(schema)) {
      if (!KNOWN.has(key) && !key.startsWith("x-")) {
        throw new SchemaError(join(path, key), `'${key}' is not supported by chorus's JSON-schema constraint; remove it (supported: ${SUPPORTED.join(", ")})`);
      }
    }
    if (schema.$ref !== undefined) return [this.reference(schema, path)];
    if (schema.const !== undefined) return literal(JSON.stringify(schema.const));
    if (schema.enum !== undefined) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0) throw new SchemaError(join(path, "enum"), "enum must be a non-empty array");
      return [this.builder.helper("enum", schema.enum.map((v) => literal(JSON.stringify(v))))];
    }
    const options = (schema.anyOf ?? schema.oneOf) as unknown;
    if (options !== undefined) {
      const key = schema.anyOf !== undefined ? "anyOf" : "oneOf";
      if (!Array.isArray(options) || options.length === 0) throw new SchemaError(join(path, key), `${key} must be a non-empty array of schemas`);
      return [this.builder.helper(key, options.map((s, i) => this.compile(s as JsonSchema, `${join(path, key)}[${i}]`)))];
    }
    if (schema.allOf !== undefined) {
      if (!Array.isArray(schema.allOf) || schema.allOf.length !== 1) throw new SchemaError(join(path, "allOf"), "allOf is supported with one schema only; merge the schemas into one");
      return this.compile(schema.allOf[0] as JsonSchema, `${join(path, "allOf")}[0]`);
    }
    const types = this.types(schema, path);
    const alternatives = types.map((t) => this.typed(t, schema, path));
    return alternatives.length === 1 ? alternatives[0]! : [this.builder.helper("type", alternatives)];
  }

  private types(schema: { readonly [k: string]: unknown }, path: string): JsonType[] {
    const raw = schema.type;
    let types: JsonType[];
    if (raw === undefined) {
      // No type: infer one from the keywords present, else any value.
      types = schema.properties !== undefined || schema.additionalProperties !== undefined ? ["object"] : schema.items !== undefined ? ["array"] : [...TYPES.filter((t) => t !== "integer")];
    } else {
      const list = Array.isArray(raw) ? raw : [raw];
      for (const t of list) {
        if (!TYPES.includes(t as JsonType)) throw new SchemaError(join(path, "type"), `unknown type ${JSON.stringify(t)}; use one of ${TYPES.join(", ")}`);
      }
      types = list as JsonType[];
    }
    if (schema.nullable === true && !types.includes("null")) types = [...types, "null"];
    return types;
  }

  private typed(type: JsonType, schema: { readonly [k: string]: unknown }, path: string): Alternative {
    switch (type) {
      case "string":
        return this.string(schema, path);
      case "number":
      case "integer":
        return this.number(type, schema, path);
      case "boolean":
        return [this.once("boolean", () => [literal("true"), literal("false")])];
      case "null":
        return literal("null");
      case "object":
        return this.object(schema, path);
      case "array":
        return this.array(schema, path);
    }
  }

  private string(schema: { readonly [k: string]: unknown }, path: string): Alternative {
    const min = this.count(schema, "minLength", path, 0);
    const max = this.count(schema, "maxLength", path, Infinity);
    if (max < min) throw new SchemaError(join(path, "maxLength"), "maxLength is below minLength");
    if (min === 0 && max === Infinity) return [this.genericString()];
    const quote = literal('"');
    return [...quote, ...this.builder.repeat("string", [this.stringChar()], min, max), ...quote];
  }

  private number(type: "number" | "integer", schema: { readonly [k: string]: unknown }, path: string): Alternative {
    const bound = (key: string) => {
      const v = schema[key];
      if (v === undefined) return undefined;
      if (typeof v !== "number" || !Number.isFinite(v)) throw new SchemaError(join(path, key), `${key} must be a number`);
      return v;
    };
    const minimum = bound("minimum");
    const maximum = bound("maximum");
    const exclusiveMinimum = bound("exclusiveMinimum");
    const unsupported = (key: string) =>
      new SchemaError(join(path, key), `${key}: chorus constrains numbers to |x| < 10^15 and can add only a bound of 0 below (minimum: 0; for integers exclusiveMinimum: 0); remove the bound or widen it`);
    if (maximum !== undefined && maximum < BIG) throw unsupported("maximum");
    if (minimum !== undefined && minimum !== 0 && minimum > -BIG) throw unsupported("minimum");
    if (exclusiveMinimum !== undefined && !(type === "integer" && exclusiveMinimum === 0) && exclusiveMinimum > -BIG) throw unsupported("exclusiveMinimum");
    const positive = exclusiveMinimum === 0;
    const nonNegative = positive || minimum === 0;
    const digit = chars([0x30, 0x39]);
    const nonZero: Alternative = [chars([0x31, 0x39]), ...this.builder.repeat("digits", [digit], 0, MAX_DIGITS - 1)];
    const integerPart = positive ? nonZero : [this.once("int-part", () => [literal("0"), nonZero])];
    const sign: Alternative = nonNegative ? [] : [this.once("sign", () => [literal("-"), []])];
    if (type === "integer") return [...sign, ...integerPart];
    const fraction = this.once("fraction", () => [[...literal("."), ...this.builder.repeat("fraction-digits", [digit], 1, MAX_DIGITS)], []]);
    return [...sign, ...integerPart, fraction];
  }

  private object(schema: { readonly [k: string]: unknown }, path: string): Alternative {
    const properties = schema.properties as Record<string, JsonSchema> | undefined;
    if (properties !== undefined && (typeof properties !== "object" || properties === null || Array.isArray(properties))) {
      throw new SchemaError(join(path, "properties"), "properties must be an object of schemas");
    }
    const required = (schema.required ?? []) as unknown;
    if (!Array.isArray(required) || required.some((r) => typeof r !== "string")) throw new SchemaError(join(path, "required"), "required must be an array of property names");
    const names = Object.keys(properties ?? {});
    for (const r of required as string[]) {
      if (!names.includes(r)) throw new SchemaError(join(path, "required"), `'${r}' is required but not in properties; add it to properties or remove it from required`);
    }
    const additional = schema.additionalProperties as JsonSchema | undefined;
    if (names.length === 0) {
      if (additional === false) return literal("{}");
      return [additional === undefined || additional === true ? this.genericObject() : this.mapObject(this.compile(additional, join(path, "additionalProperties")))];
    }
    const sp = this.space();
    const member = (name: string): Alternative => [...literal(JSON.stringify(name)), ...literal(":"), sp, ...this.compile(properties![name]!, join(join(path, "properties"), name))];
    const comma: Alternative = [...literal(","), sp];
    // rest(i, after): the properties from i on, `after` when one was already written (so a comma comes first).
    const rest = new Map<string, Alternative>();
    const restOf = (i: number, after: boolean): Alternative => {
      if (i === names.length) return [];
      const key = `${i},${after}`;
      const known = rest.get(key);
      if (known) return known;
      const present: Alternative = [...(after ? comma : []), ...member(names[i]!), ...restOf(i + 1, true)];
      const alternatives = (required as string[]).includes(names[i]!) ? [present] : [present, restOf(i + 1, after)];
      const ref: Alternative = [this.builder.helper("props", alternatives)];
      rest.set(key, ref);
      return ref;
    };
    return [...literal("{"), ...restOf(0, false), ...literal("}")];
  }

  private array(schema: { readonly [k: string]: unknown }, path: string): Alternative {
    if (Array.isArray(schema.items)) throw new SchemaError(join(path, "items"), "tuple schemas (items as an array) are not supported; use one schema for all items");
    const item = schema.items === undefined ? [this.genericValue()] : this.compile(schema.items as JsonSchema, join(path, "items"));
    const min = this.count(schema, "minItems", path, 0);
    const max = this.count(schema, "maxItems", path, Infinity);
    if (max < min) throw new SchemaError(join(path, "maxItems"), "maxItems is below minItems");
    if (max === 0) return literal("[]");
    const more = this.builder.repeat("items", [...literal(","), this.space(), ...item], Math.max(0, min - 1), max - 1);
    const body: Alternative = [...item, ...more];
    return [...literal("["), ...(min === 0 ? [this.builder.helper("items", [body, []])] : body), ...literal("]")];
  }

  private reference(schema: { readonly [k: string]: unknown }, path: string): RuleRef {
    const ref = schema.$ref;
    const match = typeof ref === "string" ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    if (!match) throw new SchemaError(join(path, "$ref"), `only local references #/$defs/NAME or #/definitions/NAME are supported, got ${JSON.stringify(ref)}`);
    let refs = this.refs.get(this.root);
    if (!refs) this.refs.set(this.root, (refs = new Map()));
    const known = refs.get(ref as string);
    if (known) return known;
    const defs = typeof this.root === "object" ? (this.root[match[1]!] as Record<string, JsonSchema> | undefined) : undefined;
    const target = defs?.[decodeURIComponent(match[2]!)];
    if (target === undefined) throw new SchemaError(join(path, "$ref"), `${ref} does not exist in the schema`);
    const name = `ref-${this.refCount++}`;
    const rule = this.builder.ref(name);
    refs.set(ref as string, rule);
    this.builder.define(name, [this.compile(target, `${match[1]}.${match[2]}`)]);
    return rule;
  }

  private count(schema: { readonly [k: string]: unknown }, key: string, path: string, otherwise: number): number {
    const v = schema[key];
    if (v === undefined) return otherwise;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new SchemaError(join(path, key), `${key} must be an integer ≥ 0`);
    if (v > 1000) throw new SchemaError(join(path, key), `${key} above 1000 is not supported`);
    return v;
  }

  /** A rule built once and shared by every place that needs it. */
  private once(name: string, alternatives: () => Alternative[]): RuleRef {
    let ref = this.shared.get(name);
    if (!ref) {
      ref = this.builder.ref(name);
      this.shared.set(name, ref);
      this.builder.define(name, alternatives());
    }
    return ref;
  }

  private stringChar(): RuleRef {
    return this.once("char", () => [
      [chars([0x22, 0x22, 0x5c, 0x5c, 0x00, 0x1f], true)],
      [...literal("\\"), this.once("escape", () => [[chars([0x22, 0x22, 0x5c, 0x5c, 0x2f, 0x2f, 0x62, 0x62, 0x66, 0x66, 0x6e, 0x6e, 0x72, 0x72, 0x74, 0x74])], [...literal("u"), ...hex4()]])],
    ]);
  }

  private genericString(): RuleRef {
    return this.once("string", () => [[...literal('"'), ...this.builder.repeat("string", [this.stringChar()], 0, Infinity), ...literal('"')]]);
  }

  private genericValue(): RuleRef {
    return this.once("value", () => [
      [this.genericObject()],
      [this.once("array", () => [[...literal("["), this.builder.helper("elements", [[this.genericValue(), ...this.builder.repeat("elements", [...literal(","), this.space(), this.genericValue()], 0, Infinity)], []]), ...literal("]")]])],
      [this.genericString()],
      this.number("number", {}, ""),
      [this.once("boolean", () => [literal("true"), literal("false")])],
      literal("null"),
    ]);
  }

  private genericObject(): RuleRef {
    return this.once("object", () => [this.mapObjectBody([this.genericValue()])]);
  }

  /** An object with any keys, each value matching `value`. */
  private mapObject(value: Alternative): RuleRef {
    return this.builder.helper("map", [this.mapObjectBody(value)]);
  }

  private mapObjectBody(value: Alternative): Alternative {
    const pair: Alternative = [this.genericString(), ...literal(":"), this.space(), ...value];
    const pairs = this.builder.helper("pairs", [[...pair, ...this.builder.repeat("pairs", [...literal(","), this.space(), ...pair], 0, Infinity)], []]);
    return [...literal("{"), pairs, ...literal("}")];
  }
}

function hex4(): GrammarElement[] {
  const hex = chars([0x30, 0x39, 0x41, 0x46, 0x61, 0x66]);
  return [hex, hex, hex, hex];
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** The grammar of the JSON texts a schema allows. */
export function jsonSchemaGrammar(schema: JsonSchema): Grammar {
  const compiler = new JsonGrammarCompiler();
  return compiler.build(compiler.value(schema, ""));
}

/** The grammar of any JSON object. */
export function jsonObjectGrammar(): Grammar {
  const compiler = new JsonGrammarCompiler();
  return compiler.build(compiler.anyObject());
}
