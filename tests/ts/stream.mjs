// Streams one reply with the official TypeScript SDK and prints what a program would keep from it, as JSON.
// Usage: GATEWAY_URL=http://127.0.0.1:8080 GATEWAY_KEY=cg-... node stream.mjs '{"model": ..., "messages": ...}'
import Anthropic from "@anthropic-ai/sdk";

const baseURL = process.env.GATEWAY_URL;
const apiKey = process.env.GATEWAY_KEY;
if (!baseURL || !apiKey || process.argv.length < 3) {
  console.error("usage: GATEWAY_URL=... GATEWAY_KEY=... node stream.mjs REQUEST_JSON");
  process.exit(2);
}

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });
const stream = client.messages.stream(JSON.parse(process.argv[2]));
const events = [];
let text = "";
stream.on("streamEvent", (event) => events.push(event.type));
stream.on("text", (delta) => {
  text += delta;
});
try {
  const message = await stream.finalMessage();
  console.log(
    JSON.stringify({
      text,
      // finalText() is the SDK's own accumulation; it throws when the reply has no text block.
      final_text: message.content.some((block) => block.type === "text") ? await stream.finalText() : null,
      content: message.content,
      stop_reason: message.stop_reason,
      usage: message.usage,
      model: message.model,
      request_id: stream.request_id ?? null,
      events,
    }),
  );
} catch (error) {
  console.log(
    JSON.stringify({
      error: error?.constructor?.name ?? "Error",
      status: error?.status ?? null,
      type: error?.error?.error?.type ?? null,
      message: String(error?.message ?? error),
    }),
  );
}
