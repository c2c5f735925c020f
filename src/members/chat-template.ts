/**
 * Chat prompts rendered exactly as Hugging Face transformers renders them
 * (`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`), from
 * the Jinja template stored in the GGUF (`tokenizer.chat_template`) or given in the config.
 *
 * node-llama-cpp's chat wrappers are not used: they do not reproduce Hugging Face's rendering
 * (see DESIGN.md), and the papers' numbers were produced with transformers' prompts.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  /** An assistant turn's tool calls, in Hugging Face's form (arguments as an object when they parse as JSON). */
  tool_calls?: readonly ChatToolCall[];
  /** A tool turn: the call it answers, and the tool's name when known. */
  tool_call_id?: string;
  name?: string;
}

export interface ChatToolCall {
  id?: string;
  type: 'function';
  function: { name: string; arguments: unknown };
}

/** A tool offered to the model, as chat templates take it (`tools` in transformers' apply_chat_template). */
export interface ChatTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: unknown };
}

export interface ChatSpecialTokens {
  /** Text of the BOS token, e.g. `<|begin_of_text|>`; left undefined in the template when absent. */
  bosToken?: string;
  /** Text of the EOS token, e.g. `<|im_end|>`. */
  eosToken?: string;
}

export interface RenderChatOptions {
  /** Pass `add_generation_prompt` to the template (default true). */
  addGenerationPrompt?: boolean;
  /**
   * Extra template variables, as transformers' `apply_chat_template(**kwargs)`, e.g.
   * `{ enable_thinking: false }` for Qwen3. They cannot override the standard variables.
   */
  variables?: Record<string, unknown>;
  /** Tools offered to the model, passed to the template as `tools`. */
  tools?: readonly ChatTool[];
}

/** Whether a template renders tools: it reads the `tools` variable (templates without tool support ignore it). */
export function templateTakesTools(template: string): boolean {
  return /\btools\b/.test(template);
}

function copyMessage(message: ChatMessage): Record<string, unknown> {
  const copy: Record<string, unknown> = { role: message.role, content: message.content };
  if (message.tool_calls) copy.tool_calls = structuredClone(message.tool_calls);
  if (message.tool_call_id !== undefined) copy.tool_call_id = message.tool_call_id;
  if (message.name !== undefined) copy.name = message.name;
  return copy;
}

/** A chat template that cannot be parsed or rendered, or that called `raise_exception`. */
export class ChatTemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatTemplateError';
  }
}

/** Thrown from the template's `raise_exception(...)`, to tell it apart from engine failures. */
class RaisedByTemplate extends Error {}

const FIX = 'set `chatTemplate:` for this member in the config to a template that works';

const templateCache = new Map<string, Template>();
const CACHE_LIMIT = 32;

function compile(template: string): Template {
  let compiled = templateCache.get(template);
  if (compiled) return compiled;
  try {
    compiled = new Template(template);
  } catch (error) {
    throw new ChatTemplateError(`the chat template could not be parsed (${errorText(error)}) — ${FIX}`, { cause: error });
  }
  if (templateCache.size >= CACHE_LIMIT) templateCache.delete(templateCache.keys().next().value as string);
  templateCache.set(template, compiled);
  return compiled;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Renders `messages` with a Hugging Face chat template. Variables passed to the template, as in
 * transformers: `messages`, `add_generation_prompt`, `bos_token` and `eos_token` (only when
 * given), `raise_exception`, and `strftime_now` (from the Jinja engine).
 *
 * Throws ChatTemplateError when the template cannot be parsed or rendered, or raises an
 * exception itself (then with the template's own message).
 */
export function renderChatPrompt(
  template: string,
  messages: readonly ChatMessage[],
  specials: ChatSpecialTokens,
  options: RenderChatOptions = {},
): string {
  const compiled = compile(template);
  // Template.render() declares its own `raise_exception`, which throws a plain Error that cannot
  // be told apart from the engine's own failures, and refuses to let it be redeclared; so build
  // the global environment here (same globals as Template.render) with our raise_exception.
  const env = new Environment();
  const globals: Record<string, unknown> = {
    true: true,
    false: false,
    none: null,
    True: true,
    False: false,
    None: null,
    range,
    strftime_now: strftimeNow,
    ...options.variables,
    // Plain copies: never hand the caller's objects to the engine.
    messages: messages.map(copyMessage),
    ...(options.tools ? { tools: structuredClone(options.tools) } : {}),
    add_generation_prompt: options.addGenerationPrompt ?? true,
    raise_exception: (message?: unknown) => {
      throw new RaisedByTemplate(message === undefined ? 'raise_exception() called' : String(message));
    },
  };
  if (specials.bosToken !== undefined) globals.bos_token = specials.bosToken;
  if (specials.eosToken !== undefined) globals.eos_token = specials.eosToken;

  try {
    for (const [name, value] of Object.entries(globals)) env.set(name, value);
    const result = new Interpreter(env).run(compiled.parsed).value;
    if (typeof result !== 'string') throw new Error(`rendering produced ${typeof result}, not text`);
    return result;
  } catch (error) {
    if (error instanceof RaisedByTemplate) {
      throw new ChatTemplateError(`the chat template refused the conversation: ${error.message}`, { cause: error });
    }
    throw new ChatTemplateError(`the chat template could not be rendered (${errorText(error)}) — ${FIX}`, { cause: error });
  }
}

/** Python's `range()`, as the Jinja engine's global of the same name. */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0) throw new Error('range() step must not be zero');
  const result: number[] = [];
  if (step > 0) for (let i = start; i < stop; i += step) result.push(i);
  else for (let i = start; i > stop; i += step) result.push(i);
  return result;
}

/** `strftime_now(format)` as transformers provides it (local time), for the directives templates use. */
function strftimeNow(format: string): string {
  const date = new Date();
  const pad2 = (n: number) => String(n).padStart(2, '0');
  return format.replace(/%[YmdbBHMSyjaAIp%]/g, (token) => {
    switch (token) {
      case '%Y':
        return String(date.getFullYear());
      case '%y':
        return pad2(date.getFullYear() % 100);
      case '%m':
        return pad2(date.getMonth() + 1);
      case '%d':
        return pad2(date.getDate());
      case '%j': {
        const startOfYear = new Date(date.getFullYear(), 0, 1);
        return String(Math.floor((date.getTime() - startOfYear.getTime()) / 86_400_000) + 1).padStart(3, '0');
      }
      case '%b':
        return MONTHS[date.getMonth()].slice(0, 3);
      case '%B':
        return MONTHS[date.getMonth()];
      case '%a':
        return DAYS[date.getDay()].slice(0, 3);
      case '%A':
        return DAYS[date.getDay()];
      case '%H':
        return pad2(date.getHours());
      case '%I':
        return pad2(((date.getHours() + 11) % 12) + 1);
      case '%p':
        return date.getHours() < 12 ? 'AM' : 'PM';
      case '%M':
        return pad2(date.getMinutes());
      case '%S':
        return pad2(date.getSeconds());
      default:
        return '%';
    }
  });
}

// Python's strftime uses the C locale's English names.
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
