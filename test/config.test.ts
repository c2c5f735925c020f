import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadEnsembleConfig, parseEnsembleConfig, type ConfigIssue } from '../src/config/load.js';
import { ensembleConfigSchema } from '../src/config/schema.js';
import { SHARED } from './helpers/models.js';

const MODELS = path.join(SHARED, 'models');
const S260K = path.join(MODELS, 'stories260K-f32.gguf');
const TS656K = path.join(MODELS, 'TinyStories-656K-f32.gguf');
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const dir = mkdtempSync(path.join(tmpdir(), 'chorus-config-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

/** A minimal valid config object; members use absolute model paths. */
function base(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    method: 'gac',
    members: [
      { name: 's260k', model: S260K, primary: true },
      { name: 'ts656k', model: TS656K },
    ],
    ...overrides,
  };
}

function members(...list: Record<string, unknown>[]): Record<string, unknown> {
  return base({ members: list });
}

/** Runs `fn`, expects a ConfigError, returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a ConfigError');
}

async function configErrorAsync(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a ConfigError');
}

/** The one issue at `at` (fails if there is none or several). */
function issueAt(error: ConfigError, at: string): ConfigIssue {
  const found = error.issues.filter((issue) => issue.path === at);
  assert.equal(found.length, 1, `expected one issue at ${at}, got:\n${error.message}`);
  return found[0];
}

/** The 24-byte header of a GGUF v3 file with `tensors` tensors (0: a vocabulary-only file). */
function fakeGgufHeader(tensors: number): Buffer {
  const header = Buffer.alloc(24);
  header.write('GGUF', 0, 'latin1');
  header.writeUInt32LE(3, 4);
  header.writeBigUInt64LE(BigInt(tensors), 8);
  return header;
}

const parse = (raw: unknown, env: NodeJS.ProcessEnv = {}) => parseEnsembleConfig(raw, { baseDir: dir, source: 'test.yaml', env });

test('a valid config gets its defaults', () => {
  const config = parse(base());
  assert.deepEqual(config, {
    method: 'gac',
    heal: true,
    maxTokens: 128,
    members: [
      { name: 's260k', model: S260K, weight: 1, primary: true },
      { name: 'ts656k', model: TS656K, weight: 1, primary: false },
    ],
  });
});

test('all settings are kept when given', () => {
  const config = parse({
    method: 'unite',
    unite: { k: 5 },
    heal: false,
    gate: { threshold: 1 },
    maxTokens: 7,
    sampling: { temperature: 0.7, topP: 0.9, topK: 40, seed: 42 },
    stop: ['\n\n', 'The end'],
    contextSize: 1024,
    threads: 2,
    members: [
      { name: 's260k', model: S260K, weight: 2.5, primary: true, contextSize: 512, chatTemplate: '{{ messages[0].content }}' },
      { name: 'ts656k', model: TS656K, weight: 0 },
    ],
  });
  assert.equal(config.method, 'unite');
  assert.deepEqual(config.unite, { k: 5 });
  assert.equal(config.heal, false);
  assert.deepEqual(config.gate, { threshold: 1 });
  assert.equal(config.maxTokens, 7);
  assert.deepEqual(config.sampling, { temperature: 0.7, topP: 0.9, topK: 40, seed: 42 });
  assert.deepEqual(config.stop, ['\n\n', 'The end']);
  assert.equal(config.contextSize, 1024);
  assert.equal(config.threads, 2);
  assert.equal(config.members[0].weight, 2.5);
  assert.equal(config.members[0].contextSize, 512);
  assert.equal(config.members[0].chatTemplate, '{{ messages[0].content }}');
  assert.equal(config.members[1].weight, 0);
});

test('sampling defaults', () => {
  assert.deepEqual(parse(base({ sampling: {} })).sampling, { temperature: 0, topP: 1, topK: 0 });
});

test('the example configs load, with model paths resolved from the examples/ folder', async () => {
  const plain = await loadEnsembleConfig(path.join(REPO, 'examples/tinystories.yaml'), { env: {} });
  assert.equal(plain.method, 'gac');
  assert.deepEqual(plain.unite, { k: 10 });
  assert.equal(plain.gate, undefined);
  assert.deepEqual(
    plain.members.map((m) => [m.name, m.model, m.primary]),
    [
      ['s260k', S260K, true],
      ['ts656k', TS656K, false],
    ],
  );
  const gated = await loadEnsembleConfig(path.join(REPO, 'examples/tinystories-gated.yaml'), { env: {} });
  assert.deepEqual(gated.gate, { threshold: 0.9 });
  assert.deepEqual(gated.members, plain.members);
});

test('YAML and JSON files load; relative model paths start at the file\'s folder', async () => {
  const sub = path.join(dir, 'nested');
  mkdirSync(sub, { recursive: true });
  symlinkSync(S260K, path.join(sub, 'local.gguf'));
  const yamlFile = write('nested/a.yaml', 'method: unite\nmembers:\n  - name: m\n    model: local.gguf\n');
  const yaml = await loadEnsembleConfig(yamlFile, { env: {} });
  assert.equal(yaml.members[0].model, path.join(sub, 'local.gguf'));

  const jsonFile = write('nested/b.json', JSON.stringify({ method: 'gac', members: [{ name: 'm', model: './local.gguf' }] }));
  const json = await loadEnsembleConfig(jsonFile, { env: {} });
  assert.equal(json.members[0].model, path.join(sub, 'local.gguf'));

  // Any other extension is read as YAML, which also reads JSON.
  const other = write('nested/c.conf', JSON.stringify({ method: 'gac', members: [{ name: 'm', model: 'local.gguf' }] }));
  assert.equal((await loadEnsembleConfig(other, { env: {} })).members[0].model, path.join(sub, 'local.gguf'));
});

test('method: eva and deepen with their parameters and main member; anything else is unknown', () => {
  for (const method of ['eva', 'deepen'] as const) {
    assert.equal(parse(base({ method })).method, method);
  }
  const evaConfig = parse(base({ method: 'eva', main: 'ts656k', eva: { faithfulK: 5 }, deepen: { keep: 64 } }));
  assert.equal(evaConfig.main, 'ts656k');
  assert.equal(evaConfig.eva?.faithfulK, 5);
  assert.equal(parse(base({ method: 'deepen', cacheDir: 'cache' })).cacheDir, path.resolve(dir, 'cache'));
  assert.match(issueAt(configError(() => parse(base({ method: 'eva', main: 'zz' }))), 'main').message, /no member is named "zz"/);
  assert.match(issueAt(configError(() => parse(base({ method: 'gak' }))), 'method').message, /unknown method "gak" — use one of: gac, unite, eva, deepen/);
  assert.match(issueAt(configError(() => parse(base({ method: 3 }))), 'method').message, /method must be a string, got 3/);
  // Without `method` the config means GaC, as the library and the CLI do.
  assert.equal(parse({ members: [{ name: 'a', model: S260K }] }).method, 'gac');
});

test('out-of-range and wrongly typed values name their path and the fix', () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ unite: { k: 0 } }, 'unite.k', /k must be >= 1, got 0 — use an integer from 1 to 1000/],
    [{ unite: { k: 1001 } }, 'unite.k', /k must be <= 1000, got 1001/],
    [{ unite: { k: 2.5 } }, 'unite.k', /expected an integer, got 2.5/],
    [{ topK: 10 }, 'topK', /"topK" was renamed: UniTE's k is now `unite: \{ k: … \}` \(sampling's top-k is `sampling.topK`\) — write `unite: \{ k: N \}`/],
    [{ heal: 'yes' }, 'heal', /expected true or false, got "yes" — use true or false/],
    [{ maxTokens: 0 }, 'maxTokens', /maxTokens must be >= 1, got 0/],
    [{ gate: { threshold: 0 } }, 'gate.threshold', /threshold must be > 0, got 0 — use a number greater than 0 and at most 1/],
    [{ gate: { threshold: 1.5 } }, 'gate.threshold', /threshold must be <= 1, got 1.5/],
    [{ gate: 0.9 }, 'gate', /expected a mapping, got 0.9 — write e.g. `gate: \{ threshold: 0.9 \}`/],
    [{ gate: {} }, 'gate.threshold', /threshold is required/],
    [{ sampling: { temperature: -0.1 } }, 'sampling.temperature', /temperature must be >= 0, got -0.1 — use a number >= 0 \(0 = greedy\)/],
    [{ sampling: { topP: 0 } }, 'sampling.topP', /topP must be > 0, got 0/],
    [{ sampling: { topP: 1.01 } }, 'sampling.topP', /topP must be <= 1, got 1.01/],
    [{ sampling: { topK: -1 } }, 'sampling.topK', /topK must be >= 0, got -1/],
    [{ sampling: { seed: 1.5 } }, 'sampling.seed', /expected an integer, got 1.5/],
    [{ stop: '\n\n' }, 'stop', /expected a list, got "\\n\\n" — write a list of strings/],
    [{ stop: ['ok', ''] }, 'stop[1]', /must not be empty — use a non-empty string/],
    [{ contextSize: 8 }, 'contextSize', /contextSize must be >= 16, got 8/],
    [{ threads: 0 }, 'threads', /threads must be >= 1, got 0/],
    [{ members: [] }, 'members', /members is empty — list at least one member/],
    [{ members: 'a.gguf' }, 'members', /expected a list/],
  ];
  for (const [overrides, at, expected] of cases) {
    const error = configError(() => parse(base(overrides)));
    assert.match(issueAt(error, at).message, expected, `for ${JSON.stringify(overrides)}`);
  }
});

test('member fields are checked', () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ name: 'a b', model: S260K }, 'members[0].name', /"a b" is not a valid member name — use only letters, digits/],
    [{ name: '', model: S260K }, 'members[0].name', /name must not be empty/],
    [{ model: S260K }, 'members[0].name', /name is required/],
    [{ name: 'a' }, 'members[0].model', /model is required — give the path of a .gguf file/],
    [{ name: 'a', model: S260K, primary: 'true' }, 'members[0].primary', /expected true or false, got "true"/],
    [{ name: 'a', model: S260K, contextSize: 15 }, 'members[0].contextSize', /contextSize must be >= 16, got 15/],
    [{ name: 'a', model: S260K, chatTemplate: '' }, 'members[0].chatTemplate', /must not be empty/],
  ];
  for (const [member, at, expected] of cases) {
    const error = configError(() => parse(members(member)));
    assert.match(issueAt(error, at).message, expected, `for ${JSON.stringify(member)}`);
  }
  assert.match(issueAt(configError(() => parse(members(5 as never))), 'members[0]').message, /expected a mapping, got 5/);
});

test('a negative weight is reported at that member', () => {
  const error = configError(() => parse(members({ name: 'a', model: S260K }, { name: 'b', model: TS656K, weight: -1 })));
  assert.deepEqual(error.issues.map((i) => i.path), ['members[1].weight']);
  assert.match(error.issues[0].message, /weight must be >= 0, got -1 — use a number >= 0/);
  assert.equal(error.message, `test.yaml: members[1].weight: ${error.issues[0].message}`);
});

test('all weights zero is an error', () => {
  const error = configError(() => parse(members({ name: 'a', model: S260K, weight: 0 }, { name: 'b', model: TS656K, weight: 0 })));
  assert.match(issueAt(error, 'members').message, /all member weights are 0.* — give at least one member a weight > 0/);
  // One zero weight is fine.
  assert.equal(parse(members({ name: 'a', model: S260K, weight: 0 }, { name: 'b', model: TS656K })).members[0].weight, 0);
});

test('duplicate member names name both indexes', () => {
  const error = configError(() =>
    parse(members({ name: 'x', model: S260K }, { name: 'y', model: TS656K }, { name: 'x', model: TS656K })),
  );
  const message = issueAt(error, 'members[2].name').message;
  assert.match(message, /duplicate member name "x"/);
  assert.match(message, /members\[0\]/);
  assert.match(message, /members\[2\]/);
  assert.match(message, /give every member a unique name/);
});

test('more than one primary member is an error', () => {
  const error = configError(() =>
    parse(members({ name: 'a', model: S260K, primary: true }, { name: 'b', model: TS656K, primary: true })),
  );
  assert.match(issueAt(error, 'members[1].primary').message, /more than one primary member \(members\[0\], members\[1\]\) — keep `primary: true` on exactly one member/);
});

test('gating without a primary member is an error', () => {
  const error = configError(() =>
    parse(base({ gate: { threshold: 0.9 }, members: [{ name: 'a', model: S260K }, { name: 'b', model: TS656K }] })),
  );
  assert.match(issueAt(error, 'gate').message, /^gating needs a primary member: add `primary: true` to one member/);
  // With a primary it is fine.
  assert.deepEqual(parse(base({ gate: { threshold: 0.9 } })).gate, { threshold: 0.9 });
});

test('unknown keys are errors, with a "did you mean" suggestion when close', () => {
  const error = configError(() =>
    parse({
      method: 'gac',
      topk: 5,
      max_tokens: 3,
      temperature: 0.5,
      gate: { treshold: 0.9 },
      sampling: { temprature: 1 },
      bogus: true,
      members: [
        { name: 'a', model: S260K, wieght: 1, primary: true },
        { name: 'b', model: TS656K, Primary: true, threads: 2 },
      ],
    }),
  );
  assert.match(issueAt(error, 'topk').message, /unknown key "topk" at the top level — it belongs under `sampling`/);
  assert.match(issueAt(error, 'max_tokens').message, /did you mean "maxTokens"\?/);
  assert.match(issueAt(error, 'temperature').message, /it belongs under `sampling`/);
  assert.match(issueAt(error, 'gate.treshold').message, /did you mean "threshold"\?/);
  assert.match(issueAt(error, 'sampling.temprature').message, /did you mean "temperature"\?/);
  assert.match(issueAt(error, 'bogus').message, /unknown key "bogus" — remove it; known keys here: method, unite, heal/);
  assert.match(issueAt(error, 'members[0].wieght').message, /did you mean "weight"\?/);
  assert.match(issueAt(error, 'members[1].Primary').message, /did you mean "primary"\?/);
  assert.match(issueAt(error, 'members[1].threads').message, /it belongs at the top level/);
});

test('every mistake is reported at once, one per line', () => {
  const error = configError(() =>
    parse({
      method: 'evaa',
      unite: { k: 0 },
      sampling: { topK: 1.5 }, // an aborting check must not hide the cross-field rules
      gate: { threshold: 2 },
      members: [
        { name: 'a', model: S260K, weight: -1 },
        { name: 'a', model: 'missing.gguf', extra: 1 },
      ],
    }),
  );
  const paths = error.issues.map((issue) => issue.path).sort();
  assert.deepEqual(paths, [
    'gate',
    'gate.threshold',
    'members[0].weight',
    'members[1].extra',
    'members[1].model',
    'members[1].name',
    'method',
    'sampling.topK',
    'unite.k',
  ]);
  const lines = error.message.split('\n');
  assert.equal(lines.length, error.issues.length);
  for (const line of lines) assert.match(line, /^test\.yaml: [^:]+: .+ — .+$/);
});

test('a missing model names the paths tried and the fix', () => {
  const error = configError(() => parse(members({ name: 'a', model: 'nowhere/missing.gguf' })));
  const message = issueAt(error, 'members[0].model').message;
  assert.ok(message.includes(path.join(dir, 'nowhere/missing.gguf')), message);
  assert.match(message, /model file not found: tried .* — check the path .* or set CHORUS_MODELS/);

  const withEnv = configError(() => parse(members({ name: 'a', model: 'missing.gguf' }), { CHORUS_MODELS: '/opt/models' }));
  const envMessage = issueAt(withEnv, 'members[0].model').message;
  assert.ok(envMessage.includes(`tried ${path.join(dir, 'missing.gguf')}, /opt/models/missing.gguf`), envMessage);

  const absolute = configError(() => parse(members({ name: 'a', model: '/no/such/model.gguf' })));
  assert.match(issueAt(absolute, 'members[0].model').message, /tried \/no\/such\/model\.gguf —/);
});

test('CHORUS_MODELS resolves bare file names and paths not found next to the config', () => {
  const env = { CHORUS_MODELS: MODELS };
  assert.equal(parse(members({ name: 'a', model: 'stories260K-f32.gguf' }), env).members[0].model, S260K);
  // Several folders, separated by the path delimiter.
  const two = { CHORUS_MODELS: ['/nonexistent', MODELS].join(path.delimiter) };
  assert.equal(parse(members({ name: 'a', model: 'TinyStories-656K-f32.gguf' }), two).members[0].model, TS656K);
  // Without the variable the bare name is looked up next to the config only.
  assert.match(issueAt(configError(() => parse(members({ name: 'a', model: 'stories260K-f32.gguf' }))), 'members[0].model').message, /not found/);

  // A file next to the config wins over CHORUS_MODELS.
  const local = path.join(dir, 'prefer', 'stories260K-f32.gguf');
  mkdirSync(path.dirname(local), { recursive: true });
  writeFileSync(local, fakeGgufHeader(1));
  const config = parseEnsembleConfig(members({ name: 'a', model: 'stories260K-f32.gguf' }), {
    baseDir: path.dirname(local),
    env,
  });
  assert.equal(config.members[0].model, local);
});

test('loadEnsembleConfig reads CHORUS_MODELS from the env option', async () => {
  const file = write('env.yaml', 'method: gac\nmembers:\n  - { name: a, model: stories260K-f32.gguf }\n');
  const config = await loadEnsembleConfig(file, { env: { CHORUS_MODELS: MODELS } });
  assert.equal(config.members[0].model, S260K);
  const error = await configErrorAsync(loadEnsembleConfig(file, { env: {} }));
  assert.match(issueAt(error, 'members[0].model').message, /set CHORUS_MODELS/);
});

test('a model that is not a GGUF file is an error saying so', () => {
  const text = write('not-a-model.gguf', 'this is not a model\n');
  const empty = write('empty.gguf', '');
  const folder = path.join(dir, 'folder.gguf');
  mkdirSync(folder, { recursive: true });
  const error = configError(() =>
    parse(members({ name: 'a', model: text }, { name: 'b', model: 'empty.gguf' }, { name: 'c', model: folder })),
  );
  assert.match(issueAt(error, 'members[0].model').message, /not-a-model\.gguf is not a GGUF file \(it starts with "this", not "GGUF"\) — point `model` at a \.gguf file/);
  assert.match(issueAt(error, 'members[1].model').message, new RegExp(`${empty.replace(/[.]/g, '\\.')} is not a GGUF file \\(it is empty`));
  assert.match(issueAt(error, 'members[2].model').message, /folder\.gguf is a directory, not a GGUF file/);
});

test('an unreadable model file is an error', { skip: process.getuid?.() === 0 ? 'running as root: permissions are not enforced' : false }, async () => {
  const { chmodSync } = await import('node:fs');
  const locked = write('locked.gguf', 'GGUF');
  chmodSync(locked, 0o000);
  try {
    const error = configError(() => parse(members({ name: 'a', model: locked })));
    assert.match(issueAt(error, 'members[0].model').message, /cannot be read.*EACCES/);
  } finally {
    chmodSync(locked, 0o644);
  }
});

test('YAML syntax errors are reported with line:column', async () => {
  const file = write('syntax.yaml', 'method: gac\nmembers:\n  - name: a\n   model: x.gguf\n');
  const error = await configErrorAsync(loadEnsembleConfig(file, { env: {} }));
  assert.equal(error.issues.length, 1);
  const [issue] = error.issues;
  assert.equal(issue.path, '4:1');
  assert.deepEqual([issue.line, issue.column], [4, 1]);
  assert.match(issue.message, /^YAML syntax error: .+ — fix the YAML at line 4, column 1$/);
  assert.ok(error.message.startsWith(`${file}:4:1: YAML syntax error`), error.message);

  const duplicate = write('duplicate.yaml', 'method: gac\nmethod: unite\n');
  const dupError = await configErrorAsync(loadEnsembleConfig(duplicate, { env: {} }));
  assert.equal(dupError.issues[0].path, '2:1');
  assert.match(dupError.issues[0].message, /Map keys must be unique/);
});

test('JSON syntax errors are reported with line:column', async () => {
  const file = write('syntax.json', '{"method": "gac",\n "members": [}\n');
  const error = await configErrorAsync(loadEnsembleConfig(file, { env: {} }));
  assert.equal(error.issues.length, 1);
  assert.equal(error.issues[0].path, '2:14');
  assert.match(error.issues[0].message, /^JSON syntax error: .+ — fix the JSON at line 2, column 14$/);
  assert.doesNotMatch(error.message, /\n/);
});

test('JSON configs with a key twice in one object are refused with the key and where it is', async () => {
  const members = `[{"name": "a", "model": ${JSON.stringify(S260K)}, "weight": 1, "weight": 0}]`;
  const file = write('duplicate.json', `{\n  "method": "gac",\n  "members": ${members},\n  "m\\u0065thod": "unite"\n}\n`);
  const error = await configErrorAsync(loadEnsembleConfig(file, { env: {} }));
  assert.deepEqual(
    error.issues.map((i) => [i.path, i.message]),
    [
      [`3:${members.indexOf('"weight": 0') + 14}`, 'duplicate key "weight" in the same object (JSON would keep only the last one) — remove one of them'],
      ['4:3', 'duplicate key "method" in the same object (JSON would keep only the last one) — remove one of them'],
    ],
  );
  // The same keys in different objects are fine.
  const ok = write('distinct.json', JSON.stringify({ method: 'gac', members: [{ name: 'a', model: S260K }, { name: 'b', model: S260K }] }));
  assert.equal((await loadEnsembleConfig(ok, { env: {} })).members.length, 2);
});

test('weights that are not finite numbers are refused in every config form', async () => {
  const member = (weight: string) => `{"name": "a", "model": ${JSON.stringify(S260K)}, "weight": ${weight}}`;
  for (const [name, text] of [['inf.json', `{"method": "gac", "members": [${member('1e999')}]}`], ['nan.yaml', `method: gac\nmembers: [${member('.nan')}]\n`], ['inf.yaml', `method: gac\nmembers: [${member('-.inf')}]\n`]] as const) {
    const error = await configErrorAsync(loadEnsembleConfig(write(name, text), { env: {} }));
    assert.match(issueAt(error, 'members[0].weight').message, /expected a number, got (-?Infinity|NaN)/, name);
  }
  assert.throws(() => parseEnsembleConfig({ method: 'gac', members: [{ name: 'a', model: S260K, weight: Number.NaN }] }), /members\[0\]\.weight: expected a number, got NaN/);
});

test('schema issues from a YAML file carry their line', async () => {
  const file = write('lines.yaml', `method: gac\nmembers:\n  - name: a\n    model: ${S260K}\n    weight: -2\n`);
  const error = await configErrorAsync(loadEnsembleConfig(file, { env: {} }));
  const issue = issueAt(error, 'members[0].weight');
  assert.deepEqual([issue.line, issue.column], [5, 13]);
  assert.equal(error.message, `${file}:5:13: members[0].weight: ${issue.message}`);
});

test('a missing, empty or non-mapping config file is a ConfigError', async () => {
  const missing = path.join(dir, 'nope.yaml');
  const error = await configErrorAsync(loadEnsembleConfig(missing));
  assert.equal(error.issues[0].path, '');
  assert.equal(error.message, `${missing}: config file not found (looked for ${missing}) — check the path`);

  const folder = path.join(dir, 'a-folder.yaml');
  mkdirSync(folder, { recursive: true });
  assert.match((await configErrorAsync(loadEnsembleConfig(folder))).message, /is a directory — give the path of a \.yaml or \.json config file/);

  assert.match((await configErrorAsync(loadEnsembleConfig(write('empty.yaml', '# nothing\n')))).message, /the config is empty/);
  assert.match((await configErrorAsync(loadEnsembleConfig(write('list.yaml', '- a\n- b\n')))).message, /the config must be a mapping of settings .* got a list/);
});

test('the exported schema also enforces the cross-field rules', () => {
  const result = ensembleConfigSchema.safeParse({
    method: 'gac',
    gate: { threshold: 0.5 },
    members: [
      { name: 'a', model: 'a.gguf' },
      { name: 'a', model: 'b.gguf' },
    ],
  });
  assert.equal(result.success, false);
  const messages = result.error!.issues.map((issue) => issue.message);
  assert.ok(messages.some((m) => m.startsWith('duplicate member name "a"')));
  assert.ok(messages.some((m) => m.startsWith('gating needs a primary member')));
});

test('gpu and gpuLayers: where members run, checked with the fix', () => {
  const valid = parse(base({ gpu: false, members: [{ name: 's260k', model: S260K, gpuLayers: 'max' }, { name: 'ts656k', model: TS656K, gpuLayers: 0 }] }));
  assert.equal(valid.gpu, false);
  assert.deepEqual(valid.members.map((m) => m.gpuLayers), ['max', 0]);
  for (const gpu of ['auto', 'cuda', 'vulkan', 'metal']) assert.equal(parse(base({ gpu })).gpu, gpu);
  assert.equal(parse(base()).gpu, undefined, 'left out: auto, decided when the members load');

  const fix = /— use auto \(default: a GPU when there is one, else the CPU\), cuda, vulkan, metal, or false \(unquoted\) to run on the CPU/;
  for (const [gpu, shown] of [['cpu', '"cpu"'], ['false', '"false"'], [true, 'true'], [1, '1']] as const) {
    const issue = issueAt(configError(() => parse(base({ gpu }))), 'gpu');
    assert.ok(issue.message.startsWith(`gpu must be auto, cuda, vulkan, metal or false, got ${shown} `), issue.message);
    assert.match(issue.message, fix);
  }
  const layersFix = /— auto \(default\) fits what the GPU holds, max puts every layer on it, 0 keeps this member on the CPU/;
  for (const [gpuLayers, problem] of [[-1, /gpuLayers must be >= 0, got -1/], [1.5, /gpuLayers must be auto, max or an integer >= 0, got 1\.5/], ['all', /got "all"/]] as const) {
    const issue = issueAt(configError(() => parse(members({ name: 'a', model: S260K, gpuLayers }))), 'members[0].gpuLayers');
    assert.match(issue.message, problem);
    assert.match(issue.message, layersFix);
  }
  const remote = configError(() => parse(members({ name: 'r', url: 'http://gpu-box:8000/v1', tokenizer: TS656K, gpuLayers: 10 })));
  assert.match(issueAt(remote, 'members[0].gpuLayers').message, /a member with `url` runs on its server, which places its own — remove gpuLayers here/);
  assert.match(issueAt(configError(() => parse(base({ members: [{ name: 'a', model: S260K, gpulayers: 3 }] }))), 'members[0].gpulayers').message, /did you mean "gpuLayers"/);
});

test('a GGUF model given as the config is recognised from its magic bytes, in one line', async () => {
  const error = await configErrorAsync(loadEnsembleConfig(S260K));
  assert.equal(error.issues.length, 1);
  assert.doesNotMatch(error.message, /\n/);
  assert.match(error.message, /this is a GGUF model, not a config file — pass models with -m/);
});

test('any other binary file given as the config gets one clear message', async () => {
  const zeros = write('weights.bin', '');
  writeFileSync(zeros, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0xff, 0xfe]));
  const error = await configErrorAsync(loadEnsembleConfig(zeros));
  assert.equal(error.issues.length, 1);
  assert.match(error.message, /this is not a text file \(a zero byte at byte 4\) — a config is a YAML or JSON text file/);
  const latin1 = write('latin1.yaml', '');
  writeFileSync(latin1, Buffer.from('method: gac # caf\xe9\n', 'latin1'));
  assert.match((await configErrorAsync(loadEnsembleConfig(latin1))).message, /bytes that are not UTF-8 text/);
});

test('a vocabulary-only GGUF as a model is refused before llama.cpp sees it; as a tokenizer it is fine', () => {
  const vocab = path.join(SHARED, 'vocab/ggml-vocab-llama-spm.gguf');
  const error = configError(() => parse(members({ name: 'v', model: vocab })));
  assert.match(issueAt(error, 'members[0].model').message, /is a vocabulary-only GGUF \(it holds a tokenizer but no weights\) — use the full model's GGUF/);
  const remote = parse(members({ name: 'r', url: 'http://127.0.0.1:9/v1', tokenizer: vocab }));
  assert.equal(remote.members[0].tokenizer, vocab);
});
