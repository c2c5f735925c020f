// Talks to `chorus serve -c examples/tinystories.yaml` with the official openai client.
// Run: node examples/openai-client.mjs   (the server must be running on 127.0.0.1:8080)
import OpenAI from "openai";

const client = new OpenAI({ baseURL: "http://127.0.0.1:8080/v1", apiKey: process.env.CHORUS_API_KEY ?? "none" });

const completion = await client.completions.create({ model: "tinystories", prompt: "Once upon a time", max_tokens: 30 });
console.log(completion.choices[0].text, completion.usage);

const stream = await client.chat.completions.create({
  model: "tinystories",
  messages: [{ role: "user", content: "Tell me a story about a cat." }],
  max_tokens: 40,
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? "");
process.stdout.write("\n");

// chorus's own per-request settings ride along in the body as `ensemble`.
const traced = await client.completions.create({
  model: "tinystories",
  prompt: "Lily and Ben",
  max_tokens: 4,
  ensemble: { method: "unite", weights: [1, 0.5], trace: true },
});
for (const step of traced.ensemble.trace) console.log(JSON.stringify(step.text), "←", step.trace.members.map((m) => `${m.name}: ${JSON.stringify(m.top[0]?.text)}`).join(", "));
