// LangChain.js against `chorus serve -c examples/tinystories.yaml` (npx tsx examples/langchain.ts).
import { ChatOpenAI } from "@langchain/openai";
import { HumanMessage, ToolMessage } from "@langchain/core/messages";
import { z } from "zod";

const chat = new ChatOpenAI({ model: "tinystories", apiKey: "none", configuration: { baseURL: "http://127.0.0.1:8080/v1" }, temperature: 0 });
const card = await chat.withStructuredOutput(z.object({ name: z.string(), age: z.number() })).invoke("Make a card for Lily.");
console.log(card);
const question = new HumanMessage("What is the weather in Paris?");
const tools = [{ type: "function" as const, function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
const call = await chat.bindTools(tools, { tool_choice: "required" }).invoke([question]);
const reply = await chat
  .bindTools(tools, { tool_choice: "none" })
  .invoke([question, call, new ToolMessage({ tool_call_id: call.tool_calls![0]!.id!, content: '{"sky": "sunny"}' })]);
console.log(call.tool_calls, reply.content);
