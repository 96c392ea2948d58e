"""The in-process client: the official SDK's surface (``messages``, ``models``, ``beta``) running
claudegate's pipeline in this process, so an application gains flow control, retries, failover and usage
records by changing one import::

    import claudegate

    async with claudegate.AsyncClient(org="acme", user="alice") as client:
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=200, messages=[{"role": "user", "content": "Hello"}]
        )

Replies and errors are the SDK's own types (``anthropic.types.Message``, ``anthropic.RateLimitError``…).
"""

from claudegate.client._beta import AsyncBeta, AsyncBetaMessages
from claudegate.client._client import AsyncClient
from claudegate.client._conversation import AsyncConversation
from claudegate.client._events import CitationEvent, MessageStreamEvent, SignatureEvent, ThinkingEvent
from claudegate.client._messages import AsyncMessages, OnQueued
from claudegate.client._models import AsyncModels, ModelPage
from claudegate.client._streams import AsyncEventStream, AsyncMessageStream, AsyncMessageStreamManager
from claudegate.client._sync import Client, EventStream, Messages, MessageStream, MessageStreamManager
from claudegate.client._sync_beta import Beta, BetaMessages, Models, StreamingToolRunner, ToolRunner
from claudegate.client._tools import AsyncStreamingToolRunner, AsyncToolRunner, ToolLoopLimitError

__all__ = [
    "AsyncBeta",
    "AsyncBetaMessages",
    "AsyncClient",
    "AsyncConversation",
    "AsyncEventStream",
    "AsyncMessageStream",
    "AsyncMessageStreamManager",
    "AsyncMessages",
    "AsyncModels",
    "AsyncStreamingToolRunner",
    "AsyncToolRunner",
    "Beta",
    "BetaMessages",
    "CitationEvent",
    "Client",
    "EventStream",
    "MessageStream",
    "MessageStreamEvent",
    "MessageStreamManager",
    "Messages",
    "ModelPage",
    "Models",
    "OnQueued",
    "SignatureEvent",
    "StreamingToolRunner",
    "ThinkingEvent",
    "ToolLoopLimitError",
    "ToolRunner",
]
