"""Message Batches: created at once, processed in the background, results as JSON lines."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from claudegate.errors import ClaudegateError, InvalidRequestError, NotFoundError

__all__ = ["Batch", "BatchStore", "BatchWorker"]

# Answers one batch request's params: the Message as a dict, or raises ClaudegateError.
BatchWorker = Callable[[str, dict[str, Any]], dict[str, Any]]

_MAX_REQUESTS = 100_000


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass(slots=True)
class Batch:
    id: str
    owner: str
    requests: list[dict[str, Any]]
    created_at: datetime = field(default_factory=_now)
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "canceling" if self.cancel_initiated_at is not None else "in_progress"

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        for result in self.results.values():
            counts[result["type"]] += 1
        counts["processing"] = len(self.requests) - len(self.results)
        return counts

    def to_api(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": self.counts(),
            "ended_at": _iso(self.ended_at),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.created_at + timedelta(hours=24)),
            "archived_at": None,
            "cancel_initiated_at": _iso(self.cancel_initiated_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if self.ended_at else None,
        }

    def results_jsonl(self) -> bytes:
        lines = [
            orjson.dumps({"custom_id": request["custom_id"], "result": self.results[request["custom_id"]]})
            for request in self.requests
            if request["custom_id"] in self.results
        ]
        return b"\n".join(lines) + b"\n" if lines else b""


class BatchStore:
    def __init__(self, worker: BatchWorker, seconds_per_request: float) -> None:
        self._worker = worker
        self._seconds_per_request = seconds_per_request
        self._batches: dict[str, Batch] = {}

    def create(self, owner: str, body: Any) -> Batch:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise InvalidRequestError(
                "requests: Field required"
                if requests is None
                else "requests: List should have at least 1 item after validation, not 0"
            )
        if len(requests) > _MAX_REQUESTS:
            raise InvalidRequestError(f"requests: a batch may hold at most {_MAX_REQUESTS:,} requests")
        seen: set[str] = set()
        for index, request in enumerate(requests):
            if not isinstance(request, dict) or not isinstance(request.get("custom_id"), str):
                raise InvalidRequestError(f"requests.{index}.custom_id: Field required")
            if not isinstance(request.get("params"), dict):
                raise InvalidRequestError(f"requests.{index}.params: Field required")
            if request["custom_id"] in seen:
                raise InvalidRequestError(
                    f"requests.{index}.custom_id: Duplicate custom_id {request['custom_id']!r}; each request "
                    "in a batch needs its own custom_id"
                )
            if request["params"].get("stream"):
                raise InvalidRequestError(
                    f"requests.{index}.params.stream: streaming is not supported in batches"
                )
            seen.add(request["custom_id"])
        batch = Batch(id="msgbatch_01" + secrets.token_hex(11), owner=owner, requests=requests)
        self._batches[batch.id] = batch
        batch.task = asyncio.get_running_loop().create_task(self._process(batch))
        return batch

    def get(self, owner: str, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.owner != owner:
            raise NotFoundError(f"Message batch {batch_id} not found.")
        return batch

    def list(self, owner: str) -> list[Batch]:
        owned = [b for b in self._batches.values() if b.owner == owner]
        return sorted(owned, key=lambda b: b.created_at, reverse=True)

    def cancel(self, owner: str, batch_id: str) -> Batch:
        batch = self.get(owner, batch_id)
        if batch.ended_at is None and batch.cancel_initiated_at is None:
            batch.cancel_initiated_at = _now()
        return batch

    def delete(self, owner: str, batch_id: str) -> None:
        batch = self.get(owner, batch_id)
        if batch.ended_at is None:
            raise InvalidRequestError(
                f"Message batch {batch_id} cannot be deleted while it is still processing; cancel it first."
            )
        del self._batches[batch_id]

    async def close(self) -> None:
        tasks = [b.task for b in self._batches.values() if b.task is not None and not b.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _process(self, batch: Batch) -> None:
        for request in batch.requests:
            custom_id = request["custom_id"]
            if batch.cancel_initiated_at is not None:
                batch.results[custom_id] = {"type": "canceled"}
                continue
            await asyncio.sleep(self._seconds_per_request)
            try:
                message = self._worker(batch.owner, request["params"])
                batch.results[custom_id] = {"type": "succeeded", "message": message}
            except ClaudegateError as error:
                batch.results[custom_id] = {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {"type": error.error_type, "message": error.message},
                        "request_id": None,
                    },
                }
        batch.ended_at = _now()
