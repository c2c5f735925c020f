import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { HfTokenizerError, hfTokenizerSource } from "../src/members/hf-tokenizer.js";
import { MemberTokenizer, ggufTokenizerSource, type TokenizerSource } from "../src/members/member-tokenizer.js";
import { LlamaMember } from "../src/members/llama.js";
import { RemoteMember } from "../src/members/remote.js";
import { MemberError } from "../src/members/member.js";
import { Ensemble } from "../src/engine/ensemble.js";
import { loadEnsembleConfig } from "../src/config/load.js";
import { makeTinyQwen2Model } from "./helpers/tiny-qwen2.js";
import { SHARED } from "./helpers/models.js";
import { readVectors } from "./helpers/vocab-vectors.js";
import { ServerDouble } from "./helpers/server-double.js";

const HF = path.join(SHARED, "vocab/hf");
const VOCAB = path.join(SHARED, "vocab");

/** Each tokenizer.json in ../shared and the GGUF llama.cpp's converter wrote from it. */
const PAIRS = [
  { name: "Llama-3", hf: "llama3", gguf: "ggml-vocab-llama-bpe.gguf" },
  { name: "Qwen3", hf: "qwen3", gguf: "ggml-vocab-qwen2.gguf" },
  { name: "GPT-NeoX-20B", hf: "gpt-neox-20b", gguf: "ggml-vocab-gpt-neox.gguf" },
] as const;

let llama: Llama;
const ggufModels = new Map<string, LlamaModel>();
const hfSources = new Map<string, TokenizerSource>();

before(async () => {
  llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  for (const pair of PAIRS) {
    ggufModels.set(pair.hf, await llama.loadModel({ modelPath: path.join(VOCAB, pair.gguf), vocabOnly: true }));
    hfSources.set(pair.hf, hfTokenizerSource(path.join(HF, pair.hf, "tokenizer.json")));
  }
});
after(async () => {
  for (const model of ggufModels.values()) await model.dispose();
});

describe("a Hugging Face tokenizer.json as a member's tokenizer", () => {
  for (const pair of PAIRS) {
    test(`${pair.name}: the vocabulary equals the one llama.cpp loads from the converted GGUF`, () => {
      const ours = hfSources.get(pair.hf)!.vocabulary;
      const theirs = ggufTokenizerSource(ggufModels.get(pair.hf)!).vocabulary;
      if (pair.hf === "gpt-neox-20b") {
        // The GGUF is padded to the model's vocab_size (config.json, not in ../shared): 155 unused ids.
        assert.equal(ours.size, 50277);
        assert.equal(theirs.size, 50432);
        for (let id = ours.size; id < theirs.size; id++) assert.equal(ggufModels.get(pair.hf)!.fileInfo.metadata.tokenizer.ggml.tokens[id], `[PAD${id}]`);
      } else {
        assert.equal(ours.size, theirs.size);
      }
      let surfaceDiffs = 0;
      let kindDiffs = 0;
      for (let id = 0; id < ours.size; id++) {
        if (ours.surfaces[id] !== theirs.surfaces[id]) surfaceDiffs++;
        if (ours.kinds[id] !== theirs.kinds[id]) kindDiffs++;
      }
      assert.equal(surfaceDiffs, 0, "surfaces");
      assert.equal(kindDiffs, 0, "kinds");
      // (The GGUF's padding tokens are user-defined "[PAD<id>]" texts; chorus reads them as unused.)
      assert.deepEqual(ours.bySurface, new Map([...theirs.bySurface].filter(([, id]) => id < ours.size)));
      if (pair.hf !== "gpt-neox-20b") {
        // GPT-NeoX's folder has no tokenizer_config.json, so no end token is named there.
        assert.deepEqual([...ours.eog].sort(), [...theirs.eog].sort());
      }
    });
  }

  for (const pair of PAIRS.filter((p) => p.hf !== "gpt-neox-20b")) {
    test(`${pair.name}: llama.cpp's tokenizer test vectors give the expected ids`, () => {
      const { texts, ids } = readVectors(path.join(VOCAB, pair.gguf));
      const source = hfSources.get(pair.hf)!;
      assert.equal(texts.length, ids.length);
      for (let i = 0; i < texts.length; i++) {
        const text = Buffer.from(texts[i]!, "latin1").toString("utf8");
        assert.deepEqual([...source.tokenizePlain(text)], ids[i], JSON.stringify(text));
      }
    });
  }

  test("prompts and continuations tokenize as with the GGUF; the prompt's BOS follows the Hugging Face files", () => {
    const texts = ["Once upon a time, there was a little", " café naïve 你好 🎉 <|im_end|> tail", "x = 12345;\n\tif (y) {"];
    // GPT-NeoX's GGUF predates llama.cpp's pre-tokenizer types, so it splits text differently from Hugging Face.
    for (const pair of PAIRS.filter((p) => p.hf !== "gpt-neox-20b")) {
      const hf = new MemberTokenizer("hf", hfSources.get(pair.hf)!);
      const gguf = new MemberTokenizer("gguf", ggufTokenizerSource(ggufModels.get(pair.hf)!));
      for (const text of texts) {
        assert.deepEqual(hf.promptTokens({ text }).text, gguf.promptTokens({ text }).text, `${pair.name} ${JSON.stringify(text)}`);
        const bytes = Buffer.from(text, "utf8").toString("latin1");
        assert.deepEqual(hf.tokenizeContinuation(bytes), gguf.tokenizeContinuation(bytes), `${pair.name} continuation`);
      }
    }
    // GPT-NeoX: Hugging Face's ids spell the text exactly (no fallback to longest-match).
    const neox = hfSources.get("gpt-neox-20b")!;
    for (const text of texts) {
      assert.deepEqual(new MemberTokenizer("n", neox).promptTokens({ text }).text.ids, [...neox.tokenizePlain(text)], text);
    }
    // Qwen3 adds no BOS; this Llama-3 tokenizer.json (Meta's first upload) has no TemplateProcessing, so
    // Hugging Face (and vLLM) add none, while llama.cpp's converter sets add_bos_token for llama-bpe.
    assert.deepEqual(new MemberTokenizer("q", hfSources.get("qwen3")!).promptTokens({ text: "Hi" }).prefix, []);
    assert.deepEqual(new MemberTokenizer("l", hfSources.get("llama3")!).promptTokens({ text: "Hi" }).prefix, []);
  });

  test("special tokens' texts: characters in plain text, tokens in a rendered chat prompt", () => {
    const qwen = hfSources.get("qwen3")!;
    const plain = qwen.tokenizePlain("<|im_end|>");
    assert.ok(plain.length > 1 && !plain.includes(151645), `got ${plain.join(",")}`);
    const hf = new MemberTokenizer("hf", qwen);
    const config = JSON.parse(readFileSync(path.join(HF, "qwen3/tokenizer_config.json"), "utf8")) as { chat_template: string };
    const gguf = new MemberTokenizer("gguf", ggufTokenizerSource(ggufModels.get("qwen3")!), config.chat_template);
    assert.equal(hf.hasChatTemplate, true);
    const messages = [
      { role: "system" as const, content: "You are terse." },
      { role: "user" as const, content: "Write <|im_end|> as text, then 2+2?" },
    ];
    const ours = hf.promptTokens({ messages });
    assert.deepEqual(ours, gguf.promptTokens({ messages }));
    assert.equal(ours.prefix[0], 151644); // <|im_start|>
    // As with Hugging Face's apply_chat_template and llama.cpp: the rendered prompt's special texts are all parsed,
    // including one a user typed.
    assert.equal(ours.prefix.filter((id) => id === 151645).length, 3);
  });
});

describe("tokenizer.json: bad input", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), "chorus-hf-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a missing file, a file that is not JSON, and a tokenizer chorus cannot read exactly each get a clear error", () => {
    assert.throws(() => hfTokenizerSource(path.join(dir, "absent.json")), (e: unknown) => e instanceof HfTokenizerError && /cannot read the tokenizer file .*ENOENT/.test(e.message));
    writeFileSync(path.join(dir, "broken.json"), '{"model": ');
    assert.throws(() => hfTokenizerSource(path.join(dir, "broken.json")), (e: unknown) => e instanceof HfTokenizerError && /is not valid JSON/.test(e.message));
    writeFileSync(path.join(dir, "other.json"), '{"hello": 1}');
    assert.throws(() => hfTokenizerSource(path.join(dir, "other.json")), /is not a Hugging Face tokenizer\.json/);
    writeFileSync(path.join(dir, "wordpiece.json"), JSON.stringify({ model: { type: "WordPiece", vocab: { a: 0 } }, added_tokens: [] }));
    assert.throws(() => hfTokenizerSource(path.join(dir, "wordpiece.json")), /this one is WordPiece; convert it with llama\.cpp's `convert_hf_to_gguf\.py --vocab-only`/);
    const spm = { model: { type: "BPE", vocab: { "▁a": 0 }, merges: [], byte_fallback: true }, pre_tokenizer: { type: "Metaspace" }, decoder: null, added_tokens: [] };
    writeFileSync(path.join(dir, "spm.json"), JSON.stringify(spm));
    assert.throws(() => hfTokenizerSource(path.join(dir, "spm.json")), /SentencePiece-style BPE/);
  });

  test("config: a remote member's tokenizer may be a tokenizer.json or its folder; a folder without one is named", async () => {
    mkdirSync(path.join(dir, "empty"));
    const file = path.join(dir, "remote.yaml");
    const member = (tokenizer: string) => `method: gac\nmembers:\n  - name: r\n    url: http://127.0.0.1:1/v1\n    tokenizer: ${tokenizer}\n`;
    writeFileSync(file, member(path.join(HF, "qwen3")));
    assert.equal((await loadEnsembleConfig(file, { env: {} })).members[0]!.tokenizer, path.join(HF, "qwen3"));
    writeFileSync(file, member(path.join(HF, "qwen3/tokenizer.json")));
    assert.equal((await loadEnsembleConfig(file, { env: {} })).members[0]!.tokenizer, path.join(HF, "qwen3/tokenizer.json"));
    writeFileSync(file, member(path.join(dir, "empty")));
    await assert.rejects(loadEnsembleConfig(file, { env: {} }), /holds no tokenizer\.json/);
  });
});

describe("a remote member tokenizing with tokenizer.json", () => {
  let dir: string;
  let modelPath: string;
  let double: ServerDouble;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "chorus-hf-remote-"));
    modelPath = path.join(dir, "qwen-vocab-tiny.gguf");
    // A small random-weight model with Qwen's vocabulary, served by the vLLM double.
    await makeTinyQwen2Model(modelPath);
    double = await ServerDouble.start({ modelPath, servedName: "qwen-tiny", maxLogprobs: 151669 });
  });
  after(async () => {
    await double.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test("connects, passes the tokenizer check, and generates what the in-process model generates", async () => {
    const remote = await RemoteMember.connect({ name: "r", url: double.url, tokenizerPath: path.join(HF, "qwen3"), maxLogprobs: 151669, retries: 0 });
    const local = await LlamaMember.load({ name: "l", modelPath, contextSize: 256 });
    try {
      const prompt = { text: "The quick brown fox jumps over" };
      assert.deepEqual(remote.promptTokens(prompt), local.promptTokens(prompt));
      const ensembleOf = (member: RemoteMember | LlamaMember) =>
        Ensemble.fromMembers({ method: "gac", unite: { k: 10 }, members: [{ name: member.name, model: modelPath }] }, [member]);
      const viaServer = await ensembleOf(remote).generate(prompt, { maxTokens: 12 });
      const inProcess = await ensembleOf(local).generate(prompt, { maxTokens: 12 });
      assert.equal(viaServer.text, inProcess.text);
      assert.ok(viaServer.text.length > 0);
    } finally {
      await remote.dispose();
      await local.dispose();
    }
  });

  test("a server that caps log-probabilities: one read for the healed step, the healed text's spellings looked up in one request, and asking again costs no new request", async () => {
    const remote = await RemoteMember.connect({ name: "r", url: double.url, tokenizerPath: path.join(HF, "qwen3"), maxLogprobs: 20, retries: 0 });
    try {
      const ensemble = Ensemble.fromMembers({ method: "gac", unite: { k: 10 }, members: [{ name: "r", url: double.url }] }, [remote]);
      const run = async () => {
        const before = { reads: double.completions - double.lookupRequests, lookups: double.lookupRequests };
        for await (const _ of ensemble.stream({ text: "The quick brown fox jumps over" }, { maxTokens: 1 })) void _;
        return { reads: double.completions - double.lookupRequests - before.reads, lookups: double.lookupRequests - before.lookups };
      };
      // The first step heals over " over": two positions in one read. From 20 listed tokens the
      // tokens extending " over" are mostly missing: they are looked up (logprob_token_ids, up to 128 a request).
      const first = await run();
      assert.equal(first.reads, 1);
      assert.ok(first.lookups >= 1 && first.lookups <= 5, `${first.lookups} look-up requests`);
      assert.deepEqual(await run(), { reads: 0, lookups: 0 }, "the same step again is answered from memory");
    } finally {
      await remote.dispose();
    }
  });

  test("the wrong tokenizer.json for the served model is caught when connecting", async () => {
    await assert.rejects(
      RemoteMember.connect({ name: "r", url: double.url, tokenizerPath: path.join(HF, "llama3/tokenizer.json"), retries: 0 }),
      (e: unknown) => e instanceof MemberError && /does not tokenize like the served model/.test(e.message),
    );
  });
});
