import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { Ensemble } from "../src/engine/ensemble.js";
import { LlamaMember } from "../src/members/llama.js";
import { PAIR, S260K, TS656K } from "./helpers/models.js";
import { tempDir } from "./helpers/temp-dir.js";

const tmp = tempDir("chorus-bad-");

describe("bad input gets a clear error, never a crash", () => {
  test("missing and non-GGUF model files", async () => {
    await assert.rejects(LlamaMember.load({ name: "ghost", modelPath: path.join(tmp, "nope.gguf") }), /member 'ghost'.*no such file/);
    const text = path.join(tmp, "notes.gguf");
    writeFileSync(text, "these are notes, not weights");
    await assert.rejects(LlamaMember.load({ name: "notes", modelPath: text }), /member 'notes'.*not a GGUF file/);
    await assert.rejects(LlamaMember.load({ name: "dir", modelPath: tmp }), /member 'dir'.*directory/);
  });

  test("weights, names and gating are checked when the ensemble is built", async () => {
    await assert.rejects(Ensemble.create({ members: [{ ...PAIR[0], weight: -1 }, PAIR[1]] }), /weights must be finite and ≥ 0/);
    await assert.rejects(Ensemble.create({ members: [{ ...PAIR[0], weight: 0 }, { ...PAIR[1], weight: 0 }] }), /must not all be zero/);
    await assert.rejects(Ensemble.create({ members: [{ name: "x", model: S260K }, { name: "x", model: TS656K }] }), /two members are named 'x'/);
    await assert.rejects(
      Ensemble.create({ gate: { threshold: 0.9 }, members: [{ name: "a", model: S260K }, { name: "b", model: TS656K }] }),
      /gating needs a primary member/,
    );
  });

  test("a prompt longer than a member's context names the member and its limit", async () => {
    const ensemble = await Ensemble.create({ members: PAIR, contextSize: 32 });
    try {
      // llama.cpp rounds the context up to 256 tokens.
      const long = "Once upon a time there was a little girl who liked to play in the park with her dog every day. ".repeat(20);
      // 1 900 bytes: refused from its length alone (s260k's longest token is 7 bytes).
      await assert.rejects(ensemble.generate({ text: long }), /member 's260k'.*the prompt is at least 273 tokens \(1900 bytes, and no token of this member spells more than 7\) but this member's context holds 256/);
      // Short enough to pass that bound, too long once tokenized.
      await assert.rejects(ensemble.generate({ text: long.slice(0, 1500) }), /member 's260k'.*the prompt is \d+ tokens but this member's context holds 256/);
      await assert.rejects(ensemble.generate({ text: "Hi" }, { only: "nobody" }), /no member has that name/);
      await assert.rejects(ensemble.generate({ text: "Hi" }, { weights: [1] }), /expected 2 weights/);
    } finally {
      await ensemble.dispose();
    }
  });

  test("characters TinyStories-656K cannot encode become its unknown token instead of aborting llama.cpp", async () => {
    const ensemble = await Ensemble.create({ members: PAIR, maxTokens: 12 });
    try {
      for (const prompt of ["The café ☃ was warm. 🐶 Lily said", "Ünïcödé ñ — “quotes” and a tab\tand"]) {
        const both = await ensemble.generate({ text: prompt });
        assert.ok(both.steps > 0);
        const alone = await ensemble.generate({ text: prompt }, { only: "ts656k" });
        assert.ok(alone.steps > 0);
      }
      // s260k spells "é" with byte tokens; ts656k must take in text it cannot encode mid-generation.
      const result = await ensemble.generate({ text: "Lily said" }, { weights: [1, 0.001], maxTokens: 20 });
      assert.ok(result.steps > 0);
    } finally {
      await ensemble.dispose();
    }
  });

  test("a chat prompt with a character the member cannot encode is refused with the character named", async () => {
    const member = await LlamaMember.load({
      name: "ts656k",
      modelPath: TS656K,
      chatTemplate: "{% for m in messages %}{{ m.content }}\n{% endfor %}",
    });
    try {
      assert.throws(() => member.promptTokens({ messages: [{ role: "user", content: "snow ☃" }] }), /member 'ts656k'.*"☃".*cannot encode/);
      // A chat prompt too long for the context is refused from its rendered length, before llama.cpp tokenizes it.
      assert.throws(() => member.promptTokens({ messages: [{ role: "user", content: "Lily and Ben ".repeat(80_000) }] }), /member 'ts656k': the prompt is at least \d+ tokens \(1040001 bytes, and no token of this member spells more than \d+\) but this member's context holds 512/);
      const ok = member.promptTokens({ messages: [{ role: "user", content: "Once upon a time" }] });
      assert.ok(ok.prefix.length > 3);
      // A member left out of the vote is not asked to tokenize the prompt at all.
      const other = await LlamaMember.load({ name: "s260k", modelPath: S260K });
      try {
        const ensemble = Ensemble.fromMembers({ members: [{ name: "ts656k", model: TS656K }, { name: "s260k", model: S260K }], maxTokens: 4 }, [member, other]);
        const alone = await ensemble.generate({ messages: [{ role: "user", content: "snow ☃" }] }, { only: "s260k" });
        assert.ok(alone.steps > 0);
        await assert.rejects(ensemble.generate({ messages: [{ role: "user", content: "snow ☃" }] }), /member 'ts656k'.*cannot encode/);
      } finally {
        await other.dispose();
      }
    } finally {
      await member.dispose();
    }
  });
});
