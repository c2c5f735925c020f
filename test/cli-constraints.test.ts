import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/temp-dir.js";
import { chorus } from "./helpers/chorus-cli.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples/tinystories.yaml");

test("chorus generate --json-schema FILE and --grammar FILE: the output follows them; a bad file names itself and the problem", async () => {
  const dir = tempDir("chorus-cli-constraints-");
  const schema = path.join(dir, "card.json");
  writeFileSync(schema, JSON.stringify({ type: "object", properties: { name: { type: "string", maxLength: 20 }, age: { type: "integer", minimum: 0 } }, required: ["name", "age"], additionalProperties: false }));
  const card = await chorus("generate", "-c", example, "Lily's card: ", "--json-schema", schema, "--max-tokens", "60");
  assert.equal(card.code, 0, card.stderr);
  const value = JSON.parse(card.stdout) as { name: string; age: number };
  assert.equal(typeof value.name, "string");
  assert.ok(Number.isInteger(value.age) && value.age >= 0);

  const grammar = path.join(dir, "story.gbnf");
  writeFileSync(grammar, 'root ::= "The " ("cat" | "dog") " was " [a-z]+ "."\n');
  const story = await chorus("generate", "-c", example, "Once upon a time. ", "--grammar", grammar, "--max-tokens", "30");
  assert.equal(story.code, 0, story.stderr);
  assert.match(story.stdout.trim(), /^The (cat|dog) was [a-z]+\.$/);

  const bad = path.join(dir, "bad.json");
  writeFileSync(bad, JSON.stringify({ type: "string", pattern: "^a" }));
  const refused = await chorus("generate", "-c", example, "x", "--json-schema", bad);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /--json-schema .*bad\.json: pattern: 'pattern' is not supported/);
  const missing = await chorus("generate", "-c", example, "x", "--grammar", path.join(dir, "none.gbnf"));
  assert.match(missing.stderr, /--grammar .*none\.gbnf: cannot read the file \(ENOENT\)/);
});
