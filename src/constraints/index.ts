/** Constraints on generated text: GBNF grammars and JSON schemas, recognized byte by byte. */
import { parseGbnf } from "./gbnf.js";
import { jsonObjectGrammar, jsonSchemaGrammar, type JsonSchema } from "./json-schema.js";
import { GrammarConstraint } from "./matcher.js";

export { ConstraintError, type ConstraintState, type TextConstraint } from "./constraint.js";
export { GrammarError } from "./grammar.js";
export { SchemaError, JsonGrammarCompiler, type JsonSchema } from "./json-schema.js";
export { GrammarConstraint } from "./matcher.js";
export { parseGbnf } from "./gbnf.js";

/** Text in a GBNF grammar (llama.cpp's notation), starting at its `root` rule. */
export function grammarConstraint(gbnf: string): GrammarConstraint {
  return new GrammarConstraint(parseGbnf(gbnf), "the grammar");
}

/** JSON that validates against `schema` (see json-schema.ts for the subset and the layout). */
export function jsonSchemaConstraint(schema: JsonSchema, name?: string): GrammarConstraint {
  return new GrammarConstraint(jsonSchemaGrammar(schema), name ? `JSON schema '${name}'` : "the JSON schema");
}

/** Any JSON object. */
export function jsonObjectConstraint(): GrammarConstraint {
  return new GrammarConstraint(jsonObjectGrammar(), "a JSON object");
}
