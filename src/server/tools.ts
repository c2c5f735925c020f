/**
 * Tool calls over the OpenAI API. A call is generated as the JSON object
 * `{"name": "<function>", "arguments": {...}}` under a grammar built from the tools' parameter
 * schemas, so its arguments always parse and validate; the answer returns it as `tool_calls`.
 * `tool_choice`: `required` and a named function constrain the whole answer to a call; `auto`
 * lets the answer be a call (it starts with `{`) or text (anything else); `none` never calls.
 */
import { randomUUID } from "node:crypto";
import type { ChatTool } from "../members/chat-template.js";
import { GrammarConstraint } from "../constraints/matcher.js";
import { JsonGrammarCompiler, SchemaError, literal, type JsonSchema } from "../constraints/json-schema.js";
import type { TextConstraint } from "../constraints/constraint.js";
import type { Alternative } from "../constraints/grammar.js";
import { invalid } from "./errors.js";

export type ToolChoice = "none" | "auto" | "required" | { readonly type: "function"; readonly function: { readonly name: string } };

export interface ToolPlan {
  /** The tools as the members' chat templates take them. */
  readonly tools: readonly ChatTool[];
  readonly mode: "none" | "auto" | "required";
  /** The language of the answer; undefined when it is free text (`none`). */
  readonly constraint?: TextConstraint;
}

export function planTools(tools: readonly ChatTool[], choice: ToolChoice): ToolPlan {
  const names = tools.map((t) => t.function.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate !== undefined) throw invalid("tools", `tools: two functions are named '${duplicate}'; give each its own name`);
  if (choice === "none") return { tools, mode: "none" };
  let callable = tools;
  if (typeof choice === "object") {
    callable = tools.filter((t) => t.function.name === choice.function.name);
    if (callable.length === 0) throw invalid("tool_choice.function.name", `tool_choice.function.name: no tool is named '${choice.function.name}'; tools are ${names.join(", ")}`);
  }
  const compiler = new JsonGrammarCompiler();
  const calls: Alternative[] = callable.map((t) => {
    const at = tools.indexOf(t);
    const schema = (t.function.parameters ?? { type: "object" }) as JsonSchema;
    const type = typeof schema === "object" ? schema.type : undefined;
    if (type !== undefined && type !== "object") throw invalid(`tools[${at}].function.parameters.type`, `tools[${at}].function.parameters.type: a function's parameters are an object schema (type: object)`);
    const sp = compiler.space();
    let args: Alternative;
    try {
      args = compiler.value(schema, "", schema);
    } catch (error) {
      if (error instanceof SchemaError) {
        const param = `tools[${at}].function.parameters${error.path ? `.${error.path}` : ""}`;
        throw invalid(param, `${param}: ${error.message.slice(error.path ? error.path.length + 2 : 0)}`);
      }
      throw error;
    }
    return [...literal(`{"name":`), sp, ...literal(JSON.stringify(t.function.name)), ...literal(","), sp, ...literal(`"arguments":`), sp, ...args, ...literal("}")];
  });
  const call: Alternative = [compiler.builder.helper("call", calls)];
  const mode = choice === "auto" ? "auto" : "required";
  // auto: a call, or text whose first character is not `{`.
  const text: Alternative = [{ kind: "chars", ranges: [0x7b, 0x7b], negated: true }, ...compiler.builder.repeat("text", [{ kind: "chars", ranges: [], negated: true }], 0, Infinity)];
  const grammar = compiler.build(mode === "auto" ? [compiler.builder.helper("answer", [call, text, []])] : call);
  return { tools, mode, constraint: new GrammarConstraint(grammar, mode === "auto" ? "the tool calls or text" : "the tool call") };
}

export interface ToolCallDelta {
  readonly index: 0;
  readonly id?: string;
  readonly type?: "function";
  readonly function: { readonly name?: string; readonly arguments: string };
}

const CALL_HEAD = /^\{"name": ?("(?:[^"\\]|\\.)*"), ?"arguments": ?/;

/**
 * Reads a tool call out of the text as it is generated: the call's name once its head is
 * complete, then the arguments object piece by piece (the wrapper's closing brace left out).
 */
export class ToolCallReader {
  readonly id = `call_${randomUUID().replace(/-/g, "").slice(0, 24)}`;
  private text = "";
  private name: string | undefined;
  private argumentsStart = -1;
  private argumentsEnd = -1;
  private sent = 0;
  /** Scanner state over the arguments object: nesting depth, inside a string, after a backslash. */
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly mode: ToolPlan["mode"]) {}

  /** Whether the answer is a call (known from its first character). */
  get isCall(): boolean | undefined {
    if (this.mode === "none") return false;
    if (this.text.length === 0) return this.mode === "required" ? true : undefined;
    return this.text[0] === "{";
  }

  /** Takes the next piece of text; returns the deltas it completes (the first one names the call). */
  push(piece: string): ToolCallDelta[] {
    const start = this.text.length;
    this.text += piece;
    if (this.isCall !== true) return [];
    const deltas: ToolCallDelta[] = [];
    if (this.name === undefined) {
      const head = CALL_HEAD.exec(this.text);
      if (!head) return [];
      this.name = JSON.parse(head[1]!) as string;
      this.argumentsStart = this.sent = head[0].length;
      deltas.push({ index: 0, id: this.id, type: "function", function: { name: this.name, arguments: "" } });
    }
    this.scan(Math.max(start, this.argumentsStart));
    const end = this.argumentsEnd >= 0 ? this.argumentsEnd : this.text.length;
    if (end > this.sent) {
      deltas.push({ index: 0, function: { arguments: this.text.slice(this.sent, end) } });
      this.sent = end;
    }
    return deltas;
  }

  /** The finished call (after the whole text was pushed), or undefined when the answer is text. */
  call(): { id: string; type: "function"; function: { name: string; arguments: string } } | undefined {
    if (this.isCall !== true || this.name === undefined || this.argumentsEnd < 0) return undefined;
    return { id: this.id, type: "function", function: { name: this.name, arguments: this.text.slice(this.argumentsStart, this.argumentsEnd) } };
  }

  private scan(from: number): void {
    for (let i = from; i < this.text.length && this.argumentsEnd < 0; i++) {
      const c = this.text[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === "\\") this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') {
        this.inString = true;
      } else if (c === "{" || c === "[") {
        this.depth++;
      } else if (c === "}" || c === "]") {
        if (--this.depth === 0) this.argumentsEnd = i + 1;
      }
    }
  }
}
