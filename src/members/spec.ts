import type { GpuLayersSetting } from "./gpu-placement.js";

/** One member as the config describes it: a GGUF model in this process, or (with `url`) a model on a server. */
export interface MemberSpec {
  readonly name: string;
  /** Path of the GGUF file (a local member), or the model name a remote server knows (with `url`). */
  readonly model?: string;
  /** Base URL of an OpenAI-compatible server running this member (see members/remote.ts). */
  readonly url?: string;
  /** Wire dialect of the server at `url`. */
  readonly api?: "vllm" | "llamacpp";
  /** GGUF file whose vocabulary tokenizes locally for a remote member (a vocab-only GGUF will do). */
  readonly tokenizer?: string;
  /** What a generation does when this remote member keeps failing: end with an error, or go on without it. */
  readonly onFailure?: "fail" | "drop";
  readonly timeoutMs?: number;
  readonly retries?: number;
  /** Most log-probabilities the remote server returns per position (vLLM's --max-logprobs). */
  readonly maxLogprobs?: number;
  /** Environment variable holding the remote server's API key. */
  readonly apiKeyEnv?: string;
  readonly weight?: number;
  readonly primary?: boolean;
  readonly contextSize?: number;
  readonly chatTemplate?: string;
  /** Layers of a local model on the GPU: `auto` (default) fits what the GPU holds, `max` all of them, or a count. */
  readonly gpuLayers?: GpuLayersSetting;
}
