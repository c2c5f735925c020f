/** chorus: token-level ensembles of language models with different vocabularies. */
export {
  Ensemble,
  type EnsembleSpec,
  type MemberSpec,
  type GenerateOptions,
  type GenerationResult,
  type MemberDrop,
  type Step,
  type StepTrace,
  type FinishReason,
  type MethodName,
} from "./engine/ensemble.js";
export type { SamplingOptions } from "./engine/sampling.js";
export { loadEnsembleConfig, parseEnsembleConfig, resolveEnsembleConfig, ConfigError, type EnsembleConfig } from "./config/load.js";
export { parseModelReference, resolveModelReferences, type ModelReference } from "./members/model-reference.js";
export { LlamaMember, loadLlama, type LlamaMemberOptions } from "./members/llama.js";
export { MemberError, ContextOverflowError, MemberUnavailableError, MemberRejectedError, type Member, type MemberPlacement, type Prompt, type PositionRequest } from "./members/member.js";
export { loadRuntime, RuntimeError, type GpuSetting, type Device, type Runtime } from "./members/runtime.js";
export { describeBackend, formatBackend, type BackendReport, type MemberBackend } from "./members/backend.js";
export { placeOnGpu, GpuPlacementError, type GpuLayersSetting, type PlacementCandidate, type PlacedMember } from "./members/gpu-placement.js";
export { defaultThreads, threadBudget } from "./members/threads.js";
export { RemoteMember, type RemoteMemberOptions, type RemoteApi } from "./members/remote.js";
export { createServer, type ServerOptions, type ServedModel, type ChorusServer, type GenerationEnd } from "./server/app.js";
export type {
  ChorusCompletionRequest,
  ChorusChatRequest,
  EnsembleRequestOptions,
  ChorusCompletion,
  ChorusChatCompletion,
  ChorusChatCompletionChunk,
  ChorusToolCall,
  EnsembleAnswer,
  TraceStep,
  Usage,
  ChatTokenLogprob,
  CompletionLogprobs,
} from "./server/wire.js";
export {
  grammarConstraint,
  jsonSchemaConstraint,
  jsonObjectConstraint,
  ConstraintError,
  GrammarError,
  SchemaError,
  type TextConstraint,
  type ConstraintState,
  type JsonSchema,
} from "./constraints/index.js";
export type { StepLogprobs, PieceLogprob } from "./engine/step-logprobs.js";
export type { SparseDistribution, DistributionRequest } from "./members/distribution.js";
export type { ChatMessage, ChatTool, ChatToolCall } from "./members/chat-template.js";
export { vocabularyFromGguf, type Vocabulary } from "./tokens/vocabulary.js";
export { buildUnion, type UnionVocabulary } from "./tokens/union.js";
export { gac } from "./methods/gac.js";
export { unite } from "./methods/unite.js";
export { bytesVote, type BytesOptions, type ByteAggregate, type CommitRule, type ByteVote } from "./methods/bytes.js";
export type { MemberCandidates } from "./methods/candidates.js";
export { evaStep } from "./methods/eva.js";
export { deepenStep } from "./methods/deepen.js";
export { prepareAlignment, defaultCacheDir, type PrepareOptions } from "./align/cache.js";
export { buildAlignment, type Alignment, type AlignmentSpec } from "./align/alignment.js";
export { locateEmbeddings, readMatrix, forEachRow, dequantize } from "./align/gguf-tensors.js";
