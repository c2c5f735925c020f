/**
 * Long prompts are tokenized window by window (linear time instead of llama.cpp's quadratic SPM,
 * and a token limit stops early): the tokens must be the ones the whole text gets, on every
 * vocabulary we have.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { loadLlama } from "../src/members/llama.js";
import { ggufTokenizerSource } from "../src/members/member-tokenizer.js";
import { EncodeError, TokenLimitError, tokenizeExact } from "../src/members/exact-tokenize.js";
import { textToSurface } from "../src/tokens/vocabulary.js";
import { S260K, SHARED, TINYSTORIES_DEV, TS656K } from "./helpers/models.js";

const VOCABS = path.join(SHARED, "vocab");
const files = [S260K, TS656K, ...readdirSync(VOCABS).filter((f) => f.endsWith(".gguf")).map((f) => path.join(VOCABS, f))];

const inputs = readdirSync(VOCABS)
  .filter((f) => f.endsWith(".inp"))
  .flatMap((f) => readFileSync(path.join(VOCABS, f), "utf8").split("\n__ggml_vocab_test__\n"));
const texts: Record<string, string> = {
  stories: readFileSync(TINYSTORIES_DEV, "utf8").slice(0, 24_000),
  "llama.cpp's tokenizer tests": [...new Set(inputs)].join("\n").repeat(3),
  cjk: "中文字符測試，這是一個句子。".repeat(400),
  emoji: "🐶🐱 🦙🦙 ".repeat(500),
  code: "function f(x) {\n        return x  +  1;\n}\n\n\n    // ---------------- //\n".repeat(150),
};

describe("windowed tokenization equals whole-text tokenization", () => {
  const models: { name: string; model: LlamaModel }[] = [];
  before(async () => {
    const llama = await loadLlama();
    for (const file of files) models.push({ name: path.basename(file), model: await llama.loadModel({ modelPath: file, vocabOnly: true }) });
  });
  after(async () => {
    for (const { model } of models) await model.dispose();
  });

  test("on every vocabulary, for prose, llama.cpp's test inputs, CJK, emoji and code", () => {
    const differences: string[] = [];
    let compared = 0;
    for (const { name, model } of models) {
      const source = ggufTokenizerSource(model);
      for (const [kind, text] of Object.entries(texts)) {
        const bytes = textToSurface(text);
        let whole;
        try {
          whole = tokenizeExact(source.vocabulary, source.tokenizePlain, bytes, "start", { windowBytes: Infinity });
        } catch (error) {
          if (error instanceof EncodeError) continue; // a vocabulary without byte tokens or an unknown token (TinyStories-656K)
          throw error;
        }
        compared++;
        for (const windowBytes of [4096, 2048, 600]) {
          const windowed = tokenizeExact(source.vocabulary, source.tokenizePlain, bytes, "start", { windowBytes });
          assert.equal(windowed.byteLengths.reduce((a, b) => a + b, 0), bytes.length, `${name} ${kind}: the tokens spell the text`);
          const at = windowed.ids.findIndex((id, i) => id !== whole.ids[i]);
          if (at >= 0 || windowed.ids.length !== whole.ids.length) differences.push(`${name} ${kind} window ${windowBytes}: first difference at token ${at} of ${whole.ids.length}`);
        }
      }
    }
    assert.deepEqual(differences, []);
    assert.ok(compared >= files.length * 4, `${compared} vocabulary × text pairs compared`);
  });

  test("a token limit stops tokenizing soon after the limit, not at the end of the text", () => {
    const { model } = models[0]!;
    const source = ggufTokenizerSource(model);
    const bytes = textToSurface("中文字符測試".repeat(60_000)); // 1 MB, 3 byte tokens per character on s260k
    const started = performance.now();
    assert.throws(() => tokenizeExact(source.vocabulary, source.tokenizePlain, bytes, "start", { maxTokens: 4096 }), (e: unknown) => e instanceof TokenLimitError && e.limit === 4096);
    const ms = performance.now() - started;
    // The whole megabyte takes tens of seconds here (quadratic); a few windows take milliseconds.
    assert.ok(ms < 5000, `stopped after ${Math.round(ms)} ms`);
  });
});
