import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { Ensemble, type MethodName, type Step } from "../src/engine/ensemble.js";
import { ConstraintError, grammarConstraint, jsonSchemaConstraint } from "../src/constraints/index.js";
import { S260K, TS656K } from "./helpers/models.js";

const PROMPT = "Lily was a little girl. Here is her card: ";
const PERSON = {
  type: "object",
  properties: { name: { type: "string" }, age: { type: "integer" }, likes: { type: "array", items: { enum: ["cats", "dogs", "cake"] }, maxItems: 2 } },
  required: ["name", "age", "likes"],
  additionalProperties: false,
} as const;

describe("constrained generation on the TinyStories pair", () => {
  let cacheDir: string;
  let ensemble: Ensemble;
  const validate = new Ajv2020({ strict: false }).compile(PERSON);

  before(async () => {
    cacheDir = mkdtempSync(path.join(os.tmpdir(), "chorus-constrained-"));
    // EVA and DeePEn write only what the main member spells: s260k has byte tokens, TinyStories-656K has no '{'.
    ensemble = await Ensemble.create({
      threads: 1,
      main: "s260k",
      alignCache: { cacheDir },
      members: [
        { name: "s260k", model: S260K, primary: true },
        { name: "ts656k", model: TS656K },
      ],
    });
  });
  after(async () => {
    await ensemble.dispose();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  for (const method of ["gac", "unite", "eva", "deepen", "bytes"] as MethodName[]) {
    test(`${method}: greedy and sampled outputs parse and validate against the schema, and end by themselves`, async () => {
      for (const temperature of [0, 1]) {
        for (const maxTokens of [48, 32]) {
          const result = await ensemble.generate({ text: PROMPT }, { method, constraint: jsonSchemaConstraint(PERSON), maxTokens, sampling: { temperature, seed: 11 } });
          const value: unknown = JSON.parse(result.text);
          assert.ok(validate(value), `${result.text}: ${JSON.stringify(validate.errors)}`);
          assert.equal(result.finishReason, "stop", result.text);
          assert.ok(result.steps <= maxTokens);
        }
      }
    });
  }

  test("gated: the primary deciding alone stays inside the language too", async () => {
    const result = await ensemble.generate({ text: PROMPT }, { gate: { threshold: 0.5 }, constraint: jsonSchemaConstraint(PERSON), maxTokens: 40 });
    assert.ok(validate(JSON.parse(result.text)), result.text);
    assert.ok(result.ensembledSteps < result.steps, "some steps were decided by the primary alone");
  });

  test("a GBNF grammar: the members choose among its texts", async () => {
    const grammar = grammarConstraint(`root ::= "She was " ("happy" | "sad" | "big") "." | "The end."`);
    for (const temperature of [0, 1.5]) {
      const result = await ensemble.generate({ text: "Once upon a time there was a girl. " }, { constraint: grammar, maxTokens: 20, sampling: { temperature, seed: 5 } });
      assert.match(result.text, /^(She was (happy|sad|big)\.|The end\.)$/);
    }
  });

  test("text the constraint forces is written without a vote, at most 16 bytes a step", async () => {
    const fixed = jsonSchemaConstraint({ const: { greeting: "hello there, this is a long fixed text" } });
    const steps: Step[] = [];
    for await (const step of ensemble.stream({ text: PROMPT }, { constraint: fixed, maxTokens: 60 })) steps.push(step);
    assert.equal(steps.map((s) => s.text).join(""), '{"greeting":"hello there, this is a long fixed text"}');
    assert.deepEqual(steps.map((s) => s.bytes.length), [16, 16, 16, 5]);
    assert.ok(steps.every((s) => !s.ensembled));
  });

  test("a constraint that cannot be finished in max_tokens is refused before generating", async () => {
    await assert.rejects(
      ensemble.generate({ text: PROMPT }, { constraint: jsonSchemaConstraint(PERSON), maxTokens: 10 }),
      (e: Error) => e instanceof ConstraintError && /allows is 30 bytes, and this generation has room for 9 \(a step or a token may write one byte\); raise max_tokens/.test(e.message),
    );
  });

  test("log-probabilities are the combined scores: the chosen piece's equals its score, the alternatives sum to at most 1", async () => {
    for (const method of ["gac", "unite", "deepen", "bytes"] as MethodName[]) {
      for (const constrained of [false, true]) {
        const steps: Step[] = [];
        const options = { method, maxTokens: 24, logprobs: 5, memberLogprobs: true, trace: true, ...(constrained ? { constraint: jsonSchemaConstraint(PERSON), maxTokens: 40 } : {}) };
        for await (const step of ensemble.stream({ text: PROMPT }, options)) if (step.logprobs) steps.push(step);
        assert.ok(steps.length > 10);
        for (const step of steps) {
          const lp = step.logprobs!;
          assert.equal(lp.bytes, step.bytes);
          assert.ok(Math.abs(lp.logprob - Math.log(step.trace!.winner.probability)) < 1e-12, `${method}: ${lp.logprob} vs ${step.trace!.winner.probability}`);
          const mass = lp.top.reduce((sum, t) => sum + Math.exp(t.logprob), 0);
          assert.ok(mass <= 1 + 1e-9, `${method}: alternatives sum to ${mass}`);
          assert.ok(lp.top.length <= 5 && lp.top.length > 0);
          for (let k = 1; k < lp.top.length; k++) assert.ok(lp.top[k]!.logprob <= lp.top[k - 1]!.logprob);
          assert.ok(lp.top.some((t) => t.bytes === lp.bytes) || lp.top.every((t) => t.logprob >= lp.logprob), "the chosen piece ranks or is beaten by all listed");
          assert.deepEqual(lp.members!.map((m) => m.name), step.trace!.members.map((m) => m.name));
        }
        // Text the constraint forces (`{"name": "`) is one step with no voters and probability 1.
        const forced = steps.filter((s) => s.trace!.members.length === 0);
        if (constrained) assert.ok(forced.length > 0 && forced.every((s) => s.logprobs!.logprob === 0 && !s.ensembled), `${method}: forced steps`);
        else assert.equal(forced.length, 0);
      }
    }
  });
});
