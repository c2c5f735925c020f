import { LlamaMember } from "./llama.js";
import { MemberError, type Member } from "./member.js";
import { RemoteMember } from "./remote.js";
import type { MemberSpec } from "./spec.js";

/** Builds the member a spec describes: a model in this process, or (with `url`) one on a server. */
export async function createMember(spec: MemberSpec, defaults: { threads: number; contextSize?: number }): Promise<Member> {
  if (spec.url !== undefined) {
    if (spec.tokenizer === undefined) {
      throw new MemberError(spec.name, "a remote member needs `tokenizer`: the served model's tokenizer.json, or a GGUF with its vocabulary");
    }
    const apiKey = spec.apiKeyEnv === undefined ? undefined : process.env[spec.apiKeyEnv];
    if (spec.apiKeyEnv !== undefined && !apiKey) {
      throw new MemberError(spec.name, `apiKeyEnv names $${spec.apiKeyEnv}, which is not set; export it with the server's API key`);
    }
    return RemoteMember.connect({
      name: spec.name,
      url: spec.url,
      api: spec.api,
      model: spec.model,
      tokenizerPath: spec.tokenizer,
      chatTemplate: spec.chatTemplate,
      contextSize: spec.contextSize,
      timeoutMs: spec.timeoutMs,
      retries: spec.retries,
      maxLogprobs: spec.maxLogprobs,
      apiKey,
    });
  }
  if (spec.model === undefined) throw new MemberError(spec.name, "a member needs `model` (a GGUF path) or `url` (a server)");
  return LlamaMember.load({
    name: spec.name,
    modelPath: spec.model,
    contextSize: spec.contextSize ?? defaults.contextSize,
    threads: defaults.threads,
    chatTemplate: spec.chatTemplate,
  });
}
