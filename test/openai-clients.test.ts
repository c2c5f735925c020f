/**
 * The server driven by the clients people use: the official openai SDK, the Vercel AI SDK
 * (@ai-sdk/openai-compatible) and LangChain.js (@langchain/openai), on the shared TinyStories
 * pair. The tiny models write poor content; the structure (JSON, tool calls, log-probabilities)
 * must be right every time.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ajv2020 } from "ajv/dist/2020.js";
import { z } from "zod";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { ChatOpenAI } from "@langchain/openai";
import { AIMessage, HumanMessage, ToolMessage } from "@langchain/core/messages";
import { Ensemble } from "../src/engine/ensemble.js";
import type { ChorusChatCompletion, ChorusCompletion } from "../src/server/wire.js";
import { PAIR } from "./helpers/models.js";
import { startServer, type RunningServer } from "./helpers/server.js";

const ajv = new Ajv2020({ strict: false });
const CARD = {
  type: "object",
  properties: { name: { type: "string" }, age: { type: "integer" }, friends: { type: "array", items: { type: "string" }, maxItems: 2 } },
  required: ["name", "age", "friends"],
  additionalProperties: false,
};
const WEATHER: OpenAI.ChatCompletionTool = {
  type: "function",
  function: { name: "get_weather", description: "The weather in a city", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer", minimum: 0 } }, required: ["city"], additionalProperties: false } },
};
const TIME: OpenAI.ChatCompletionTool = { type: "function", function: { name: "get_time", description: "The time now", parameters: { type: "object", properties: {} } } };

describe("the OpenAI API with real clients on the TinyStories pair", () => {
  let ensemble: Ensemble;
  let served: RunningServer;
  let client: OpenAI;

  before(async () => {
    ensemble = await Ensemble.create({ members: PAIR, threads: 1, maxTokens: 96 });
    served = await startServer({ models: [{ id: "pair", ensemble }], queueSize: 0, cors: "http://app.example" });
    client = served.client();
  });
  after(async () => {
    await served.close();
    await ensemble.dispose();
  });

  describe("openai SDK", () => {
    test("chat logprobs: the chosen piece's logprob is its combined score, the alternatives sum to at most 1; streamed alike", async () => {
      const body = { model: "pair", messages: [{ role: "user" as const, content: "Once upon a time" }], max_tokens: 16, logprobs: true, top_logprobs: 4, ensemble: { trace: true, member_logprobs: true } };
      const answer = await client.post<ChorusChatCompletion>("/chat/completions", { body });
      const content = answer.choices[0]!.logprobs!.content;
      const trace = answer.ensemble!.trace!;
      assert.equal(content.length, trace.length);
      assert.equal(content.map((c) => c.token).join(""), answer.choices[0]!.message.content);
      content.forEach((entry, i) => {
        assert.ok(Math.abs(entry.logprob - Math.log(trace[i]!.trace.winner.probability)) < 1e-9);
        assert.deepEqual(entry.bytes, [...Buffer.from(entry.token)]);
        const mass = entry.top_logprobs.reduce((sum, t) => sum + Math.exp(t.logprob), 0);
        assert.ok(mass <= 1 + 1e-9 && entry.top_logprobs.length <= 4, `alternatives sum to ${mass}`);
        assert.equal(entry.top_logprobs[0]!.logprob, entry.logprob, "greedy: the chosen piece is the best");
      });
      assert.deepEqual(answer.ensemble!.member_logprobs![0]!.map((m) => m.name), ["s260k", "ts656k"]);

      const stream = await client.chat.completions.create({ model: "pair", messages: body.messages, max_tokens: 16, logprobs: true, top_logprobs: 4, stream: true });
      const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
      for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
      // The same pieces and alternatives; log-probabilities to llama.cpp's rounding, which differs
      // with the batch a position was decoded in (the second request re-decodes what the first
      // decoded within its prompt; see README, "Exactness and batches").
      const shape = (entries: OpenAI.ChatCompletionTokenLogprob[]) => entries.map((e) => ({ ...e, logprob: 0, top_logprobs: e.top_logprobs.map((t) => ({ ...t, logprob: 0 })) }));
      assert.deepEqual(shape(streamed), shape(content));
      streamed.forEach((e, i) => {
        assert.ok(Math.abs(e.logprob - content[i]!.logprob) < 1e-5, `${e.token}: ${e.logprob} vs ${content[i]!.logprob}`);
        e.top_logprobs.forEach((t, k) => assert.ok(Math.abs(t.logprob - content[i]!.top_logprobs[k]!.logprob) < 1e-5));
      });
    });

    test("completions logprobs: tokens, token_logprobs, top_logprobs and text_offset, streamed and not", async () => {
      const response = await client.completions.create({ model: "pair", prompt: "Lily and Ben went to the park.", max_tokens: 12, logprobs: 3 });
      const lp = response.choices[0]!.logprobs!;
      const text = response.choices[0]!.text;
      assert.equal(lp.tokens!.join(""), text);
      lp.text_offset!.forEach((offset, i) => assert.equal(text.slice(offset, offset + lp.tokens![i]!.length), lp.tokens![i]));
      lp.top_logprobs!.forEach((top, i) => {
        assert.ok(Object.values(top).reduce((s, v) => s + Math.exp(v), 0) <= 1 + 1e-9);
        assert.equal(Math.max(...Object.values(top)), lp.token_logprobs![i]);
      });
      const stream = await client.completions.create({ model: "pair", prompt: "Lily and Ben went to the park.", max_tokens: 12, logprobs: 3, stream: true });
      const tokens: string[] = [];
      for await (const chunk of stream) tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
      assert.deepEqual(tokens, lp.tokens);
    });

    test("response_format json_schema and json_object: the content parses and validates, streamed and not", async () => {
      const validate = ajv.compile(CARD);
      for (const prompt of ["Make a card for Lily.", "Tom is a big dog.", "Once upon a time"]) {
        const answer = await client.chat.completions.create({
          model: "pair",
          messages: [{ role: "user", content: prompt }],
          response_format: { type: "json_schema", json_schema: { name: "card", schema: CARD, strict: true } },
        });
        const value: unknown = JSON.parse(answer.choices[0]!.message.content!);
        assert.ok(validate(value), answer.choices[0]!.message.content!);
        assert.equal(answer.choices[0]!.finish_reason, "stop");
      }
      const stream = await client.chat.completions.create({ model: "pair", messages: [{ role: "user", content: "A card" }], response_format: { type: "json_object" }, stream: true, temperature: 1, seed: 3 });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      assert.equal(typeof JSON.parse(text), "object");
    });

    test("tools: required and named calls return tool_calls whose arguments validate, streamed as deltas; a tool result turn is answered", async () => {
      const validate = ajv.compile(WEATHER.function.parameters!);
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];
      const answer = await client.chat.completions.create({ model: "pair", messages, tools: [WEATHER, TIME], tool_choice: "required" });
      const choice = answer.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls");
      assert.equal(choice.message.content, null);
      const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      assert.ok(["get_weather", "get_time"].includes(call.function.name));
      if (call.function.name === "get_weather") assert.ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);

      const named = await client.chat.completions.create({ model: "pair", messages, tools: [WEATHER, TIME], tool_choice: { type: "function", function: { name: "get_weather" } } });
      const namedCall = named.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      assert.equal(namedCall.function.name, "get_weather");
      assert.ok(validate(JSON.parse(namedCall.function.arguments)));

      const stream = await client.chat.completions.create({ model: "pair", messages, tools: [WEATHER, TIME], tool_choice: { type: "function", function: { name: "get_weather" } }, stream: true });
      let name = "";
      let args = "";
      let id = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
          id ||= d.id ?? "";
          name += d.function?.name ?? "";
          args += d.function?.arguments ?? "";
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(name, "get_weather");
      assert.equal(args, namedCall.function.arguments, "the same call, streamed");
      assert.match(id, /^call_/);
      assert.equal(finish, "tool_calls");

      const none = await client.chat.completions.create({ model: "pair", messages, tools: [WEATHER], tool_choice: "none", max_tokens: 12 });
      assert.equal(none.choices[0]!.message.tool_calls, undefined);
      assert.equal(none.choices[0]!.finish_reason, "length");

      const auto = await client.chat.completions.create({ model: "pair", messages, tools: [WEATHER], max_tokens: 60 });
      const autoCall = auto.choices[0]!.message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall | undefined;
      if (autoCall) assert.ok(validate(JSON.parse(autoCall.function.arguments)));
      else assert.ok(!auto.choices[0]!.message.content!.startsWith("{"), "auto: text never starts like a call");

      const followUp = await client.chat.completions.create({
        model: "pair",
        messages: [...messages, { role: "assistant", content: null, tool_calls: [namedCall] }, { role: "tool", tool_call_id: namedCall.id, content: '{"sky": "sunny"}' }],
        tools: [WEATHER],
        tool_choice: "none",
        max_tokens: 10,
      });
      assert.ok(followUp.choices[0]!.message.content!.length > 0);
    });

    test("fields chorus cannot honour are refused naming them; documented ones are ignored", async () => {
      const refused = async (body: Record<string, unknown>, param: RegExp, message: RegExp) =>
        assert.rejects(client.post("/chat/completions", { body: { model: "pair", messages: [{ role: "user", content: "hi" }], max_tokens: 2, ...body } }), (e: unknown) => {
          assert.ok(e instanceof OpenAI.BadRequestError, String(e));
          assert.match(String(e.param), param);
          assert.match(e.message, message);
          return true;
        });
      await refused({ modalities: ["audio"] }, /^modalities$/, /does not support this field; remove it/);
      await refused({ frequency_penalty: 0.5 }, /^frequency_penalty$/, /does not apply penalties/);
      await refused({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }] }, /^messages\[0\]\.content\[0\]$/, /text only/);
      await refused({ messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }] }, /^messages\[0\]\.content\[0\]$/, /'input_audio' parts are not supported/);
      await refused(
        { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { mail: { type: "string", format: "email" } } } } } },
        /^response_format\.json_schema\.schema\.properties\.mail\.format$/,
        /'format' is not supported/,
      );
      await refused({ tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } }, /^tool_choice\.function\.name$/, /no tool is named 'nope'/);
      await refused({ messages: [{ role: "tool", content: "x" }] }, /^messages\[0\]\.tool_call_id$/, /needs the tool_call_id/);
      await refused({ response_format: { type: "json_object" }, max_tokens: 1 }, /^max_tokens$/, /raise max_tokens/);
      const ignored = await client.chat.completions.create({ model: "pair", messages: [{ role: "user", content: "hi" }], max_tokens: 2, user: "u1", frequency_penalty: 0, presence_penalty: 0, logit_bias: {}, store: false, parallel_tool_calls: true });
      assert.equal(ignored.choices[0]!.finish_reason, "length");
    });

    test("models: GET /v1/models/{id} and the context length; 429 carries Retry-After; CORS only for the configured origin", async () => {
      const card = await client.models.retrieve("pair");
      assert.equal((card as unknown as { context_length: number }).context_length, 512);
      await assert.rejects(client.models.retrieve("nope"), OpenAI.NotFoundError);

      const running = await client.completions.create({ model: "pair", prompt: "Once", max_tokens: 200, stream: true });
      const iterator = running[Symbol.asyncIterator]();
      await iterator.next();
      const busy = await fetch(`${served.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "pair", prompt: "x", max_tokens: 2 }) });
      assert.equal(busy.status, 429);
      assert.match(busy.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
      running.controller.abort();
      await iterator.next().catch(() => undefined);

      const preflight = (origin: string) =>
        fetch(`${served.url}/v1/chat/completions`, { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" } });
      const allowed = await preflight("http://app.example");
      assert.equal(allowed.status, 204);
      assert.equal(allowed.headers.get("access-control-allow-origin"), "http://app.example");
      assert.equal((await preflight("http://evil.example")).headers.get("access-control-allow-origin"), null);
      const plain = await startServer({ models: [{ id: "pair", ensemble }] });
      try {
        assert.equal((await fetch(`${plain.url}/v1/models`, { method: "OPTIONS", headers: { origin: "http://app.example" } })).status, 404, "CORS is off by default");
      } finally {
        await plain.close();
      }
    });
  });

  describe("Vercel AI SDK (@ai-sdk/openai-compatible)", () => {
    const model = () => createOpenAICompatible({ name: "chorus", baseURL: `${served.url}/v1`, supportsStructuredOutputs: true })("pair");

    test("generateText and streamText give the same text", async () => {
      const { text, finishReason } = await generateText({ model: model(), prompt: "Once upon a time", maxOutputTokens: 20 });
      assert.equal(finishReason, "length");
      const streamed = streamText({ model: model(), prompt: "Once upon a time", maxOutputTokens: 20 });
      let pieces = "";
      for await (const piece of streamed.textStream) pieces += piece;
      assert.equal(pieces, text);
      assert.ok(text.length > 20);
    });

    test("generateObject returns a valid object every time", async () => {
      const schema = z.object({ name: z.string(), age: z.number().int(), happy: z.boolean() });
      for (const prompt of ["Make a card for Lily.", "Ben has a red ball.", "The cat sat on the mat."]) {
        const { object } = await generateObject({ model: model(), schema, prompt });
        assert.ok(schema.safeParse(object).success, JSON.stringify(object));
      }
    });

    test("a tool call round trip: the call, its result sent back, the next answer", async () => {
      const calls: string[] = [];
      const result = await generateText({
        model: model(),
        prompt: "What is the weather in Paris?",
        tools: {
          weather: tool({
            description: "The weather in a city",
            inputSchema: z.object({ city: z.string() }),
            execute: async ({ city }) => {
              calls.push(city);
              return { city, sky: "sunny" };
            },
          }),
        },
        toolChoice: "required",
        stopWhen: stepCountIs(2),
        prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: "none" } : {}),
        maxOutputTokens: 60,
      });
      assert.equal(result.steps.length, 2);
      assert.equal(result.steps[0]!.toolCalls.length, 1);
      assert.equal(result.steps[0]!.toolCalls[0]!.toolName, "weather");
      assert.equal(calls.length, 1);
      assert.equal(result.steps[0]!.toolResults.length, 1);
      assert.ok(result.steps[1]!.text.length > 0, "the model answered after the tool result");
    });
  });

  describe("LangChain.js (@langchain/openai)", () => {
    const chat = () => new ChatOpenAI({ model: "pair", apiKey: "none", configuration: { baseURL: `${served.url}/v1` }, temperature: 0, maxTokens: 60 });

    test("invoke and stream give the same text", async () => {
      const message = await chat().invoke("Once upon a time");
      let streamed = "";
      for await (const chunk of await chat().stream("Once upon a time")) streamed += chunk.content as string;
      assert.equal(streamed, message.content);
      assert.ok((message.content as string).length > 20);
    });

    test("withStructuredOutput returns a valid object", async () => {
      const schema = z.object({ name: z.string(), age: z.number() });
      for (const prompt of ["Make a card for Lily.", "Tom is a big dog."]) {
        const object = await chat().withStructuredOutput(schema).invoke(prompt);
        assert.ok(schema.safeParse(object).success, JSON.stringify(object));
      }
    });

    test("bindTools: a tool call round trip", async () => {
      const tools = [WEATHER];
      const question = new HumanMessage("What is the weather in Paris?");
      const first = await chat().bindTools(tools, { tool_choice: "required" }).invoke([question]);
      assert.equal(first.tool_calls?.length, 1);
      const call = first.tool_calls![0]!;
      assert.equal(call.name, "get_weather");
      assert.equal(typeof call.args.city, "string");
      const result = new ToolMessage({ tool_call_id: call.id!, content: JSON.stringify({ sky: "sunny" }) });
      const second = await chat().bindTools(tools, { tool_choice: "none" }).invoke([question, new AIMessage({ content: "", tool_calls: first.tool_calls }), result]);
      assert.ok((second.content as string).length > 0);
      assert.equal(second.tool_calls?.length ?? 0, 0);
    });
  });

  test("the typed wire answer of a completion carries the ensemble summary", async () => {
    const answer = await client.post<ChorusCompletion>("/completions", { body: { model: "pair", prompt: "Once", max_tokens: 3, ensemble: { trace: true } } });
    assert.ok(answer.ensemble!.steps! >= 1 && answer.usage.completion_tokens <= 3, JSON.stringify(answer.usage));
  });
});
