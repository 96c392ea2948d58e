// Runs one scenario against the gateway's Chat Completions door with the official `openai` npm package and
// prints what a program would see, as JSON.
// Usage: GATEWAY_URL=http://127.0.0.1:8080 GATEWAY_KEY=cg-... node openai.mjs SCENARIO [MODEL]
import OpenAI from "openai";

const baseURL = `${process.env.GATEWAY_URL}/v1`;
const apiKey = process.env.GATEWAY_KEY;
const [scenario, model = "claude-sonnet-4-6"] = process.argv.slice(2);
if (!process.env.GATEWAY_URL || !apiKey || !scenario) {
  console.error("usage: GATEWAY_URL=... GATEWAY_KEY=... node openai.mjs SCENARIO [MODEL]");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const PIXEL =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const hello = [{ role: "user", content: "Say hello." }];

function summary(completion) {
  const choice = completion.choices[0];
  return {
    object: completion.object,
    model: completion.model,
    content: choice.message.content,
    tool_calls: choice.message.tool_calls ?? null,
    finish_reason: choice.finish_reason,
    usage: completion.usage,
  };
}

const scenarios = {
  async create() {
    return summary(await client.chat.completions.create({ model, messages: hello, max_completion_tokens: 200 }));
  },

  async stream_text() {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Tell me a story." }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const withChoices = chunks.filter((chunk) => chunk.choices.length > 0);
    return {
      chunks: chunks.length,
      objects: [...new Set(chunks.map((chunk) => chunk.object))],
      text: withChoices.map((chunk) => chunk.choices[0].delta.content ?? "").join(""),
      finish_reasons: withChoices.map((chunk) => chunk.choices[0].finish_reason),
      last: chunks[chunks.length - 1],
    };
  },

  async stream_tools() {
    // The SDK's own accumulation of streamed tool-call argument deltas.
    const stream = client.chat.completions.stream({
      model,
      messages: [{ role: "user", content: "What is the weather in Oslo?" }],
      tools: [WEATHER],
      tool_choice: "required",
    });
    let argumentDeltas = 0;
    stream.on("tool_calls.function.arguments.delta", () => {
      argumentDeltas += 1;
    });
    const completion = await stream.finalChatCompletion();
    return { ...summary(completion), argument_deltas: argumentDeltas };
  },

  async round_trip() {
    const messages = [{ role: "user", content: "Weather in Oslo?" }];
    const first = await client.chat.completions.create({
      model,
      messages,
      tools: [WEATHER],
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    const call = first.choices[0].message.tool_calls[0];
    messages.push(first.choices[0].message);
    messages.push({ role: "tool", tool_call_id: call.id, content: "Sunny, 21 °C" });
    const second = await client.chat.completions.create({ model, messages, tools: [WEATHER] });
    return { first: summary(first), second: summary(second) };
  },

  async image() {
    const ask = (url) =>
      client.chat.completions.create({
        model,
        max_tokens: 50,
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "What is in this picture?" },
              { type: "image_url", image_url: { url } },
            ],
          },
        ],
      });
    return { pixel: summary(await ask(PIXEL)), web: summary(await ask("https://example.com/cat.png")) };
  },

  async json_schema() {
    const schema = {
      type: "object",
      properties: { city: { type: "string" }, population: { type: "integer" } },
      required: ["city", "population"],
      additionalProperties: false,
    };
    return summary(
      await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "The largest city of Norway?" }],
        response_format: { type: "json_schema", json_schema: { name: "city", schema, strict: true } },
      }),
    );
  },

  async cached() {
    const rules = Array.from({ length: 400 }, (_, n) => `Rule ${n}: answer politely and cite section ${n}.`);
    const messages = [
      // A prompt of this run's own: the simulator's cache outlives a test.
      { role: "system", content: `You are support desk ${crypto.randomUUID()}. ${rules.join(" ")}` },
      { role: "user", content: "My order has not arrived." },
    ];
    const first = await client.chat.completions.create({ model, messages, max_tokens: 100 });
    messages.push({ role: "assistant", content: first.choices[0].message.content });
    messages.push({ role: "user", content: "It was order 1234." });
    const second = await client.chat.completions.create({ model, messages, max_tokens: 100 });
    return { first: first.usage, second: second.usage };
  },

  async models() {
    const listed = [];
    for await (const entry of client.models.list()) listed.push(entry);
    return { ids: listed.map((entry) => entry.id), objects: [...new Set(listed.map((entry) => entry.object))] };
  },

  // Errors: the SDK's exception class and what it read from the reply.
  error_n: () => client.chat.completions.create({ model, messages: hello, n: 2 }),
  error_model: () => client.chat.completions.create({ model: "gpt-4o", messages: hello }),
  error_rate_limit: () =>
    client.chat.completions.create(
      { model, messages: hello },
      { headers: { "x-simulator-fault": "rate_limit" } },
    ),
  // The SDK would retry a 429 twice: a spent budget says not to.
  error_retried: () =>
    new OpenAI({ baseURL, apiKey, maxRetries: 2 }).chat.completions.create({ model, messages: hello }),
};

try {
  console.log(JSON.stringify({ result: await scenarios[scenario]() }));
} catch (error) {
  console.log(
    JSON.stringify({
      error: {
        class: error?.constructor?.name ?? "Error",
        is_api_error: error instanceof OpenAI.APIError,
        status: error?.status ?? null,
        type: error?.type ?? null,
        code: error?.code ?? null,
        param: error?.param ?? null,
        message: String(error?.message ?? error),
        retry_after: error?.headers?.get?.("retry-after") ?? null,
        should_retry: error?.headers?.get?.("x-should-retry") ?? null,
        request_id: error?.requestID ?? null,
      },
    }),
  );
}
