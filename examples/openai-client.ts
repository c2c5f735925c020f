// Talks to `chorus serve -c examples/tinystories.yaml` with the official openai client.
// Run: npx tsx examples/openai-client.ts   (the server must be running on 127.0.0.1:8080)
// `npm run typecheck` compiles this file, so the types below stay what the server speaks.
import OpenAI from "openai";
import type { ChorusChatCompletion, ChorusChatRequest, ChorusCompletion, ChorusCompletionRequest } from "chorus-llm";

const client = new OpenAI({ baseURL: "http://127.0.0.1:8080/v1", apiKey: process.env.CHORUS_API_KEY ?? "none" });

const completion = await client.completions.create({ model: "tinystories", prompt: "Once upon a time", max_tokens: 30 });
console.log(completion.choices[0]!.text, completion.usage);

const stream = await client.chat.completions.create({
  model: "tinystories",
  messages: [{ role: "user", content: "Tell me a story about a cat." }],
  max_tokens: 40,
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? "");
process.stdout.write("\n");

// chorus's own per-request settings ride along in the body as `ensemble`; the answer carries the trace.
const request: ChorusCompletionRequest = {
  model: "tinystories",
  prompt: "Lily and Ben",
  max_tokens: 4,
  ensemble: { method: "unite", weights: [1, 0.5], trace: true },
};
const traced = await client.post<ChorusCompletion>("/completions", { body: request });
for (const step of traced.ensemble?.trace ?? []) {
  console.log(JSON.stringify(step.text), "←", step.trace.members.map((m) => `${m.name}: ${JSON.stringify(m.top[0]?.text)}`).join(", "));
}

// The ensemble's log-probabilities and each member's own, for every chosen piece.
const scored: ChorusChatRequest = {
  model: "tinystories",
  messages: [{ role: "user", content: "Once upon a time" }],
  max_tokens: 5,
  logprobs: true,
  top_logprobs: 3,
  ensemble: { member_logprobs: true },
};
const answer = await client.post<ChorusChatCompletion>("/chat/completions", { body: scored });
answer.choices[0]!.logprobs?.content.forEach((entry, i) => {
  const members = answer.ensemble?.member_logprobs?.[i]?.map((m) => `${m.name} ${m.logprob?.toFixed(2) ?? "—"}`).join(", ");
  console.log(JSON.stringify(entry.token), entry.logprob.toFixed(2), "·", members);
});
