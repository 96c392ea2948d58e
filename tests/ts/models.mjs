// Every model the gateway lists, answered through it with the official TypeScript SDK: one message and one
// stream per model, printed as JSON (what each reply says it is, how it stopped, its usage).
// Usage: GATEWAY_URL=... GATEWAY_KEY=... node models.mjs '{"max_tokens": 20, "messages": [...]}'
import Anthropic from "@anthropic-ai/sdk";
import { VERSION } from "@anthropic-ai/sdk/version";

const baseURL = process.env.GATEWAY_URL;
const apiKey = process.env.GATEWAY_KEY;
const [requestJson] = process.argv.slice(2);
if (!baseURL || !apiKey || !requestJson) {
  console.error("usage: GATEWAY_URL=... GATEWAY_KEY=... node models.mjs REQUEST_JSON");
  process.exit(2);
}

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });
const request = JSON.parse(requestJson);
const replies = [];
for await (const model of client.models.list({ limit: 5 })) {  // several pages: the SDK follows them
  const created = await client.messages.create({ ...request, model: model.id });
  const streamed = await client.messages.stream({ ...request, model: model.id }).finalMessage();
  replies.push({
    id: model.id,
    display_name: model.display_name,
    created: { model: created.model, stop_reason: created.stop_reason, output_tokens: created.usage.output_tokens },
    streamed: { model: streamed.model, stop_reason: streamed.stop_reason, output_tokens: streamed.usage.output_tokens },
  });
}
console.log(JSON.stringify({ sdk_version: VERSION, replies }));
