// One reply with the official TypeScript SDK, read as a program would read it, printed as JSON: the final
// message (streamed, or parsed with messages.parse when MODE is "parse"), the events and signatures seen on
// the way, and the parsed output of a structured-output request.
// Usage: GATEWAY_URL=... GATEWAY_KEY=... node replies.mjs stream|parse '{"model": ..., "messages": ...}' [FAULT]
import Anthropic from "@anthropic-ai/sdk";
import { jsonSchemaOutputFormat } from "@anthropic-ai/sdk/helpers/json-schema";
import { VERSION } from "@anthropic-ai/sdk/version";

const baseURL = process.env.GATEWAY_URL;
const apiKey = process.env.GATEWAY_KEY;
const [mode, requestJson, fault] = process.argv.slice(2);
if (!baseURL || !apiKey || !["stream", "parse"].includes(mode) || !requestJson) {
  console.error("usage: GATEWAY_URL=... GATEWAY_KEY=... node replies.mjs stream|parse REQUEST_JSON [FAULT]");
  process.exit(2);
}

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });
const request = JSON.parse(requestJson);
const format = request.output_config?.format;
if (format?.type === "json_schema") {
  // The SDK's own helper, which also parses the reply; transform off: the schema is sent as written.
  request.output_config.format = jsonSchemaOutputFormat(format.schema, { transform: false });
}
const options = fault ? { headers: { "x-simulator-fault": fault } } : {};

const events = [];
const signatures = [];
let message;
if (mode === "parse") {
  message = await client.messages.parse(request, options);
} else {
  const stream = client.messages.stream(request, options);
  stream.on("streamEvent", (event) => events.push(event.type));
  stream.on("signature", (signature) => signatures.push(signature));
  message = await stream.finalMessage();
}
console.log(
  JSON.stringify({
    sdk_version: VERSION,
    content: message.content,
    stop_reason: message.stop_reason,
    stop_details: message.stop_details ?? null,
    container: message.container ?? null,
    usage: message.usage,
    parsed_output: message.parsed_output ?? null,
    events,
    signatures,
  }),
);
