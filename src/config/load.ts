/**
 * Loading and validating ensemble configuration files (YAML or JSON).
 *
 * Every mistake is reported at once, each with its path in the file (`members[1].weight`), the
 * problem and the fix, formatted one per line as `<file>: <path>: <problem> — <fix>`.
 * Model paths are resolved to absolute paths and checked to be GGUF files.
 */
import { existsSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import type { z } from 'zod';
import { parseModelReference, resolveModelReferences } from '../members/model-reference.js';
import { GGUF_MAGIC, ggufModelProblem, readGgufHeader, type GgufHeader } from '../members/gguf-header.js';
import {
  ConfigError,
  type ConfigIssue,
  crossFieldIssues,
  describeValue,
  ensembleConfigFieldsSchema,
  gateConfigSchema,
  memberConfigSchema,
  methodProblem,
  samplingConfigSchema,
  type EnsembleConfig,
} from './schema.js';

export * from './schema.js';

export interface ParseConfigOptions {
  /** Directory relative model paths are resolved from (default: the current directory). */
  baseDir?: string;
  /** Name of the file for messages (default: `config`). */
  source?: string;
  /** Environment for `CHORUS_MODELS` (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
}

type PathSegment = string | number;
type Locator = (segments: readonly PathSegment[]) => { line: number; column: number } | undefined;

/** Validates a parsed config object, applies defaults and resolves model paths to absolute paths. */
export function parseEnsembleConfig(raw: unknown, options: ParseConfigOptions = {}): EnsembleConfig {
  return validate(raw, options, undefined);
}

/**
 * Reads a config file (`.json` as JSON; `.yaml`, `.yml` and anything else as YAML, which also
 * reads JSON) and validates it. Relative model paths are resolved from the file's directory.
 */
export async function loadEnsembleConfig(file: string, options: { env?: NodeJS.ProcessEnv } = {}): Promise<EnsembleConfig> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    // The head first: a multi-gigabyte GGUF given as the config is refused without reading it all.
    const notText = notAConfigText(await readHead(absolute, CONFIG_HEAD_BYTES));
    if (notText) throw new ConfigError([{ path: '', message: notText }], file);
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError([{ path: '', message: readFailure(error, absolute) }], file);
  }
  const ext = path.extname(absolute).toLowerCase();
  const parsed = ext === '.json' ? parseJson(text) : parseYaml(text);
  if ('issues' in parsed) throw new ConfigError(parsed.issues, file);
  const parseOptions = { baseDir: path.dirname(absolute), source: file, env: options.env };
  return validate(parsed.value, parseOptions, parsed.locate, await resolveReferences(parsed.value, parseOptions));
}

/**
 * Like `parseEnsembleConfig`, and members' `model` may also be an Ollama name, a Hugging Face
 * repo or `hf:` URI, or a URL, found in the local stores (see members/model-reference.ts).
 */
export async function resolveEnsembleConfig(raw: unknown, options: ParseConfigOptions = {}): Promise<EnsembleConfig> {
  return validate(raw, options, undefined, await resolveReferences(raw, options));
}

type ModelResolution = { path: string } | { problem: string };

/** Model references (not paths) of local members, resolved to GGUF files, by member index. */
async function resolveReferences(raw: unknown, options: ParseConfigOptions): Promise<Map<number, ModelResolution>> {
  const resolved = new Map<number, ModelResolution>();
  const members = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>).members : undefined;
  if (!Array.isArray(members)) return resolved;
  const baseDir = path.resolve(options.baseDir ?? process.cwd());
  const env = options.env ?? process.env;
  for (const [i, member] of members.entries()) {
    if (member === null || typeof member !== 'object' || (member as Record<string, unknown>).url !== undefined) continue;
    const model = (member as Record<string, unknown>).model;
    if (typeof model !== 'string' || model === '') continue;
    const { explicit, references } = parseModelReference(model);
    if (!explicit && references.length === 0) continue;
    let triedPaths: string[] = [];
    if (!explicit) {
      // `llama3.2:1b` or `user/repo` may also be a file: a file wins.
      const asPath = resolveModelPath(model, baseDir, env);
      if (!('tried' in asPath) || asPath.tried === undefined) continue;
      triedPaths = asPath.tried;
    }
    const found = await resolveModelReferences(model, references, env, triedPaths.length > 0 ? [`the paths ${triedPaths.join(', ')}`] : []);
    resolved.set(i, 'path' in found ? checkedModelFile(found.path) : found);
  }
  return resolved;
}

/** A file a reference resolved to, checked like a path: a GGUF model with weights. */
function checkedModelFile(file: string): ModelResolution {
  try {
    const problem = ggufModelProblem(file, readGgufHeader(file));
    return problem === undefined ? { path: file } : { problem };
  } catch (error) {
    return { problem: `${file} cannot be read (${errorCode(error) ?? (error as Error).message}) — check the file's permissions` };
  }
}

// ---------------------------------------------------------------------------------------------
// Reading files

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function readFailure(error: unknown, absolute: string): string {
  switch (errorCode(error)) {
    case 'ENOENT':
    case 'ENOTDIR':
      return `config file not found (looked for ${absolute}) — check the path`;
    case 'EISDIR':
      return `${absolute} is a directory — give the path of a .yaml or .json config file`;
    case 'EACCES':
    case 'EPERM':
      return `cannot read ${absolute} (permission denied) — check the file's permissions`;
    default:
      return `cannot read ${absolute} (${(error as Error)?.message ?? String(error)}) — check the path and the file`;
  }
}

/**
 * Why these bytes cannot be a config file, before any parsing: a GGUF model given where a config
 * belongs (llama.cpp's habit is `-m model.gguf`), or any other binary file. Parsing those as YAML
 * printed thousands of lines of errors with binary garbage in them.
 */
const CONFIG_HEAD_BYTES = 64 * 1024;

async function readHead(file: string, length: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** `head`: the file's first bytes (up to 64 KiB). */
export function notAConfigText(head: Buffer): string | undefined {
  if (head.subarray(0, 4).toString('latin1') === GGUF_MAGIC) {
    return 'this is a GGUF model, not a config file — pass models with -m (e.g. `chorus generate -m a.gguf -m b.gguf "Once upon a time"`), or write a config with `chorus init`';
  }
  const nul = head.indexOf(0);
  let problem = nul >= 0 ? `a zero byte at byte ${nul}` : undefined;
  if (problem === undefined) {
    try {
      // `stream` tolerates a character cut at the end of the 64 KiB read.
      new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: true });
    } catch {
      problem = 'bytes that are not UTF-8 text';
    }
  }
  if (problem === undefined) return undefined;
  return `this is not a text file (${problem}) — a config is a YAML or JSON text file (\`chorus init\` writes a commented one); pass GGUF models with -m`;
}

type Parsed = { value: unknown; locate?: Locator } | { issues: ConfigIssue[] };

function lineColumnAt(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

function syntaxIssue(kind: string, detail: string, pos: { line: number; column: number }): ConfigIssue {
  return {
    path: `${pos.line}:${pos.column}`,
    line: pos.line,
    column: pos.column,
    message: `${kind} syntax error: ${detail} — fix the ${kind} at line ${pos.line}, column ${pos.column}`,
  };
}

function parseJson(text: string): Parsed {
  try {
    const value = JSON.parse(text) as unknown;
    const duplicates = duplicateKeyIssues(text);
    return duplicates.length > 0 ? { issues: duplicates } : { value };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const lineCol = /line (\d+) column (\d+)/.exec(message);
    const position = /at position (\d+)/.exec(message);
    let pos: { line: number; column: number } | undefined;
    if (lineCol) pos = { line: Number(lineCol[1]), column: Number(lineCol[2]) };
    else if (position) pos = lineColumnAt(text, Number(position[1]));
    else {
      // V8 does not always say where; the YAML parser (JSON is YAML) usually can.
      const lineCounter = new LineCounter();
      const doc = parseDocument(text, { lineCounter, prettyErrors: false });
      const first = doc.errors[0];
      if (first) {
        const lp = lineCounter.linePos(first.pos[0]);
        pos = { line: lp.line, column: lp.col };
      }
    }
    const detail = message
      .replace(/\s*\(line \d+ column \d+\)/, '')
      .replace(/ in JSON at position \d+.*$/s, '')
      .replace(/\r?\n/g, '\\n');
    return { issues: [syntaxIssue('JSON', detail, pos ?? lineColumnAt(text, text.length))] };
  }
}

/**
 * JSON.parse keeps the last of two equal keys in an object, silently; YAML refuses them. The YAML
 * parser (JSON is YAML) finds them in valid JSON, escapes included.
 */
function duplicateKeyIssues(text: string): ConfigIssue[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  return doc.errors
    .filter((error) => error.code === 'DUPLICATE_KEY')
    .map((error) => {
      const lp = lineCounter.linePos(error.pos[0]);
      const token = /^"(?:[^"\\]|\\.)*"/.exec(text.slice(error.pos[0]))?.[0];
      const key = token === undefined ? 'a key' : JSON.stringify(JSON.parse(token));
      return {
        path: `${lp.line}:${lp.col}`,
        line: lp.line,
        column: lp.col,
        message: `duplicate key ${key} in the same object (JSON would keep only the last one) — remove one of them`,
      };
    });
}

function parseYaml(text: string): Parsed {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      issues: doc.errors.map((error) => {
        const lp = lineCounter.linePos(error.pos[0]);
        return syntaxIssue('YAML', error.message.split('\n')[0], { line: lp.line, column: lp.col });
      }),
    };
  }
  return { value: doc.toJS() as unknown, locate: yamlLocator(doc, lineCounter) };
}

function yamlLocator(doc: Document, lineCounter: LineCounter): Locator {
  return (segments) => {
    for (let n = segments.length; n >= 0; n--) {
      const node: unknown = n === 0 ? doc.contents : doc.getIn(segments.slice(0, n), true);
      if (isNode(node) && node.range) {
        const lp = lineCounter.linePos(node.range[0]);
        return { line: lp.line, column: lp.col };
      }
    }
    return undefined;
  };
}

// ---------------------------------------------------------------------------------------------
// Validation

function validate(
  raw: unknown,
  options: ParseConfigOptions,
  locate: Locator | undefined,
  references: ReadonlyMap<number, ModelResolution> = new Map(),
): EnsembleConfig {
  const source = options.source ?? 'config';
  const baseDir = path.resolve(options.baseDir ?? process.cwd());
  const env = options.env ?? process.env;

  if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) {
    throw new ConfigError(
      [{ path: '', message: 'the config is empty — write at least `members:` (see examples/tinystories.yaml, or run `chorus init`)' }],
      source,
    );
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(
      [
        {
          path: '',
          message: `the config must be a mapping of settings (method, members, ...), got ${describeValue(raw)} — see examples/tinystories.yaml`,
        },
      ],
      source,
    );
  }

  const issues: (ConfigIssue & { segments: PathSegment[] })[] = [];
  const result = ensembleConfigFieldsSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) issues.push(...translateIssue(issue));
  }
  // Cross-field rules on the raw input, so they are reported even when zod stopped early.
  for (const issue of crossFieldIssues(raw)) {
    issues.push({ segments: issue.path, path: formatPath(issue.path), message: issue.message });
  }

  // Model paths: checked for every member whose `model` is a usable string, even when other
  // fields are wrong, so that all mistakes come out at once.
  const rawMembers = (raw as Record<string, unknown>).members;
  const resolvedModels = new Map<number, string>();
  if (Array.isArray(rawMembers)) {
    rawMembers.forEach((member: unknown, i) => {
      if (member === null || typeof member !== 'object') return;
      const remote = (member as Record<string, unknown>).url !== undefined;
      // A remote member's `model` is the name its server knows; its `tokenizer` is the local file.
      const key = remote ? 'tokenizer' : 'model';
      const model = (member as Record<string, unknown>)[key];
      if (typeof model !== 'string' || model === '') return;
      const outcome = (!remote && references.get(i)) || resolveModelPath(model, baseDir, env, { tokenizer: remote });
      if ('problem' in outcome) {
        const segments = ['members', i, key];
        issues.push({ segments, path: formatPath(segments), message: outcome.problem });
      } else {
        resolvedModels.set(i, outcome.path);
      }
    });
  }

  if (issues.length > 0 || !result.success) {
    if (locate) {
      for (const issue of issues) {
        const pos = locate(issue.segments);
        if (pos) {
          issue.line = pos.line;
          issue.column = pos.column;
        }
      }
      if (issues.every((issue) => issue.line !== undefined)) {
        issues.sort((a, b) => a.line! - b.line! || a.column! - b.column!);
      }
    }
    throw new ConfigError(
      issues.map(({ segments: _segments, ...issue }) => issue),
      source,
    );
  }

  const config = result.data;
  return {
    ...config,
    ...(config.cacheDir !== undefined ? { cacheDir: path.resolve(baseDir, config.cacheDir) } : {}),
    members: config.members.map((member, i) =>
      member.url !== undefined
        ? { ...member, tokenizer: resolvedModels.get(i) ?? member.tokenizer }
        : { ...member, model: resolvedModels.get(i) ?? member.model },
    ),
  };
}

export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** `members[3].weight` → `members[].weight`, for looking up hints and known keys. */
function normalizedPath(segments: readonly PathSegment[]): string {
  return formatPath(segments.map((s) => (typeof s === 'number' ? -1 : s))).replace(/\[-1\]/g, '[]');
}

/** How to fix a wrong value, by (normalized) path. */
const FIXES: Record<string, string> = {
  method: 'use one of: gac, unite, eva, deepen, bytes',
  bytes: 'write e.g. `bytes: { aggregate: mix, rule: settled }`',
  speculate: 'write e.g. `speculate: { k: 4, draft: small }` (k from 1 to 32)',
  'speculate.k': 'use a whole number from 1 to 32: pieces the drafter proposes per round',
  exactReads: 'use true or false',
  'bytes.aggregate': 'use mix or product',
  'bytes.rule': 'use settled or ending',
  'bytes.floor': 'use a number between 0 and 1, e.g. 0.0001',
  unite: 'write e.g. `unite: { k: 10 }`',
  'unite.k': 'use an integer from 1 to 1000 (default 10)',
  heal: 'use true or false (default true)',
  gate: 'write e.g. `gate: { threshold: 0.9 }`, or remove `gate` to disable gating',
  'gate.threshold': 'use a number greater than 0 and at most 1, e.g. 0.9',
  maxTokens: 'use an integer >= 1 (default 128)',
  sampling: 'write e.g. `sampling: { temperature: 0, topP: 1, topK: 0, seed: 42 }`',
  'sampling.temperature': 'use a number >= 0 (0 = greedy)',
  'sampling.topP': 'use a number greater than 0 and at most 1 (1 = off)',
  'sampling.topK': 'use an integer >= 0 (0 = off)',
  'sampling.seed': 'use an integer',
  stop: 'write a list of strings, e.g. `stop: ["\\n\\n"]`',
  'stop[]': 'use a non-empty string',
  contextSize: 'use an integer >= 16',
  threads: 'use an integer >= 1',
  gpu: 'use auto (default: a GPU when there is one, else the CPU), cuda, vulkan, metal, or false (unquoted) to run on the CPU',
  members: 'list at least one member, e.g. `members: [{ name: a, model: path/to/model.gguf }]`',
  'members[]': 'write each member as a mapping, e.g. `{ name: a, model: path/to/model.gguf }`',
  'members[].name': 'use only letters, digits, `_`, `.` and `-`, e.g. `qwen3-0.6b`',
  'members[].model': 'give the path of a .gguf file (relative paths start at the config file\'s folder)',
  'members[].weight': 'use a number >= 0 (default 1; 0 mutes the member)',
  'members[].primary': 'use true or false (default false)',
  'members[].contextSize': 'use an integer >= 16',
  'members[].chatTemplate': 'give a Jinja chat template as a string, or remove it to use the GGUF\'s own',
  'members[].gpuLayers': 'auto (default) fits what the GPU holds, max puts every layer on it, 0 keeps this member on the CPU',
};

/** Known keys of each object in the schema, by normalized path. */
const KNOWN_KEYS: Record<string, readonly string[]> = {
  '': Object.keys(ensembleConfigFieldsSchema.shape),
  'members[]': Object.keys(memberConfigSchema.shape),
  gate: Object.keys(gateConfigSchema.shape),
  sampling: Object.keys(samplingConfigSchema.shape),
  unite: ['k'],
};

/** Keys that were renamed: the old spelling is refused with the new one, never ignored. */
const RENAMED: Record<string, Record<string, string>> = {
  '': { topK: 'UniTE\'s k is now `unite: { k: … }` (sampling\'s top-k is `sampling.topK`) — write `unite: { k: N }`' },
};

const WHERE: Record<string, string> = { '': 'at the top level', 'members[]': 'in a member', gate: 'under `gate`', sampling: 'under `sampling`', unite: 'under `unite`' };

const EXPECTED: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
};

type ZodIssue = z.core.$ZodIssue & { input?: unknown };

function translateIssue(issue: ZodIssue): (ConfigIssue & { segments: PathSegment[] })[] {
  const segments = issue.path.filter((s): s is PathSegment => typeof s === 'string' || typeof s === 'number');
  const key = normalizedPath(segments);
  const fix = FIXES[key] ?? 'see examples/tinystories.yaml';
  const make = (problem: string, at: PathSegment[] = segments) => ({
    segments: at,
    path: formatPath(at),
    message: problem.includes(' — ') ? problem : `${problem} — ${fix}`,
  });
  const last = segments[segments.length - 1];
  const name = last === undefined ? 'the config' : typeof last === 'number' ? formatPath(segments.slice(-2)) : last;
  const got = 'input' in issue ? `, got ${describeValue(issue.input)}` : '';

  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((unknownKey) => {
        const at = [...segments, unknownKey];
        return { segments: at, path: formatPath(at), message: unknownKeyMessage(unknownKey, key) };
      });
    case 'invalid_type': {
      if (issue.input === undefined) return [make(`${name} is required`)];
      if (key === 'method') return [make(methodProblem(issue.input))];
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      return [make(`expected ${expected}${got}`)];
    }
    case 'invalid_value':
      if (key === 'method') return [make(methodProblem(issue.input))];
      return [make(`${issue.message}${got}`)];
    case 'too_small': {
      if (issue.origin === 'array') {
        return [make(issue.input !== undefined && Array.isArray(issue.input) && issue.input.length === 0 ? `${name} is empty` : `${name} needs at least ${issue.minimum} item(s)`)];
      }
      if (issue.origin === 'string') return [make(`${name} must not be empty`)];
      return [make(`${name} must be ${issue.inclusive ? '>=' : '>'} ${issue.minimum}${got}`)];
    }
    case 'too_big': {
      if (issue.origin === 'array') return [make(`${name} may have at most ${issue.maximum} item(s)`)];
      if (issue.origin === 'string') return [make(`${name} is too long`)];
      return [make(`${name} must be ${issue.inclusive ? '<=' : '<'} ${issue.maximum}${got}`)];
    }
    case 'invalid_format':
      if (key === 'members[].name') {
        return [make(issue.input === '' ? 'name must not be empty' : `${describeValue(issue.input)} is not a valid member name`)];
      }
      return [make(`${name} has the wrong format${got}`)];
    case 'custom':
      return [make(issue.message)];
    default:
      return [make(`${issue.message}${got}`)];
  }
}

function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[\s_-]/g, '');
}

/** Optimal-string-alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known key closest to `key`, if it is close enough to be a likely typo. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const normalized = normalizeKey(key);
  const exact = known.find((k) => normalizeKey(k) === normalized);
  if (exact) return exact;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const allowed = Math.min(key.length, best?.length ?? 0) <= 4 ? 1 : 2;
  return bestDistance <= allowed ? best : undefined;
}

function unknownKeyMessage(unknownKey: string, objectPath: string): string {
  const renamed = RENAMED[objectPath]?.[unknownKey];
  if (renamed) return `"${unknownKey}" was renamed: ${renamed}`;
  const known = KNOWN_KEYS[objectPath] ?? [];
  const suggestion = suggestKey(unknownKey, known);
  if (suggestion) return `unknown key "${unknownKey}" — did you mean "${suggestion}"?`;
  const elsewhere = Object.entries(KNOWN_KEYS)
    .filter(([where, keys]) => where !== objectPath && keys.some((k) => normalizeKey(k) === normalizeKey(unknownKey)))
    .map(([where]) => WHERE[where]);
  if (elsewhere.length > 0) {
    return `unknown key "${unknownKey}" ${WHERE[objectPath] ?? 'here'} — it belongs ${elsewhere.join(' or ')}; move it there`;
  }
  return `unknown key "${unknownKey}" — remove it; known keys here: ${known.join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// Model paths

function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/') || p.startsWith('~\\')) return path.join(homedir(), p.slice(2));
  return p;
}

/**
 * Resolves a member's `model` path: relative to the config file's directory first, then (for
 * relative paths and bare file names not found there) in each directory of `CHORUS_MODELS`
 * (several directories may be separated by the platform's path delimiter). The first existing
 * candidate must be a readable GGUF file.
 */
/**
 * Finds a model file: absolute, relative to the config's folder, then in each CHORUS_MODELS folder.
 * With `tokenizer` (a remote member's tokenizer), a Hugging Face tokenizer.json, or the folder
 * holding one, is accepted too.
 */
export function resolveModelPath(
  model: string,
  baseDir: string,
  env: NodeJS.ProcessEnv,
  options: { tokenizer?: boolean } = {},
): { path: string } | { problem: string; tried?: string[] } {
  const expanded = expandHome(model);
  const candidates: string[] = [];
  if (path.isAbsolute(expanded)) {
    candidates.push(path.normalize(expanded));
  } else {
    candidates.push(path.resolve(baseDir, expanded));
    const modelDirs = (env.CHORUS_MODELS ?? '').split(path.delimiter).filter((d) => d.trim() !== '');
    for (const dir of modelDirs) candidates.push(path.resolve(expandHome(dir), expanded));
  }
  const unique = [...new Set(candidates)];

  for (const candidate of unique) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(candidate).isDirectory();
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      return { problem: `cannot read ${candidate} (${code ?? String(error)}) — check the file's permissions` };
    }
    if (options.tokenizer && (isDirectory || candidate.endsWith('.json'))) {
      const file = isDirectory ? path.join(candidate, 'tokenizer.json') : candidate;
      if (!existsSync(file)) return { problem: `${candidate} holds no tokenizer.json — point \`tokenizer\` at the served model's tokenizer.json or a GGUF with its vocabulary` };
      return { path: candidate };
    }
    if (isDirectory) {
      return {
        problem: `${candidate} is a directory, not a GGUF file — point \`model\` at the .gguf file itself (convert Hugging Face checkpoints with llama.cpp's convert_hf_to_gguf.py)`,
      };
    }
    let header: GgufHeader;
    try {
      header = readGgufHeader(candidate);
    } catch (error) {
      const code = errorCode(error);
      return {
        problem: `${candidate} cannot be read as a GGUF file (${code ?? (error as Error)?.message ?? String(error)}) — check the file's permissions and that it is a .gguf file`,
      };
    }
    if (options.tokenizer && header.magic !== GGUF_MAGIC) {
      const start = header.magic.length === 0 ? 'it is empty' : `it starts with ${JSON.stringify(header.magic)}`;
      return {
        problem: `${candidate} is neither a GGUF file (${start}, not "GGUF") nor a tokenizer.json — point \`tokenizer\` at the served model's tokenizer.json or a GGUF with its vocabulary (llama.cpp's convert_hf_to_gguf.py --vocab-only writes one)`,
      };
    }
    const problem = options.tokenizer ? undefined : ggufModelProblem(candidate, header);
    if (problem !== undefined) return { problem };
    return { path: candidate };
  }

  const tried = unique.join(', ');
  const envHint = env.CHORUS_MODELS
    ? 'check the path (relative paths start at the config file\'s folder, then each CHORUS_MODELS folder)'
    : 'check the path (relative paths start at the config file\'s folder) or set CHORUS_MODELS to the folder that holds your models';
  const reference = !options.tokenizer && parseModelReference(model).references.length > 0
    ? ' (an Ollama or Hugging Face name is looked up by loadEnsembleConfig and resolveEnsembleConfig, not here)'
    : '';
  return { problem: `model file not found: tried ${tried} — ${envHint}${reference}`, tried: unique };
}
