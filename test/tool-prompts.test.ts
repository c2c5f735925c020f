import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { hfTokenizerSource } from "../src/members/hf-tokenizer.js";
import { MemberTokenizer } from "../src/members/member-tokenizer.js";
import type { ChatMessage, ChatTool } from "../src/members/chat-template.js";
import { messagesWithoutToolSupport } from "../src/members/tool-prompt.js";
import { surfaceToText } from "../src/tokens/vocabulary.js";
import { SHARED } from "./helpers/models.js";

const HF = path.join(SHARED, "vocab/hf");
const tools: ChatTool[] = [{ type: "function", function: { name: "get_weather", description: "The weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
const conversation: ChatMessage[] = [
  { role: "user", content: "What is the weather in Paris?" },
  { role: "assistant", content: "", tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }] },
  { role: "tool", content: '{"sky": "sunny"}', tool_call_id: "call_1", name: "get_weather" },
];

/** The prompt's text; control tokens (<|im_start|>, <|eot_id|>, …) have no text of their own. */
function rendered(name: string): string {
  const tokenizer = new MemberTokenizer(name, hfTokenizerSource(path.join(HF, name, "tokenizer.json")));
  const ids = tokenizer.promptTokens({ messages: conversation, tools }).prefix;
  return surfaceToText(ids.map((id) => tokenizer.vocabulary.surfaces[id] ?? "").join(""));
}

test("a template that reads `tools` (Qwen3) renders the tools, the call and its result natively", () => {
  const prompt = rendered("qwen3");
  assert.ok(prompt.includes('<tools>\n{"type": "function", "function": {"name": "get_weather"'), prompt);
  assert.ok(prompt.includes('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'), prompt);
  assert.ok(prompt.includes('<tool_response>\n{"sky": "sunny"}\n</tool_response>'), prompt);
  assert.ok(prompt.endsWith("</tool_response>\nassistant\n"), prompt.slice(-60));
});

test("a template without tool support (Llama-3.0) gets the fallback: tools in a system turn, the call as JSON, the result as a user turn", () => {
  const prompt = rendered("llama3");
  assert.ok(prompt.startsWith("system\n\nYou can call these tools."), prompt.slice(0, 200));
  assert.ok(prompt.includes('{"name":"get_weather","description":"The weather in a city","parameters":'), prompt);
  assert.ok(prompt.includes('assistant\n\n{"name": "get_weather", "arguments": {"city":"Paris"}}user\n\n'), prompt);
  assert.ok(prompt.includes('user\n\nResult of get_weather call_1: {"sky": "sunny"}assistant\n\n'), prompt);
});

test("the fallback keeps a system message first and joins the instructions to it", () => {
  const out = messagesWithoutToolSupport([{ role: "system", content: "Be brief." }, ...conversation], tools);
  assert.equal(out.length, 4);
  assert.match(out[0]!.content, /^Be brief\.\n\nYou can call these tools\. To call one, reply with only a JSON object/);
  assert.deepEqual(out.map((m) => m.role), ["system", "user", "assistant", "user"]);
  assert.deepEqual(messagesWithoutToolSupport([{ role: "user", content: "hi" }], undefined), [{ role: "user", content: "hi" }]);
});
