"""The simulator's behaviour apart from HTTP: checks, limits, caching, planning replies, the ledger.

The HTTP layer (``app.py``) only moves bytes; everything the API decides lives here so that Message Batches
answer their requests with exactly the same logic as ``/v1/messages``.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import orjson
from pydantic import ValidationError

from claudegate.errors import InvalidRequestError, NotFoundError
from claudegate.simulator.batches import BatchStore
from claudegate.simulator.cache import CacheUsage, PromptCache
from claudegate.simulator.faults import FaultInjector
from claudegate.simulator.files import FileStore, file_not_found
from claudegate.simulator.generation import ReplyPlan, plan_reply, request_seed
from claudegate.simulator.prompt import Prompt, analyse_prompt
from claudegate.simulator.ratelimit import RateLimiter
from claudegate.simulator.reply import ReplyContext, message_id, render_message
from claudegate.simulator.schema import CountTokensRequest, MessagesRequest, format_validation_error
from claudegate.simulator.settings import SimulatorSettings
from claudegate.wire.file_refs import cited_file_ids
from claudegate.wire.models import ModelCatalog, ModelInfo, default_catalog

__all__ = ["LedgerEntry", "Prepared", "SimulatorEngine", "check_betas", "known_betas"]

_PREPARED_CACHE_SIZE = 2048
# The betas (any dated release) that let a request put system messages between its turns: Claude Code sends
# such messages with either, and resends without them when they are refused.
MID_CONVERSATION_SYSTEM_BETAS = ("mid-conversation-system-20", "per-turn-control-20")
_LEDGER_SIZE = 100_000


# A beta name is a feature name and the date it shipped: ``files-api-2025-04-14``, ``claude-code-20250219``.
_BETA_NAME = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*?-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


def known_betas() -> frozenset[str]:
    """The beta names documented in ``data/betas.txt`` (accepted whatever their form)."""
    text = resources.files("claudegate.data").joinpath("betas.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_betas(values: list[str], known: frozenset[str]) -> None:
    """Accept ``anthropic-beta`` as the API does: comma-separated names, the header possibly repeated.

    A well-formed name is accepted even when it is not in ``known``, so a client released today works
    against the simulator today; a name that cannot be a beta gets the API's 400.
    """
    for value in values:
        for beta in value.split(","):
            name = beta.strip()
            if name and name not in known and not _BETA_NAME.match(name):
                raise InvalidRequestError(
                    f"Unsupported beta header: {name!r} is not a beta name (a beta name is a feature name "
                    "and a date, such as files-api-2025-04-14; separate several with commas)"
                )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked request and everything about it that does not change between identical calls."""

    body: dict[str, Any]
    model: ModelInfo
    prompt: Prompt
    plan: ReplyPlan | None  # None for count_tokens
    file_ids: tuple[str, ...] = ()  # uploaded files it cites: each call checks they are still the caller's
    system_turns: tuple[int, ...] = ()  # indexes of system messages between turns (a beta's feature)


@dataclass(slots=True)
class LedgerEntry:
    """What the simulator charged for one request: the truth the gateway's records are checked against."""

    request_id: str
    api_key_hint: str
    model: str
    status: int
    stream: bool
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    error_type: str | None = None
    completed: bool = True
    # When the request was received (Unix time, seconds), before it was admitted or answered: load tests
    # measure when calls reached the upstream from it.
    received_at: float = field(default_factory=time.time)


class SimulatorEngine:
    def __init__(self, settings: SimulatorSettings, catalog: ModelCatalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or default_catalog()
        self.betas = known_betas()
        self.rng = random.Random(settings.seed)
        self.limiter = RateLimiter(settings.tier, settings.burst)
        self.cache = PromptCache()
        self.faults = FaultInjector(settings.faults, self.rng)
        self.batches = BatchStore(self._answer_batch_request, settings.batch_seconds_per_request)
        self.files = FileStore(settings.max_file_bytes)
        self.ledger: deque[LedgerEntry] = deque(maxlen=_LEDGER_SIZE)
        self._prepared: OrderedDict[bytes, Prepared] = OrderedDict()

    # -- requests -----------------------------------------------------------------------------------------

    def prepare(self, raw: bytes, *, count_only: bool, reply_tokens: int | None = None) -> Prepared:
        """Parse and check a request body; identical bodies are checked once and remembered."""
        key = hashlib.blake2b(raw, digest_size=16, person=b"count" if count_only else b"messages").digest()
        if reply_tokens is not None:
            key += reply_tokens.to_bytes(8, "big")
        found = self._prepared.get(key)
        if found is not None:
            self._prepared.move_to_end(key)
            return found
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise InvalidRequestError(
                f"There was an error parsing the body of your request: {error}"
            ) from None
        prepared = self.prepare_body(
            body, count_only=count_only, may_cache=b"cache_control" in raw, reply_tokens=reply_tokens
        )
        self._prepared[key] = prepared
        if len(self._prepared) > _PREPARED_CACHE_SIZE:
            self._prepared.popitem(last=False)
        return prepared

    def prepare_body(
        self, body: Any, *, count_only: bool, may_cache: bool = True, reply_tokens: int | None = None
    ) -> Prepared:
        schema = CountTokensRequest if count_only else MessagesRequest
        try:
            schema.model_validate(body)
        except ValidationError as error:
            raise InvalidRequestError(format_validation_error(error, body)) from None
        model = self.catalog.resolve(body["model"])
        if model is None:
            raise NotFoundError(f"model: {body['model']}")
        if not model.served:
            raise NotFoundError(
                f"model: {body['model']} was retired on {(model.retires_at or '')[:10]}; "
                "GET /v1/models lists the models you can use"
            )
        max_tokens = None if count_only else body["max_tokens"]
        prompt = analyse_prompt(
            body, model, max_tokens=max_tokens, may_cache=may_cache, files=self.files.find
        )
        plan = None
        if not count_only:
            plan = plan_reply(body, prompt, seed=request_seed(body), reply_tokens=reply_tokens)
        return Prepared(
            body=body,
            model=model,
            prompt=prompt,
            plan=plan,
            file_ids=tuple(cited_file_ids(body)),
            system_turns=tuple(i for i, m in enumerate(body["messages"]) if m["role"] == "system"),
        )

    @staticmethod
    def check_system_turns(prepared: Prepared, betas: list[str]) -> None:
        """System messages between turns need the beta that allows them, as upstream; without it the role is
        refused in the API's words."""
        if not prepared.system_turns:
            return
        names = {name.strip() for value in betas for name in value.split(",")}
        if not any(name.startswith(MID_CONVERSATION_SYSTEM_BETAS) for name in names):
            raise InvalidRequestError(
                f"messages.{prepared.system_turns[0]}.role: Input should be 'user' or 'assistant'"
            )

    def check_files(self, api_key: str, prepared: Prepared) -> None:
        """The files a request cites must exist and be the caller's now, not just when it was first seen."""
        for file_id in prepared.file_ids:
            found = self.files.find(file_id)
            if found is None or found.owner != api_key:
                raise file_not_found(file_id)

    def check_betas(self, values: list[str]) -> None:
        check_betas(values, self.betas)

    def admit(self, api_key: str, prepared: Prepared) -> tuple[CacheUsage, list[tuple[str, str]]]:
        """Charge the rate limits and the prompt cache for one call; returns its cache usage and headers."""
        model = prepared.model
        # Cache reads do not count towards input-token limits on current models: look the cache up first,
        # and change it only once the request is admitted (a 429 neither writes nor refreshes an entry).
        found = self.cache.lookup(api_key, prepared.prompt, model.min_cache_tokens)
        usage = found.usage
        headers = self.limiter.admit(
            api_key, model.rate_class, usage.input_tokens + usage.cache_creation_input_tokens
        )
        self.cache.commit(api_key, found)
        return usage, headers

    def reply_context(self, prepared: Prepared, usage: CacheUsage) -> ReplyContext:
        body = prepared.body
        return ReplyContext(
            model=prepared.model.id,
            cache=usage,
            latency=self.settings.latency,
            tokens_per_delta=self.settings.tokens_per_delta,
            rng=self.rng,
            inference_geo=body.get("inference_geo") or "global",
            speed=body.get("speed") or "standard",
        )

    # -- the ledger ---------------------------------------------------------------------------------------

    def record(self, entry: LedgerEntry) -> LedgerEntry:
        self.ledger.append(entry)
        return entry

    def ledger_json(self) -> bytes:
        return orjson.dumps([asdict(entry) for entry in self.ledger])

    # -- batches ------------------------------------------------------------------------------------------

    def _answer_batch_request(self, owner: str, params: dict[str, Any]) -> dict[str, Any]:
        prepared = self.prepare_body(params, count_only=False)
        self.check_files(owner, prepared)
        assert prepared.plan is not None
        usage = self.cache.apply(owner, prepared.prompt, prepared.model.min_cache_tokens)
        ctx = self.reply_context(prepared, usage)
        message = render_message(prepared.plan, ctx, message_id())
        message["usage"]["service_tier"] = "batch"
        return message
