/**
 * What a constraint costs per step: the same greedy GaC generation without and with a JSON
 * schema, on the shared TinyStories pair and (when generated, see examples/bench-large-vocab.yaml)
 * on the random-weight 32k + 152k members. "constraint" is the time spent filtering the members'
 * candidates (inside the engine's extraction time).
 *
 *   node --import tsx bench/constrained.ts [--steps 64] [--json]
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { Ensemble, type EnsembleSpec, type MethodName } from "../src/engine/ensemble.js";
import { jsonSchemaConstraint } from "../src/constraints/index.js";
import { StepConstraint } from "../src/engine/constrained-candidates.js";
import { repoRoot } from "./make-model.js";

const SCHEMA = {
  type: "object",
  properties: { name: { type: "string" }, age: { type: "integer" }, tags: { type: "array", items: { type: "string" }, maxItems: 3 } },
  required: ["name", "age", "tags"],
  additionalProperties: false,
};

/** Times every candidate filtering (all of what a constraint costs a step, apart from forced text). */
const clock = { ms: 0 };
const filter = StepConstraint.prototype.filter;
StepConstraint.prototype.filter = function (this: StepConstraint, candidates) {
  const t0 = performance.now();
  try {
    return filter.call(this, candidates);
  } finally {
    clock.ms += performance.now() - t0;
  }
};

const { values } = parseArgs({ options: { steps: { type: "string", default: "64" }, json: { type: "boolean", default: false }, methods: { type: "string", default: "gac,unite" } } });
const steps = Number(values.steps);
const methods = values.methods!.split(",") as MethodName[];
const shared = path.resolve(repoRoot, "../shared/models");
const large = path.join(repoRoot, ".bench-models");
const setups: { name: string; spec: EnsembleSpec; prompt: string }[] = [
  {
    name: "TinyStories pair (512 + 2048 tokens)",
    prompt: "Lily was a little girl. Here is her card: ",
    spec: { threads: 1, members: [{ name: "s260k", model: path.join(shared, "stories260K-f32.gguf") }, { name: "ts656k", model: path.join(shared, "TinyStories-656K-f32.gguf") }] },
  },
];
if (existsSync(path.join(large, "spm32k.gguf")) && existsSync(path.join(large, "qwen2-152k.gguf"))) {
  setups.push({
    name: "generated 32k SPM + 152k Qwen2",
    prompt: "Here is the card of the user: ",
    spec: { threads: 1, contextSize: 1024, members: [{ name: "spm32k", model: path.join(large, "spm32k.gguf") }, { name: "qwen152k", model: path.join(large, "qwen2-152k.gguf") }] },
  });
} else {
  console.error("(generate .bench-models/spm32k.gguf and qwen2-152k.gguf with bench/make-model.ts for the large-vocabulary rows)");
}

const rows: Record<string, unknown>[] = [];
for (const setup of setups) {
  const ensemble = await Ensemble.create(setup.spec);
  try {
    await ensemble.generate({ text: setup.prompt }, { maxTokens: 4 }); // warm up
    for (const method of methods) {
      for (const constrained of [false, true]) {
        clock.ms = 0;
        const constraint = constrained ? jsonSchemaConstraint(SCHEMA) : undefined;
        const r = await ensemble.generate({ text: setup.prompt }, { method, maxTokens: steps, constraint });
        rows.push({
          setup: setup.name,
          system: `${method}${constrained ? " + JSON schema" : ""}`,
          steps: r.steps,
          msPerStep: r.timings.totalMs / r.steps,
          membersMsPerStep: (r.timings.totalMs - r.timings.engineMs) / r.steps,
          engineMsPerStep: r.timings.engineMs / r.steps,
          constraintMsPerStep: clock.ms / r.steps,
          escalatedSteps: r.escalatedSteps,
          finish: r.finishReason,
          valid: constrained ? isJson(r.text) : null,
        });
      }
    }
  } finally {
    await ensemble.dispose();
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

if (values.json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  const f = (n: unknown) => (typeof n === "number" ? (Number.isInteger(n) ? String(n) : n.toFixed(2)) : String(n));
  console.log("| setup | system | steps | ms/step | members ms/step | engine ms/step | constraint ms/step | escalated steps | finish | parses |");
  console.log("|---|---|---:|---:|---:|---:|---:|---:|---|---|");
  for (const r of rows) console.log(`| ${[r.setup, r.system, r.steps, r.msPerStep, r.membersMsPerStep, r.engineMsPerStep, r.constraintMsPerStep, r.escalatedSteps, r.finish, r.valid ?? "—"].map(f).join(" | ")} |`);
}
