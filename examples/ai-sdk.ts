// The Vercel AI SDK against `chorus serve -c examples/tinystories.yaml` (npx tsx examples/ai-sdk.ts).
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, stepCountIs, tool } from "ai";
import { z } from "zod";

const model = createOpenAICompatible({ name: "chorus", baseURL: "http://127.0.0.1:8080/v1", supportsStructuredOutputs: true })("tinystories");
const { object } = await generateObject({ model, schema: z.object({ name: z.string(), age: z.number().int() }), prompt: "Make a card for Lily." });
console.log(object);
const { steps } = await generateText({
  model,
  prompt: "What is the weather in Paris?",
  tools: { weather: tool({ inputSchema: z.object({ city: z.string() }), execute: async ({ city }) => ({ city, sky: "sunny" }) }) },
  toolChoice: "required",
  prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: "none" } : {}), // answer after the result
  stopWhen: stepCountIs(2),
});
console.log(steps.map((step) => ({ calls: step.toolCalls.map((c) => c.input), text: step.text })));
