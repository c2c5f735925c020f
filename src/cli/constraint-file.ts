import { readFile } from "node:fs/promises";
import { grammarConstraint, jsonSchemaConstraint, GrammarError, type JsonSchema, type TextConstraint } from "../constraints/index.js";

/** The constraint `--json-schema FILE` or `--grammar FILE` asks for; a bad file is an error naming it and the problem. */
export async function constraintFromFiles(flags: { jsonSchema?: string; grammar?: string }): Promise<TextConstraint | undefined> {
  if (flags.jsonSchema !== undefined && flags.grammar !== undefined) throw new Error("give --json-schema or --grammar, not both");
  const file = flags.jsonSchema ?? flags.grammar;
  if (file === undefined) return undefined;
  const option = flags.jsonSchema !== undefined ? "--json-schema" : "--grammar";
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new Error(`${option} ${file}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    if (flags.grammar !== undefined) return grammarConstraint(text);
    let schema: JsonSchema;
    try {
      schema = JSON.parse(text) as JsonSchema;
    } catch (error) {
      throw new GrammarError(`not valid JSON (${(error as Error).message}); the file must hold one JSON schema`);
    }
    return jsonSchemaConstraint(schema);
  } catch (error) {
    if (error instanceof GrammarError) throw new Error(`${option} ${file}: ${error.message}`);
    throw error;
  }
}
