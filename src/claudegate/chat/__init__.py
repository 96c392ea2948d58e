"""The chat API's logic: conversations stored with every message, history trimmed to a token budget, cache
breakpoints placed automatically, prompt versions chosen per conversation, and the chat SSE format. The HTTP
routes are in ``claudegate.server.chat_routes``; every model call goes through the shared pipeline."""
