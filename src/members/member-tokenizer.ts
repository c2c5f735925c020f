import type { LlamaModel, Token } from "node-llama-cpp";
import { surfaceToText, textToSurface, vocabularyFromGguf, type Vocabulary } from "../tokens/vocabulary.js";
import { EncodeError, firstUnencodable, tokenizeExact } from "./exact-tokenize.js";
import { renderChatPrompt, templateTakesTools, type ChatMessage } from "./chat-template.js";
import { messagesWithoutToolSupport } from "./tool-prompt.js";
import { MemberError, type Prompt, type PromptTokens, type TokenRun } from "./member.js";

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

  promptTokens(prompt: Prompt): PromptTokens {
    const bos = this.source.bosToPrepend;
    if ("text" in prompt || this.chatTemplate === undefined) {
      const text = "text" in prompt ? prompt.text : plainConversation(messagesWithoutToolSupport(prompt.messages, prompt.tools));
      const bytes = textToSurface(text);
      const run = this.guard(() => tokenizeExact(this.vocabulary, this.rawTokenize, bytes, "start"));
      return { prefix: bos === null ? [] : [bos], text: run, textBytes: bytes, endsOnOwnBoundary: false };
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
    this.assertEncodable(rendered);
    const ids = this.guard(() => this.source.tokenizeWithSpecials(rendered));
    if (bos !== null && ids[0] !== bos) ids.unshift(bos);
    return { prefix: ids, text: { ids: [], byteLengths: [] }, textBytes: "", endsOnOwnBoundary: true };
  }

  private readonly rawTokenize = (text: string): readonly number[] => this.source.tokenizePlain(text);

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
  return {
    vocabulary: vocabularyFromGguf(metadata, { isEog: (id) => model.isEogToken(id as Token) }),
    chatTemplate: typeof template === "string" ? template : undefined,
    bosToPrepend: model.tokens.shouldPrependBosToken ? model.tokens.bos : null,
    bosText: model.tokens.bosString ?? undefined,
    eosText: model.tokens.eosString ?? undefined,
    tokenizePlain: (text) => model.tokenize(text, false),
    tokenizeWithSpecials: (text) => [...model.tokenize(text, true)] as number[],
  };
}

/** The conversation as plain text, for models without a chat template. */
function plainConversation(messages: readonly ChatMessage[]): string {
  return messages.map((m) => m.content).join("\n\n");
}
