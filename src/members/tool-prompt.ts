/**
 * The fallback for members whose chat template does not render tools (or that have no template):
 * the tools are described in a system message, earlier tool calls become the assistant's text in
 * the form chorus generates calls in, and tool results become user turns. Templates that read
 * `tools` get the conversation as it is instead.
 */
import type { ChatMessage, ChatTool, ChatToolCall } from "./chat-template.js";

/** The text of a call as chorus generates it: `{"name": "...", "arguments": {...}}`. */
export function toolCallText(call: ChatToolCall): string {
  return `{"name": ${JSON.stringify(call.function.name)}, "arguments": ${typeof call.function.arguments === "string" ? call.function.arguments : JSON.stringify(call.function.arguments)}}`;
}

export function toolInstructions(tools: readonly ChatTool[]): string {
  const lines = tools.map((t) => JSON.stringify({ name: t.function.name, description: t.function.description, parameters: t.function.parameters }));
  return `You can call these tools. To call one, reply with only a JSON object {"name": <tool name>, "arguments": <its arguments>}.\nTools:\n${lines.join("\n")}`;
}

/** The conversation with tools spelled out in plain turns (system, user, assistant only). */
export function messagesWithoutToolSupport(messages: readonly ChatMessage[], tools: readonly ChatTool[] | undefined): ChatMessage[] {
  const out: ChatMessage[] = messages.map((m) => {
    if (m.role === "tool") return { role: "user", content: `Result of ${m.name ?? "the tool call"}${m.tool_call_id ? ` ${m.tool_call_id}` : ""}: ${m.content}` };
    if (m.role === "assistant" && m.tool_calls && m.tool_calls.length > 0) {
      const calls = m.tool_calls.map(toolCallText).join("\n");
      return { role: "assistant", content: m.content ? `${m.content}\n${calls}` : calls };
    }
    return { role: m.role, content: m.content };
  });
  if (tools && tools.length > 0) {
    const instructions = toolInstructions(tools);
    if (out[0]?.role === "system") out[0] = { role: "system", content: `${out[0].content}\n\n${instructions}` };
    else out.unshift({ role: "system", content: instructions });
  }
  return out;
}
