import type { LlamaModel, Token } from "node-llama-cpp";
import { surfaceToText, textToSurface, TokenKind, vocabularyFromGguf, type Vocabulary } from "../tokens/vocabulary.js";
import { EncodeError, firstUnencodable, maxSurfaceLength, TokenLimitError, tokenizeExact } from "./exact-tokenize.js";
import { renderChatPrompt, templateTakesTools, type ChatMessage } from "./chat-template.js";
import { messagesWithoutToolSupport } from "./tool-prompt.js";
import { ContextOverflowError, MemberError, type Prompt, type PromptTokens, type TokenRun } from "./member.js";

/** What a tokenizer file gives: its vocabulary, two ways to tokenize, and what chat prompts need. */
export interface TokenizerSource {
  readonly vocabulary: Vocabulary;
  /** Jinja chat template, when the file has one. */
  readonly chatTemplate: string | undefined;
  /** The token put before every prompt, or null when the model adds none. */
  readonly bosToPrepend: number | null;
  readonly bosText: string | undefined;
  readonly eosText: string | undefined;
  /** Plain text to ids: special tokens' texts are not parsed, no BOS is added. */
  tokenizePlain(text: string): readonly number[];
  /** A rendered chat prompt to ids: special tokens' texts become their ids, no BOS is added. */
  tokenizeWithSpecials(text: string): number[];
  /** UTF-8 bytes of the longest special token's text (one token in a rendered chat prompt). */
  readonly longestSpecialText: number;
}

/**
 * A member's tokenizer: exact tokenization of continuations and prompts (chat prompts through the
 * model's own template), over the vocabulary of a GGUF as llama.cpp loads it or of a Hugging Face
 * `tokenizer.json`. Shared by members that run the model here and members whose model runs on a server.
 */
export class MemberTokenizer {
  readonly vocabulary: Vocabulary;
  private readonly chatTemplate: string | undefined;

  constructor(
    private readonly name: string,
    private readonly source: TokenizerSource,
    chatTemplate?: string,
  ) {
    this.vocabulary = source.vocabulary;
    const template = chatTemplate ?? source.chatTemplate;
    this.chatTemplate = typeof template === "string" && template.length > 0 ? template : undefined;
  }

  /** Whether there is a chat template (otherwise chat prompts fall back to plain text). */
  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  tokenizeContinuation(bytes: string): TokenRun {
    return this.guard(() => tokenizeExact(this.vocabulary, this.rawTokenize, bytes, "continuation"));
  }

  /**
   * With `contextSize`, a prompt that takes more tokens is refused (ContextOverflowError) before it
   * is tokenized whole: first when its bytes alone prove it (no token spells more than the longest
   * surface), else as soon as tokenizing it passes the limit. Work is bounded by the context, not
   * by the request: llama.cpp's SPM tokenizer took 148 s over 900 KB of CJK.
   */
  promptTokens(prompt: Prompt, contextSize = Infinity): PromptTokens {
    const bos = this.source.bosToPrepend;
    if ("text" in prompt || this.chatTemplate === undefined) {
      const text = "text" in prompt ? prompt.text : plainConversation(messagesWithoutToolSupport(prompt.messages, prompt.tools));
      const bytes = textToSurface(text);
      const prefix = bos === null ? [] : [bos];
      this.assertCanFit(bytes.length, this.longestToken(), prefix.length, contextSize);
      const run = this.guard(() => {
        try {
          return tokenizeExact(this.vocabulary, this.rawTokenize, bytes, "start", { maxTokens: contextSize - prefix.length });
        } catch (error) {
          if (!(error instanceof TokenLimitError)) throw error;
          throw new ContextOverflowError(this.name, `the prompt is more than ${contextSize} tokens but this member's context holds ${contextSize}; shorten the prompt or raise contextSize`);
        }
      });
      const count = prefix.length + run.ids.length;
      if (count > contextSize) throw new ContextOverflowError(this.name, `the prompt is ${count} tokens but this member's context holds ${contextSize}; shorten the prompt or raise contextSize`);
      return { prefix, text: run, textBytes: bytes, endsOnOwnBoundary: false };
    }
    const native = templateTakesTools(this.chatTemplate);
    const usesTools = prompt.tools !== undefined || prompt.messages.some((m) => m.role === "tool" || m.tool_calls !== undefined);
    const messages = usesTools && !native ? messagesWithoutToolSupport(prompt.messages, prompt.tools) : prompt.messages;
    const rendered = renderChatPrompt(
      this.chatTemplate,
      messages,
      { bosToken: this.source.bosText, eosToken: this.source.eosText },
      native && prompt.tools ? { tools: prompt.tools } : {},
    );
    const longest = Math.max(this.longestToken(), this.source.longestSpecialText);
    this.assertCanFit(Buffer.byteLength(rendered, "utf8"), longest, bos === null ? 0 : 1, contextSize);
    this.assertEncodable(rendered);
    const ids = this.guard(() => this.source.tokenizeWithSpecials(rendered));
    if (bos !== null && ids[0] !== bos) ids.unshift(bos);
    return { prefix: ids, text: { ids: [], byteLengths: [] }, textBytes: "", endsOnOwnBoundary: true };
  }

  private readonly rawTokenize = (text: string): readonly number[] => this.source.tokenizePlain(text);

  /** The most bytes one token of a plain text stands for: its longest surface, or an unknown token's character (up to 4 bytes). */
  private longestToken(): number {
    return Math.max(maxSurfaceLength(this.vocabulary), 4);
  }

  /** Refuses a prompt whose bytes alone prove it takes more tokens than the context holds. */
  private assertCanFit(bytes: number, longestToken: number, prefix: number, contextSize: number): void {
    const atLeast = prefix + Math.ceil(bytes / longestToken);
    if (atLeast <= contextSize) return;
    throw new ContextOverflowError(
      this.name,
      `the prompt is at least ${atLeast} tokens (${bytes} bytes, and no token of this member spells more than ${longestToken}) but this member's context holds ${contextSize}; shorten the prompt or raise contextSize`,
    );
  }

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof EncodeError) throw new MemberError(this.name, error.message);
      throw error;
    }
  }

  /** llama.cpp aborts the process on a character a vocabulary without byte tokens cannot encode. */
  private assertEncodable(text: string): void {
    const char = firstUnencodable(this.vocabulary, textToSurface(text));
    if (char !== undefined) {
      throw new MemberError(
        this.name,
        `the chat prompt contains ${JSON.stringify(surfaceToText(char))}, which this model's vocabulary cannot encode; remove it from the messages`,
      );
    }
  }
}

/** A GGUF's tokenizer as llama.cpp loads it (the model itself, or its vocabulary only). */
export function ggufTokenizerSource(model: LlamaModel): TokenizerSource {
  const metadata = model.fileInfo.metadata;
  const template = metadata.tokenizer?.chat_template;
  const vocabulary = vocabularyFromGguf(metadata, { isEog: (id) => model.isEogToken(id as Token) });
  return {
    vocabulary,
    chatTemplate: typeof template === "string" ? template : undefined,
    bosToPrepend: model.tokens.shouldPrependBosToken ? model.tokens.bos : null,
    bosText: model.tokens.bosString ?? undefined,
    eosText: model.tokens.eosString ?? undefined,
    tokenizePlain: (text) => model.tokenize(text, false),
    tokenizeWithSpecials: (text) => [...model.tokenize(text, true)] as number[],
    longestSpecialText: longestControlText(vocabulary, metadata.tokenizer?.ggml?.tokens),
  };
}

/** Control tokens have no surface (they stand for no text), but a chat prompt spells them out. */
function longestControlText(vocabulary: Vocabulary, tokens: readonly string[] | undefined): number {
  let longest = 0;
  if (!tokens) return longest;
  for (let id = 0; id < vocabulary.size; id++) {
    if (vocabulary.kinds[id] === TokenKind.control && tokens[id] !== undefined) longest = Math.max(longest, Buffer.byteLength(tokens[id]!, "utf8"));
  }
  return longest;
}

/** The conversation as plain text, for models without a chat template. */
function plainConversation(messages: readonly ChatMessage[]): string {
  return messages.map((m) => m.content).join("\n\n");
}
