"""One call run by the pipeline in a task of its own, its reply read by a caller in this process.

The pipeline writes the reply to a :class:`QueueSink` as it comes (its start, then body chunks); the caller
reads it from there at its own pace, so a stream reaches the caller event by event. The caller may leave at
any time (:meth:`Exchange.leave`): the pipeline hears it at once through the sink, abandons the upstream
call and records the call as its client's (status 499, ``client_disconnected``), exactly as it does for an
HTTP client that hangs up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from claudegate.pipeline.sink import Departure, RawHeaders, ResponseSink

__all__ = ["Exchange", "QueueSink", "ReplyLost"]


class ReplyLost(Exception):  # noqa: N818 - names an event
    """The call ended without a reply for its reader: the client was closed under it."""


class QueueSink(Departure):
    """A :class:`~claudegate.pipeline.sink.ResponseSink` for a caller in this process: the reply's status
    and headers are kept, its chunks queued; ``None`` in the queue ends the reply."""

    __slots__ = ("_chunks", "headers", "started", "status")

    def __init__(self) -> None:
        super().__init__()
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.started = asyncio.Event()  # set by the reply's start, or when the pipeline ends without one
        self.status = 0
        self.headers: RawHeaders = []

    async def start(self, status: int, headers: RawHeaders) -> None:
        self.status = status
        self.headers = headers
        self.started.set()

    async def send(self, chunk: bytes, *, more: bool) -> None:
        if self._gone.is_set():
            return  # nobody reads any more
        if chunk:
            self._chunks.put_nowait(chunk)
        if not more:
            self._chunks.put_nowait(None)

    def end(self) -> None:
        """The pipeline has ended: wake a reader waiting for a start or a chunk that will not come."""
        self.started.set()
        self._chunks.put_nowait(None)

    async def next_chunk(self) -> bytes | None:
        return await self._chunks.get()


class Exchange:
    """The task that produces one reply (the pipeline running a call, or a pass-through to the upstream)
    and the sink it writes to.

    :meth:`head` waits for the reply's status and headers, :meth:`next_chunk` for its body, chunk by chunk.
    Whatever the pipeline raised (a ClaudegateError before any reply, UpstreamDropped when the upstream cut
    a stream) is raised to the reader at the point where the reply stops.
    """

    __slots__ = ("ended", "sink", "task")

    def __init__(self, produce: Callable[[ResponseSink], Awaitable[object]]) -> None:
        self.sink = QueueSink()
        self.ended = False  # the reader has seen the end of the reply, or left
        self.task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self._run(produce))
        self.task.add_done_callback(self._finished)

    async def _run(self, produce: Callable[[ResponseSink], Awaitable[object]]) -> object:
        return await produce(self.sink)

    def _finished(self, task: asyncio.Task[object]) -> None:
        if not task.cancelled():
            task.exception()  # marked as retrieved here: a reader re-raises it, or nobody needs it
        self.sink.end()

    async def head(self) -> tuple[int, RawHeaders]:
        """The reply's status and headers; raises what the pipeline raised if it ended without a reply."""
        await self.sink.started.wait()
        if self.sink.status == 0:
            self._raise_outcome()
            raise ReplyLost("the claudegate client was closed before the reply began")
        return self.sink.status, self.sink.headers

    async def next_chunk(self) -> bytes | None:
        """The next chunk of the body, or None at its end."""
        if self.ended:
            return None
        chunk = await self.sink.next_chunk()
        if chunk is None:
            self.ended = True
            self._raise_outcome()
        return chunk

    async def read(self) -> bytes:
        """The rest of the body."""
        chunks = []
        while (chunk := await self.next_chunk()) is not None:
            chunks.append(chunk)
        return b"".join(chunks)

    def leave(self) -> None:
        """The caller gives up on this reply (unless it has read all of it already)."""
        if not self.ended:
            self.ended = True
            self.sink.leave()

    async def wait(self) -> None:
        """Until the pipeline has finished with the call (its usage record submitted)."""
        await asyncio.wait({self.task})

    def _raise_outcome(self) -> None:
        task = self.task
        if not task.done():
            return
        if task.cancelled():
            raise ReplyLost("the claudegate client was closed during the call")
        error = task.exception()
        if error is not None:
            raise error
