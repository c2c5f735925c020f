import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import type { GgufMetadata } from "node-llama-cpp";
import { vocabularyFromGguf } from "../tokens/vocabulary.js";
import type { TokenizerSource } from "./member-tokenizer.js";

/** A tokenizer.json that cannot be read or that chorus cannot tokenize exactly. */
export class HfTokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HfTokenizerError";
  }
}

interface AddedTokenJson {
  readonly id: number;
  readonly content: string;
  readonly special?: boolean;
}

interface TokenizerJson {
  readonly model?: { readonly type?: string; readonly vocab?: Record<string, number> | unknown[]; readonly byte_fallback?: boolean };
  readonly added_tokens?: readonly AddedTokenJson[];
  readonly pre_tokenizer?: unknown;
  readonly decoder?: unknown;
  readonly post_processor?: unknown;
}

type TokenText = string | { readonly content?: string } | null | undefined;

interface TokenizerConfigJson {
  readonly bos_token?: TokenText;
  readonly eos_token?: TokenText;
  readonly unk_token?: TokenText;
  readonly add_bos_token?: boolean;
  readonly chat_template?: string | readonly { readonly name: string; readonly template: string }[];
}

/** GGUF token types, as llama.cpp's converter writes them. */
const GgufTokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5 } as const;

/** Whether `file` names a Hugging Face tokenizer (a tokenizer.json, or a folder holding one) rather than a GGUF. */
export function isHfTokenizerPath(file: string): boolean {
  return file.endsWith(".json") || statIsDirectory(file);
}

/**
 * A Hugging Face `tokenizer.json` (with the `tokenizer_config.json` and `chat_template.jinja` beside
 * it, when present) as a member's tokenizer. Token ids come from Hugging Face's own tokenizer
 * (@huggingface/tokenizers), as vLLM would produce them; the vocabulary's surfaces, kinds and
 * end-of-generation tokens are those llama.cpp would load from the GGUF its converter
 * (`convert_hf_to_gguf.py`) writes from the same files. Byte-level BPE only (GPT-2, Llama-3, Qwen,
 * Mistral-Nemo, DeepSeek, ...): those are the tokenizers whose pieces spell exact bytes.
 */
export function hfTokenizerSource(file: string): TokenizerSource {
  const tokenizerFile = statIsDirectory(file) ? path.join(file, "tokenizer.json") : file;
  const folder = path.dirname(tokenizerFile);
  const json = readJson<TokenizerJson>(tokenizerFile, "tokenizer");
  const configFile = path.join(folder, "tokenizer_config.json");
  const config = existsSync(configFile) ? readJson<TokenizerConfigJson>(configFile, "tokenizer config") : {};
  // The model's config.json may give a larger vocabulary (padded embedding rows): the ids past the tokens are unused.
  const modelConfigFile = path.join(folder, "config.json");
  const modelConfig = existsSync(modelConfigFile) ? readJson<{ vocab_size?: number }>(modelConfigFile, "model config") : {};
  assertByteLevelBpe(json, tokenizerFile);

  const added = json.added_tokens ?? [];
  const special = added.filter((t) => t.special === true);
  // Special tokens' texts are not special in plain text (llama.cpp's parse_special = false): leave
  // them out of the splitter, so "<|im_end|>" written in a story is tokenized as characters.
  let plain: Tokenizer;
  try {
    plain = new Tokenizer({ ...json, added_tokens: added.filter((t) => t.special !== true) }, {});
  } catch (error) {
    throw new HfTokenizerError(`${tokenizerFile}: cannot build the tokenizer: ${(error as Error).message}`);
  }
  const encode = (text: string): number[] => (text.length === 0 ? [] : plain.encode(text, { add_special_tokens: false }).ids);

  const metadata = ggufMetadataFromHf(json, config, modelConfig.vocab_size);
  const vocabulary = vocabularyFromGguf(metadata);
  const bos = tokenId(json, config.bos_token);
  const addsBos = config.add_bos_token ?? postProcessorStartsWith(json.post_processor, tokenContent(config.bos_token));
  const specialPattern = specialSplitter(special);
  const specialIds = new Map(special.map((t) => [t.content, t.id]));

  return {
    vocabulary,
    chatTemplate: chatTemplate(config, folder),
    bosToPrepend: addsBos && bos !== undefined ? bos : null,
    bosText: tokenContent(config.bos_token),
    eosText: tokenContent(config.eos_token),
    tokenizePlain: encode,
    longestSpecialText: special.reduce((longest, t) => Math.max(longest, Buffer.byteLength(t.content, "utf8")), 0),
    tokenizeWithSpecials(text: string): number[] {
      if (specialPattern === undefined) return encode(text);
      const ids: number[] = [];
      // Appended one by one: a long prompt's ids would overflow the stack as spread arguments.
      const append = (piece: readonly number[]) => {
        for (const id of piece) ids.push(id);
      };
      let last = 0;
      for (const match of text.matchAll(specialPattern)) {
        append(encode(text.slice(last, match.index)));
        ids.push(specialIds.get(match[0])!);
        last = match.index + match[0].length;
      }
      append(encode(text.slice(last)));
      return ids;
    },
  };
}

/**
 * The `tokenizer.ggml.*` metadata llama.cpp's converter writes for a byte-level BPE tokenizer.json
 * (`get_vocab_base`): ids without a token, up to config.json's `vocab_size`, become `[PAD<id>]`
 * (unused); added special tokens and special-looking ones are control tokens, other added tokens
 * user-defined.
 */
export function ggufMetadataFromHf(json: TokenizerJson, config: TokenizerConfigJson, vocabSize?: number): GgufMetadata {
  const byId = new Map<number, string>();
  for (const [text, id] of vocabIds(json)) byId.set(id, text);
  const added = new Map<number, AddedTokenJson>();
  for (const t of json.added_tokens ?? []) {
    added.set(t.id, t);
    byId.set(t.id, t.content);
  }
  let size = typeof vocabSize === "number" && Number.isInteger(vocabSize) ? vocabSize : 0;
  for (const id of byId.keys()) size = Math.max(size, id + 1);
  const tokens: string[] = new Array<string>(size);
  const types = new Int32Array(size);
  for (let id = 0; id < size; id++) {
    const text = byId.get(id);
    const addedToken = added.get(id);
    if (text === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = GgufTokenType.unused;
    } else if (addedToken !== undefined) {
      const control = addedToken.special === true || looksSpecial(text);
      tokens[id] = control ? text : text.replaceAll("\u2581", " ");
      types[id] = control ? GgufTokenType.control : GgufTokenType.userDefined;
    } else {
      tokens[id] = text;
      types[id] = GgufTokenType.normal;
    }
  }
  const ggml: Record<string, unknown> = { model: "gpt2", tokens, token_type: types };
  const bos = tokenId(json, config.bos_token);
  const eos = tokenId(json, config.eos_token);
  const unk = tokenId(json, config.unk_token);
  if (bos !== undefined) ggml.bos_token_id = bos;
  if (eos !== undefined) ggml.eos_token_id = eos;
  if (unk !== undefined) ggml.unknown_token_id = unk;
  return { tokenizer: { ggml } } as unknown as GgufMetadata;
}

/** llama.cpp's converter: added tokens that look special are control tokens even when not marked so. */
function looksSpecial(text: string): boolean {
  return (
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(text) ||
    (text.startsWith("<|") && text.endsWith("|>")) ||
    (text.startsWith("<\uff5c") && text.endsWith("\uff5c>")) ||
    (text.startsWith("<unused") && text.endsWith(">"))
  );
}

/** The id of a token named in tokenizer_config.json (an added token, else a vocabulary entry). */
function tokenId(json: TokenizerJson, text: TokenText): number | undefined {
  const content = tokenContent(text);
  if (content === undefined) return undefined;
  return json.added_tokens?.find((t) => t.content === content)?.id ?? vocabIds(json).get(content);
}

const vocabIdCache = new WeakMap<TokenizerJson, Map<string, number>>();

function vocabIds(json: TokenizerJson): Map<string, number> {
  let ids = vocabIdCache.get(json);
  if (ids === undefined) {
    const vocab = json.model?.vocab;
    ids = new Map(vocab && !Array.isArray(vocab) ? Object.entries(vocab) : []);
    vocabIdCache.set(json, ids);
  }
  return ids;
}

function assertByteLevelBpe(json: TokenizerJson, file: string): void {
  const fix = "convert it with llama.cpp's `convert_hf_to_gguf.py --vocab-only` and point `tokenizer` at the GGUF";
  if (typeof json.model?.type !== "string" || json.model.vocab === undefined) {
    throw new HfTokenizerError(`${file} is not a Hugging Face tokenizer.json (no model.type and model.vocab)`);
  }
  if (json.model.type !== "BPE") {
    throw new HfTokenizerError(`${file}: chorus reads byte-level BPE tokenizer.json files; this one is ${json.model.type}; ${fix}`);
  }
  const byteLevel = mentionsType(json.pre_tokenizer, "ByteLevel") || mentionsType(json.decoder, "ByteLevel");
  if (!byteLevel || json.model.byte_fallback === true) {
    throw new HfTokenizerError(`${file}: chorus reads byte-level BPE tokenizer.json files; this one is SentencePiece-style BPE (no ByteLevel pre-tokenizer); ${fix}`);
  }
}

/** Whether a component (or a Sequence of them) has the given type. */
function mentionsType(component: unknown, type: string): boolean {
  if (component === null || typeof component !== "object") return false;
  const c = component as { type?: string; pretokenizers?: unknown[]; decoders?: unknown[]; processors?: unknown[] };
  if (c.type === type) return true;
  return [...(c.pretokenizers ?? []), ...(c.decoders ?? []), ...(c.processors ?? [])].some((x) => mentionsType(x, type));
}

/** Whether the post-processor's template for one sequence starts with the given special token (a BOS it adds). */
function postProcessorStartsWith(component: unknown, content: string | undefined): boolean {
  if (content === undefined || component === null || typeof component !== "object") return false;
  const c = component as { type?: string; single?: { SpecialToken?: { id?: string } }[]; processors?: unknown[] };
  if (c.type === "TemplateProcessing") return c.single?.[0]?.SpecialToken?.id === content;
  return (c.processors ?? []).some((p) => postProcessorStartsWith(p, content));
}

function specialSplitter(special: readonly AddedTokenJson[]): RegExp | undefined {
  if (special.length === 0) return undefined;
  const escaped = special
    .map((t) => t.content)
    .sort((a, b) => b.length - a.length)
    .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(escaped.join("|"), "g");
}

function chatTemplate(config: TokenizerConfigJson, folder: string): string | undefined {
  const jinja = path.join(folder, "chat_template.jinja");
  if (existsSync(jinja)) return readFileSync(jinja, "utf8");
  const template = config.chat_template;
  if (typeof template === "string") return template;
  if (Array.isArray(template)) return template.find((t) => t.name === "default")?.template ?? template[0]?.template;
  return undefined;
}

function tokenContent(text: TokenText): string | undefined {
  if (typeof text === "string") return text;
  return text?.content ?? undefined;
}

function statIsDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}

function readJson<T>(file: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new HfTokenizerError(`cannot read the ${what} file ${file} (${e.code ?? e.message}); check the path`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new HfTokenizerError(`the ${what} file ${file} is not valid JSON (${(error as Error).message})`);
  }
}
