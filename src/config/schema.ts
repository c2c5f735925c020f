/**
 * The ensemble configuration file: its zod schema and the types derived from it.
 *
 * The schema checks shapes, ranges and the cross-field rules that need nothing but the file
 * itself (weights, unique names, primary member, gating). Resolving and checking model paths
 * needs the file system and lives in `load.ts`.
 *
 * Custom messages follow the project's convention `<problem> — <fix>`; `load.ts` rewrites
 * zod's built-in messages (wrong type, out of range, unknown key) into the same form.
 */
import { z } from 'zod';

/** Methods that can be run today. */
export const IMPLEMENTED_METHODS = ['gac', 'unite', 'eva', 'deepen', 'bytes'] as const;
/** Methods the project plans (see DESIGN.md) but that are not implemented yet. */
export const PLANNED_METHODS = [] as readonly string[];

export type EnsembleMethod = (typeof IMPLEMENTED_METHODS)[number];

export const MEMBER_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;

export const DEFAULT_METHOD: EnsembleMethod = 'gac';
export const DEFAULT_UNITE_K = 10;
export const DEFAULT_MAX_TOKENS = 128;
export const MIN_CONTEXT_SIZE = 16;

/** Message for a `method:` value that is not one of the implemented methods. */
export function methodProblem(value: unknown): string {
  const use = `use one of: ${IMPLEMENTED_METHODS.join(', ')}`;
  if (typeof value === 'string' && (PLANNED_METHODS as readonly string[]).includes(value)) {
    return `method "${value}" is not implemented yet — ${use}`;
  }
  if (value === undefined) return `method is required — ${use}`;
  if (typeof value === 'string') return `unknown method "${value}" — ${use}`;
  return `method must be a string, got ${describeValue(value)} — ${use}`;
}

const methodSchema = z.enum(IMPLEMENTED_METHODS, { error: (issue) => methodProblem(issue.input) });

const contextSizeSchema = z.number().int().min(MIN_CONTEXT_SIZE);

/** Byte-level voting (`method: bytes`): aggregate, commit rule, product's floor. */
export const bytesConfigSchema = z.strictObject({
  aggregate: z.enum(['mix', 'product']).optional(),
  rule: z.enum(['settled', 'ending']).optional(),
  floor: z.number().gt(0).lt(1).optional(),
});
/** Where local members run: node-llama-cpp's detection, one GPU back end, or the CPU only (`false`). */
const gpuSchema = z.union([z.enum(['auto', 'cuda', 'vulkan', 'metal']), z.literal(false)], { error: 'gpu must be auto, cuda, vulkan, metal or false' });

const gpuLayersSchema = z.union([z.enum(['auto', 'max']), z.number().int().min(0)], { error: 'gpuLayers must be auto, max or an integer >= 0' });

export const memberConfigSchema = z.strictObject({
  /** Short identifier used in traces, logs and weights; unique within the ensemble. */
  name: z.string().regex(MEMBER_NAME_PATTERN),
  /** Path to a GGUF file (relative paths start at the config file's directory); with `url`: the served model's name. */
  model: z.string().min(1).optional(),
  /** Remote member: base URL of an OpenAI-compatible server (vLLM or llama.cpp's server). */
  url: z.url({ protocol: /^https?$/ }).optional(),
  /** Remote member: the server's wire dialect (default vllm). */
  api: z.enum(['vllm', 'llamacpp']).optional(),
  /** Remote member: the served model's tokenizer, for exact local tokenization: its Hugging Face tokenizer.json (or the folder holding it), or a GGUF with its vocabulary (a vocab-only GGUF will do). */
  tokenizer: z.string().min(1).optional(),
  /** Remote member: when it keeps failing, end the request with an error (`fail`) or go on without it (`drop`). */
  onFailure: z.enum(['fail', 'drop']).optional(),
  /** Remote member: milliseconds to wait for one answer. */
  timeoutMs: z.number().int().min(1).optional(),
  /** Remote member: tries after the first one, with exponential backoff. */
  retries: z.number().int().min(0).max(10).optional(),
  /** Remote member: most log-probabilities the server returns per position (vLLM's --max-logprobs). */
  maxLogprobs: z.number().int().min(1).optional(),
  /** Remote member: environment variable holding the server's API key (sent as a bearer token); keeps the key out of the file. */
  apiKeyEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  /** Weight of this member's distribution in the combination (0 = member is run but muted). */
  weight: z.number().min(0).default(1),
  /** The primary member decides alone when gating is on and it is confident enough. */
  primary: z.boolean().default(false),
  /** Context size for this member; falls back to the top-level `contextSize`. */
  contextSize: contextSizeSchema.optional(),
  /** Jinja chat template overriding the one stored in the GGUF (`tokenizer.chat_template`). */
  chatTemplate: z.string().min(1).optional(),
  /** Layers of this member's model on the GPU: auto (default), max, or a count. */
  gpuLayers: gpuLayersSchema.optional(),
});

export const gateConfigSchema = z.strictObject({
  /** When the primary member's top probability exceeds this, its token is taken directly. */
  threshold: z.number().gt(0).lte(1),
});

export const samplingConfigSchema = z.strictObject({
  /** 0 = greedy (argmax). */
  temperature: z.number().min(0).default(0),
  /** Nucleus sampling mass; 1 = off. */
  topP: z.number().gt(0).lte(1).default(1),
  /** Keep only the k most likely candidates; 0 = off. */
  topK: z.number().int().min(0).default(0),
  /** Seed for reproducible sampling. */
  seed: z.number().int().optional(),
});

const ensembleObjectSchema = z.strictObject({
  method: methodSchema.default(DEFAULT_METHOD),
  /** UniTE: each member's top-k texts form the union. (Sampling's top-k is `sampling.topK`.) */
  unite: z.strictObject({ k: z.number().int().min(1).max(1000).default(DEFAULT_UNITE_K) }).optional(),
  /** Token healing at foreign token boundaries (see DESIGN.md). */
  heal: z.boolean().default(true),
  /** Key-token gating (GaC); needs exactly one `primary: true` member. */
  gate: gateConfigSchema.optional(),
  maxTokens: z.number().int().min(1).default(DEFAULT_MAX_TOKENS),
  sampling: samplingConfigSchema.optional(),
  stop: z.array(z.string().min(1)).optional(),
  /** Default context size for members that do not set their own. */
  contextSize: contextSizeSchema.optional(),
  /** Threads per member context. */
  threads: z.number().int().min(1).optional(),
  /** Where local members run (default auto: a GPU when node-llama-cpp finds one, else the CPU). */
  gpu: gpuSchema.optional(),
  /** EVA/DeePEn: the member whose vocabulary the others are mapped into; default the primary member, else the first. */
  main: z.string().regex(MEMBER_NAME_PATTERN).optional(),
  /** EVA's parameters (Xu et al. 2024 defaults). */
  eva: z
    .strictObject({
      topK: z.number().int().min(1).max(100).optional(),
      minScore: z.number().optional(),
      uniformStd: z.number().min(0).optional(),
      uniformMinKept: z.number().int().min(0).optional(),
      faithfulK: z.number().int().min(1).optional(),
    })
    .optional(),
  /** DeePEn's parameters (Huang et al. 2024 defaults; `keep` is chorus's sparse cut of R). */
  deepen: z
    .strictObject({
      temperature: z.number().gt(0).optional(),
      keep: z.number().int().min(1).optional(),
      steps: z.number().int().min(0).max(100).optional(),
      learningRate: z.number().gt(0).optional(),
      finalLearningRate: z.number().gt(0).optional(),
    })
    .optional(),
  bytes: bytesConfigSchema.optional(),
  /** Speculative ensembling: `draft` (default the primary) proposes `k` pieces, the others evaluate them in one batch. */
  speculate: z.strictObject({ k: z.number().int().min(1).max(32), draft: z.string().regex(MEMBER_NAME_PATTERN).optional() }).optional(),
  /** Decode one token per llama.cpp call: reads that never depend on batch sizes (speculative = plain, bit for bit); slower. */
  exactReads: z.boolean().optional(),
  /** Where EVA/DeePEn alignments are cached (default $CHORUS_CACHE or ~/.cache/chorus/align). */
  cacheDir: z.string().min(1).optional(),
  members: z.array(memberConfigSchema).min(1),
});

export interface CrossFieldIssue {
  path: (string | number)[];
  /** `<problem> — <fix>` */
  message: string;
}

/**
 * Rules that span fields: unique member names, not all weights zero, at most one primary member,
 * gating needs a primary member. Works on raw input as well as on parsed values (it reads
 * everything defensively), so that `load.ts` can report these together with every other mistake:
 * zod skips refinements once a check such as `.int()` has aborted.
 */
export function crossFieldIssues(value: unknown): CrossFieldIssue[] {
  const issues: CrossFieldIssue[] = [];
  const asRecord = (x: unknown): Record<string, unknown> =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? (x as Record<string, unknown>) : {};
  const root = asRecord(value);
  const members: unknown[] = Array.isArray(root.members) ? root.members : [];

  // Duplicate names.
  const firstIndexByName = new Map<string, number>();
  members.forEach((m, i) => {
    const name = asRecord(m).name;
    if (typeof name !== 'string' || name === '') return;
    const first = firstIndexByName.get(name);
    if (first === undefined) {
      firstIndexByName.set(name, i);
    } else {
      issues.push({
        path: ['members', i, 'name'],
        message: `duplicate member name "${name}": members[${first}] and members[${i}] both use it — give every member a unique name`,
      });
    }
  });

  // All weights zero (only judged when every weight is valid; invalid ones are reported on their own).
  const weights = members.map((m) => asRecord(m).weight ?? 1);
  if (
    weights.length > 0 &&
    weights.every((w) => typeof w === 'number' && Number.isFinite(w) && w >= 0) &&
    weights.every((w) => w === 0)
  ) {
    issues.push({
      path: ['members'],
      message: 'all member weights are 0, so no member gets a vote — give at least one member a weight > 0',
    });
  }

  // Where each member runs: a local GGUF (`model`) or a server (`url` + `tokenizer`).
  members.forEach((m, i) => {
    const member = asRecord(m);
    if (member.url === undefined && member.model === undefined) {
      issues.push({ path: ['members', i, 'model'], message: 'model is required — give the path of a .gguf file (or `url:` and `tokenizer:` for a model on a server)' });
    }
    if (member.url !== undefined && member.gpuLayers !== undefined) {
      issues.push({ path: ['members', i, 'gpuLayers'], message: 'gpuLayers places the layers of a model in this process; a member with `url` runs on its server, which places its own — remove gpuLayers here' });
    }
    if (member.url !== undefined && member.tokenizer === undefined) {
      issues.push({ path: ['members', i, 'tokenizer'], message: 'a member with `url` needs `tokenizer` — give the served model\'s tokenizer.json, or a GGUF with its vocabulary (a vocab-only GGUF will do)' });
    }
  });

  // Primary member(s).
  const primaries = members.flatMap((m, i) => (asRecord(m).primary === true ? [i] : []));
  if (primaries.length > 1) {
    issues.push({
      path: ['members', primaries[1], 'primary'],
      message: `more than one primary member (${primaries.map((i) => `members[${i}]`).join(', ')}) — keep \`primary: true\` on exactly one member`,
    });
  }
  const draft = asRecord(root.speculate).draft;
  if (typeof draft === 'string' && members.length > 0 && !members.some((m) => asRecord(m).name === draft)) {
    issues.push({
      path: ['speculate', 'draft'],
      message: `no member is named "${draft}" — use one of: ${members.map((m) => String(asRecord(m).name)).join(', ')}`,
    });
  }
  if (typeof root.main === 'string' && members.length > 0 && !members.some((m) => asRecord(m).name === root.main)) {
    issues.push({
      path: ['main'],
      message: `no member is named "${root.main}" — use one of: ${members.map((m) => String(asRecord(m).name)).join(', ')}`,
    });
  }
  if (root.gate !== undefined && root.gate !== null && primaries.length === 0) {
    issues.push({
      path: ['gate'],
      message: 'gating needs a primary member: add `primary: true` to one member — or remove `gate` to disable gating',
    });
  }
  return issues;
}

/** The config's fields without the cross-field rules (see `crossFieldIssues`). */
export const ensembleConfigFieldsSchema = ensembleObjectSchema;

/** The whole config: fields plus cross-field rules (the rules run only if no check aborted). */
export const ensembleConfigSchema = ensembleObjectSchema.check(
  z.superRefine((value, ctx) => {
    for (const issue of crossFieldIssues(value)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  }, { when: () => true }),
);

/** A validated configuration with defaults applied (model paths absolute after loading). */
export type EnsembleConfig = z.output<typeof ensembleConfigSchema>;
/** What a config file may contain (defaults not yet applied). */
export type EnsembleConfigInput = z.input<typeof ensembleConfigSchema>;
export type MemberConfig = z.output<typeof memberConfigSchema>;
export type GateConfig = z.output<typeof gateConfigSchema>;
export type SamplingConfig = z.output<typeof samplingConfigSchema>;

/** Short description of a value for messages: `"abc"`, `12`, `a list`, `nothing`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

export interface ConfigIssue {
  /** Where in the file, e.g. `members[1].weight`; `''` for the whole file; `line:column` for syntax errors. */
  path: string;
  /** `<problem> — <fix>` */
  message: string;
  /** 1-based position in the file, when known (YAML files). */
  line?: number;
  column?: number;
}

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  /** The file (or label) the issues are about. */
  readonly source: string;

  constructor(issues: ConfigIssue[], source = 'config') {
    super(issues.map((issue) => formatIssue(source, issue)).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
    this.source = source;
  }
}

/**
 * One line of a ConfigError's message: `file:line:column: path: problem — fix`, the position
 * first so that editors and terminals can jump to it (YAML files; JSON syntax errors).
 */
export function formatIssue(source: string, issue: ConfigIssue): string {
  const at = issue.line !== undefined ? `${source}:${issue.line}:${issue.column ?? 1}` : source;
  const isPosition = issue.line !== undefined && issue.path === `${issue.line}:${issue.column}`;
  return issue.path === '' || isPosition ? `${at}: ${issue.message}` : `${at}: ${issue.path}: ${issue.message}`;
}
