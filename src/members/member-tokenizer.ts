import type { LlamaModel, Token } from "node-llama-cpp";
import { surfaceToText, textToSurface, vocabularyFromGguf, type Vocabulary } from "../tokens/vocabulary.js";
import { EncodeError, firstUnencodable, tokenizeExact } from "./exact-tokenize.js";
import { renderChatPrompt, type ChatMessage } from "./chat-template.js";
import { MemberError, type Prompt, type PromptTokens, type TokenRun } from "./member.js";

/**
 * A member's tokenizer, from a GGUF's vocabulary as llama.cpp loads it: exact tokenization of
 * continuations and prompts (chat prompts through the model's own template). Shared by members
 * that run the model here and members whose model runs on a server (loaded vocabulary-only).
 */
export class GgufTokenizer {
  readonly vocabulary: Vocabulary;
  private readonly chatTemplate: string | undefined;

  constructor(
    private readonly name: string,
    private readonly model: LlamaModel,
    chatTemplate?: string,
  ) {
    const metadata = model.fileInfo.metadata;
    this.vocabulary = vocabularyFromGguf(metadata, { isEog: (id) => model.isEogToken(id as Token) });
    const template = chatTemplate ?? metadata.tokenizer?.chat_template;
    this.chatTemplate = typeof template === "string" && template.length > 0 ? template : undefined;
  }

  /** Whether the GGUF carries a chat template (otherwise chat prompts fall back to plain text). */
  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  tokenizeContinuation(bytes: string): TokenRun {
    return this.guard(() => tokenizeExact(this.vocabulary, this.rawTokenize, bytes, "continuation"));
  }

  promptTokens(prompt: Prompt): PromptTokens {
    const bos = this.model.tokens.shouldPrependBosToken ? this.model.tokens.bos : null;
    if ("text" in prompt || this.chatTemplate === undefined) {
      const text = "text" in prompt ? prompt.text : plainConversation(prompt.messages);
      const bytes = textToSurface(text);
      const run = this.guard(() => tokenizeExact(this.vocabulary, this.rawTokenize, bytes, "start"));
      return { prefix: bos === null ? [] : [bos], text: run, textBytes: bytes, endsOnOwnBoundary: false };
    }
    const rendered = renderChatPrompt(this.chatTemplate, prompt.messages, {
      bosToken: this.model.tokens.bosString ?? undefined,
      eosToken: this.model.tokens.eosString ?? undefined,
    });
    this.assertEncodable(rendered);
    const ids = this.guard(() => [...this.model.tokenize(rendered, true)] as number[]);
    if (bos !== null && ids[0] !== bos) ids.unshift(bos);
    return { prefix: ids, text: { ids: [], byteLengths: [] }, textBytes: "", endsOnOwnBoundary: true };
  }

  private readonly rawTokenize = (text: string): readonly number[] => this.model.tokenize(text, false);

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

/** The conversation as plain text, for models without a chat template. */
function plainConversation(messages: readonly ChatMessage[]): string {
  return messages.map((m) => m.content).join("\n\n");
}
