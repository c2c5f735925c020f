import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readGgufFileInfo } from 'node-llama-cpp';
import { ChatTemplateError, renderChatPrompt, type ChatMessage } from '../src/members/chat-template.js';
import { SHARED } from './helpers/models.js';

const HF = path.join(SHARED, 'vocab/hf');
const VOCAB = path.join(SHARED, 'vocab');

interface HfTokenizerConfig {
  chat_template: string;
  bos_token: string | null;
  eos_token: string | null;
}

function hfConfig(name: string): { template: string; specials: { bosToken?: string; eosToken?: string } } {
  const config = JSON.parse(readFileSync(path.join(HF, name, 'tokenizer_config.json'), 'utf8')) as HfTokenizerConfig;
  return {
    template: config.chat_template,
    specials: { bosToken: config.bos_token ?? undefined, eosToken: config.eos_token ?? undefined },
  };
}

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
];

// Expected strings are what transformers' apply_chat_template(..., tokenize=False) produces:
// checked against Python jinja2 with transformers' settings (see the last test).

test('Llama-3: system + user with the generation prompt', () => {
  const { template, specials } = hfConfig('llama3');
  assert.deepEqual(specials, { bosToken: '<|begin_of_text|>', eosToken: '<|end_of_text|>' });
  assert.equal(
    renderChatPrompt(template, conversation, specials),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  );
});

test('Llama-3: the template trims contents and always appends the assistant header', () => {
  const { template, specials } = hfConfig('llama3');
  const messages: ChatMessage[] = [{ role: 'user', content: '  Hi there \n' }];
  const expected = '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';
  assert.equal(renderChatPrompt(template, messages, specials), expected);
  // This (base-model) template ignores add_generation_prompt: the header comes regardless.
  assert.equal(renderChatPrompt(template, messages, specials, { addGenerationPrompt: false }), expected);
});

test('Qwen3: system + user with the generation prompt, no <think> block unless asked', () => {
  const { template, specials } = hfConfig('qwen3');
  assert.deepEqual(specials, { bosToken: undefined, eosToken: '<|im_end|>' });
  const prefix =
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n';
  assert.equal(renderChatPrompt(template, conversation, specials), `${prefix}<|im_start|>assistant\n`);
  assert.equal(renderChatPrompt(template, conversation, specials, { addGenerationPrompt: false }), prefix);
  // enable_thinking=false (a transformers kwarg) adds the empty think block.
  assert.equal(
    renderChatPrompt(template, conversation, specials, { variables: { enable_thinking: false } }),
    `${prefix}<|im_start|>assistant\n<think>\n\n</think>\n\n`,
  );
});

test('Qwen3: reasoning is dropped from earlier assistant turns', () => {
  const { template, specials } = hfConfig('qwen3');
  const messages: ChatMessage[] = [
    { role: 'user', content: '2+2?' },
    { role: 'assistant', content: '<think>\nadd them\n</think>\n\n4' },
    { role: 'user', content: 'And 3+3?' },
  ];
  assert.equal(
    renderChatPrompt(template, messages, specials),
    '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n',
  );
});

/** GGUF files in the shared vocab folder that carry `tokenizer.chat_template`. */
async function ggufTemplates(): Promise<{ file: string; template: string; bosToken?: string; eosToken?: string }[]> {
  const found = [];
  for (const file of readdirSync(VOCAB).filter((f) => f.endsWith('.gguf')).sort()) {
    const info = await readGgufFileInfo(path.join(VOCAB, file), { readTensorInfo: false });
    const tokenizer = info.metadata.tokenizer as {
      chat_template?: unknown;
      ggml?: { tokens?: readonly string[]; bos_token_id?: number; eos_token_id?: number };
    };
    if (typeof tokenizer?.chat_template !== 'string') continue;
    const tokens = tokenizer.ggml?.tokens ?? [];
    const bos = tokenizer.ggml?.bos_token_id;
    const eos = tokenizer.ggml?.eos_token_id;
    found.push({
      file,
      template: tokenizer.chat_template,
      bosToken: bos === undefined ? undefined : tokens[bos],
      eosToken: eos === undefined ? undefined : tokens[eos],
    });
  }
  return found;
}

test('GGUF tokenizer.chat_template: phi-3 carries one and it renders', async () => {
  const templates = await ggufTemplates();
  const phi3 = templates.find((t) => t.file === 'ggml-vocab-phi-3.gguf');
  assert.ok(phi3, `phi-3 should carry a chat template; found: ${templates.map((t) => t.file).join(', ') || 'none'}`);
  assert.equal(phi3.bosToken, '<s>');
  assert.equal(phi3.eosToken, '<|endoftext|>');
  const messages: ChatMessage[] = [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Hello' },
    { role: 'assistant', content: 'Hi!' },
    { role: 'user', content: 'Tell me a story.' },
  ];
  // This template starts with the BOS text, drops system messages, and always ends with the
  // assistant tag after a user turn (it does not look at add_generation_prompt).
  assert.equal(
    renderChatPrompt(phi3.template, messages, phi3),
    '<s><|user|>\nHello<|end|>\n<|assistant|>\nHi!<|end|>\n<|user|>\nTell me a story.<|end|>\n<|assistant|>\n',
  );
  // Every chat template found in the shared GGUFs renders.
  for (const t of templates) assert.equal(typeof renderChatPrompt(t.template, conversation, t), 'string', t.file);
});

test('raise_exception becomes a ChatTemplateError with the template\'s message', () => {
  const template = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}";
  assert.throws(
    () => renderChatPrompt(template, conversation, {}),
    (error: unknown) => error instanceof ChatTemplateError && /System role not supported/.test(error.message),
  );
  assert.equal(renderChatPrompt(template, [{ role: 'user', content: 'ok' }], {}), 'ok');
});

test('templates that cannot be parsed or rendered give a ChatTemplateError suggesting chatTemplate:', () => {
  for (const template of ['{% for m in messages %}', '{{ messages[0].content.no_such_method() }}', '{% if %}']) {
    assert.throws(
      () => renderChatPrompt(template, conversation, {}),
      (error: unknown) =>
        error instanceof ChatTemplateError &&
        /the chat template could not be (parsed|rendered)/.test(error.message) &&
        error.message.includes('chatTemplate:'),
      template,
    );
  }
});

test('standard variables: bos/eos only when given, add_generation_prompt, range, namespace, loop controls', () => {
  const template =
    "{% if bos_token is defined %}[{{ bos_token }}]{% endif %}{{ eos_token | default('no-eos') }}|{{ add_generation_prompt }}|" +
    '{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}|' +
    '{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}';
  assert.equal(renderChatPrompt(template, conversation, {}), 'no-eos|true|02|2');
  assert.equal(renderChatPrompt(template, conversation, { bosToken: '<s>', eosToken: '</s>' }, { addGenerationPrompt: false }), '[<s>]</s>|false|02|2');
});

test('strftime_now is available', () => {
  assert.match(renderChatPrompt("{{ strftime_now('%d %b %Y') }}", [], {}), /^\d\d [A-Z][a-z]{2} \d{4}$/);
});

const JINJA2_SCRIPT = `
import json, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import loopcontrols
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
out = []
for r in json.load(sys.stdin):
    kw = {k: v for k, v in r['specials'].items() if v is not None}
    out.append(env.from_string(r['template']).render(messages=r['messages'], tools=None, documents=None,
               add_generation_prompt=r['agp'], **kw, **r['vars']))
print(json.dumps(out))
`;

const hasJinja2 = spawnSync('python3', ['-c', 'import jinja2'], { stdio: 'ignore' }).status === 0;

test('renders exactly as Python jinja2 with transformers\' settings', { skip: hasJinja2 ? false : 'python3 with jinja2 not available' }, async () => {
  const sources = [hfConfig('llama3'), hfConfig('qwen3'), ...(await ggufTemplates()).map((t) => ({ template: t.template, specials: t }))];
  const conversations: ChatMessage[][] = [
    conversation,
    [...conversation, { role: 'assistant', content: '<think>\nhmm\n</think>\n\nParis.' }, { role: 'user', content: ' And Italy? ' }],
  ];
  const requests = [];
  const ours = [];
  for (const { template, specials } of sources) {
    for (const messages of conversations) {
      for (const agp of [true, false]) {
        for (const vars of [{}, { enable_thinking: false }]) {
          requests.push({ template, messages, agp, vars, specials: { bos_token: specials.bosToken ?? null, eos_token: specials.eosToken ?? null } });
          ours.push(renderChatPrompt(template, messages, specials, { addGenerationPrompt: agp, variables: vars }));
        }
      }
    }
  }
  const python = spawnSync('python3', ['-c', JINJA2_SCRIPT], { input: JSON.stringify(requests), encoding: 'utf8' });
  assert.equal(python.status, 0, python.stderr);
  assert.deepEqual(ours, JSON.parse(python.stdout) as string[]);
});
