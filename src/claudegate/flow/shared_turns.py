"""Kept turns that hold across gateway processes sharing a lane's buckets (through Redis).

A refused caller comes back on a new connection, which the kernel may hand to another process. So when a
process keeps a turn (``kept``), it also publishes it in Redis under the lane and the call's place (a digest
of its key, path and body, the same in every process): when its caller was told to come back, what the call
takes, and whether the turn has taken its tokens yet. Another process, where that caller arrives and would
otherwise have to queue (never on the path of a call that starts at once), claims the published turn in one
atomic script, so a turn is claimed once; the caller then goes first there.

What happens to the tokens (the choice that keeps both promises: nothing beyond the account's limits reaches
the upstream, and the caller starts at its retry-after):

- The turn has taken its tokens (it does so shortly before its time, so a caller back on time finds it so):
  they move with the claim. The claimer starts the call at once, counting them as taken for it; the owner,
  when the turn would lapse, finds it claimed and drops it without giving the tokens back (it only frees its
  concurrency slot). The shared buckets count the call exactly once.
- It has not: the claimer queues the call at the front of its own queue, to take its tokens first; the owner,
  when its turn takes them, finds it claimed and gives them back at once. For that moment both hold the
  tokens: cautious, never over the limits.
- Nobody claims it: the owner withdraws it when it lapses, and gives back what it took, as in one process.

Redis failing never fails a call: a turn that cannot be published is kept in its own process only, and a
claim that cannot be checked is a call that queues. An owner that cannot tell whether its turn was claimed
keeps its tokens (they refill): giving them back might let through more than the limits allow.

With in-memory state (one process) nothing is published and nothing here runs (``for_lane`` gives None).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING

from claudegate.flow.kept import KeptTurn
from claudegate.flow.limits import LaneLimits
from claudegate.flow.redis_state import RedisState
from claudegate.flow.state import FlowState
from claudegate.flow.ticket import Ticket

if TYPE_CHECKING:
    from claudegate.flow.dispatch import LaneDispatcher

__all__ = ["SharedTurns", "place_digest"]

logger = logging.getLogger(__name__)

# A published turn outlives its lapse by this much in Redis: its owner withdraws it at its lapse, and the
# expiry only clears the turns of a process that died.
_EXPIRY_MARGIN_S = 5.0

# KEYS[1]: the turn. ARGV: id, then field, value pairs. Publishes the turn unless another process's turn for
# the same place is there (the first process to keep it keeps it); 1 if published.
_PUBLISH = """
local id = redis.call('HGET', KEYS[1], 'id')
if id and id ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1]: the turn. ARGV: id, what it took. The owner's turn took its tokens: 1, or 0 if it was claimed.
_READY = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'taken', ARGV[2])
return 1
"""

# KEYS[1]: the turn. ARGV: id. The owner withdraws its turn: 1, or 0 if it was claimed (or expired).
_WITHDRAW = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1]: the turn. ARGV: the claimer's member, its time (shared clock). Claims a turn of another process
# whose caller is not early: returns its fields and deletes it; nil otherwise.
_CLAIM = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
local turn = {}
for i = 1, #fields, 2 do turn[fields[i]] = fields[i + 1] end
if turn['owner'] == ARGV[1] or tonumber(ARGV[2]) < tonumber(turn['early']) then return false end
redis.call('DEL', KEYS[1])
return fields
"""


def place_digest(*parts: str | bytes) -> str:
    """A call's place as every process names it (``hash()`` of bytes differs from process to process)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


class SharedTurns:
    """The turns one lane's queue in this process has published, and its claims of other processes'."""

    __slots__ = ("_claim", "_clock", "_lane", "_member", "_prefix", "_publish", "_published", "_ready",
                 "_tasks", "_withdraw", "joining")  # fmt: skip

    def __init__(self, state: RedisState, lane: LaneLimits) -> None:
        client = state.client
        self._publish = client.register_script(_PUBLISH)
        self._ready = client.register_script(_READY)
        self._withdraw = client.register_script(_WITHDRAW)
        self._claim = client.register_script(_CLAIM)
        self._clock: Callable[[], float] = state.shared_clock
        self._member = f"{state.member}:{secrets.token_hex(4)}"  # this queue: one per lane and process
        self._prefix = state.key("turn:" + lane.lane + ":")
        self._lane = lane
        self._published: dict[KeptTurn, str] = {}  # turn -> its id in Redis
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls that must queue are predicted one at a time: a prediction awaits Redis, and calls refused
        # together would otherwise each be told the same time, none counting the turns kept for the others.
        self.joining = asyncio.Lock()

    @classmethod
    def for_lane(cls, state: FlowState, lane: LaneLimits) -> SharedTurns | None:
        """Shared turns for a lane whose buckets are shared through Redis; None in one process."""
        return cls(state, lane) if isinstance(state, RedisState) else None

    def _key(self, place: Hashable) -> str | None:
        return self._prefix + place if isinstance(place, str) else None  # only a digest names it everywhere

    def _shared_time(self, loop_time: float) -> float:
        return self._clock() + (loop_time - asyncio.get_running_loop().time())

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the owner's side ----------------------------------------------------------------------------------

    def publish(self, turn: KeptTurn) -> None:
        """The turn was kept (or kept again, with a new time): tell the other processes."""
        key = self._key(turn.place)
        if key is None:
            return
        turn_id = self._published.setdefault(turn, secrets.token_hex(8))
        now = asyncio.get_running_loop().time()
        ttl_ms = round((turn.lapses - now + _EXPIRY_MARGIN_S) * 1000)
        fields: list[str | int] = [
            turn_id,
            ttl_ms,
            "owner",
            self._member,
            "due",
            repr(self._shared_time(turn.due)),
            "early",
            repr(self._shared_time(turn.early)),
            "input",
            repr(float(turn.ticket.input_tokens)),
            "output",
            repr(float(turn.ticket.output_tokens)),
            "taken",
            _taken_text(turn.taken),
        ]
        self._spawn(self._send_publish(turn, key, fields))

    async def _send_publish(self, turn: KeptTurn, key: str, fields: list[str | int]) -> None:
        try:
            if not await self._publish(keys=[key], args=fields):
                self._published.pop(turn, None)  # another process kept a turn for this call first
        except Exception:
            self._published.pop(turn, None)
            logger.warning("could not publish a kept turn; it holds in this process only", exc_info=True)

    def withdraw(self, turn: KeptTurn) -> None:
        """The turn ended here (its caller came back here, or it was given up): no one else may claim it."""
        turn_id = self._published.pop(turn, None)
        key = self._key(turn.place)
        if turn_id is not None and key is not None:
            self._spawn(self._send_withdraw(key, turn_id))

    async def _send_withdraw(self, key: str, turn_id: str) -> None:
        try:
            await self._withdraw(keys=[key], args=[turn_id])
        except Exception:
            logger.warning("could not withdraw a kept turn; it expires shortly", exc_info=True)

    def took(self, queue: LaneDispatcher, turn: KeptTurn) -> None:
        """The turn took its tokens for its caller: if another process has claimed it meanwhile, they go
        back at once (that process's queue takes them for the call); else the turn says it holds them."""
        turn_id = self._published.get(turn)
        key = self._key(turn.place)
        if turn_id is not None and key is not None:
            self._spawn(self._send_took(queue, turn, key, turn_id))

    async def _send_took(self, queue: LaneDispatcher, turn: KeptTurn, key: str, turn_id: str) -> None:
        try:
            held = bool(await self._ready(keys=[key], args=[turn_id, _taken_text(turn.taken)]))
        except Exception:
            logger.warning("could not tell other processes a kept turn is ready", exc_info=True)
            return
        if not held and self._published.get(turn) == turn_id:
            del self._published[turn]
            _claimed_elsewhere(queue, turn, give_back=True)

    def lapse(self, queue: LaneDispatcher, turn: KeptTurn) -> bool:
        """The turn's time is past and its caller is not back here: True if it is published, and the other
        processes are asked first whether one claimed it (then what it took is that call's, and is not given
        back); False: the queue lets it lapse as in one process."""
        turn_id = self._published.pop(turn, None)
        key = self._key(turn.place)
        if turn_id is None or key is None:
            return False
        self._spawn(self._send_lapse(queue, turn, key, turn_id))
        return True

    async def _send_lapse(self, queue: LaneDispatcher, turn: KeptTurn, key: str, turn_id: str) -> None:
        try:
            unclaimed = bool(await self._withdraw(keys=[key], args=[turn_id]))
        except Exception:
            logger.warning("could not tell if a kept turn was claimed; its tokens are kept", exc_info=True)
            unclaimed = False
        if unclaimed:
            queue._lapse(turn)  # not published any more: it lapses as in one process
        else:
            _claimed_elsewhere(queue, turn, give_back=False)

    # -- the claimer's side --------------------------------------------------------------------------------

    async def adopt(self, queue: LaneDispatcher, ticket: Ticket, now: float) -> KeptTurn | None:
        """A call that would have to queue here: if another process kept a turn for it and its caller is
        back in time, claim it, and return it as a turn of this queue's, at the front (ready, with what the
        owner took, if the owner's turn had taken its tokens). None: no such turn."""
        if ticket.place is None:
            return None
        place = ticket.place()
        key = self._key(place)
        if key is None:
            return None
        try:
            fields = await self._claim(keys=[key], args=[self._member, repr(self._shared_time(now))])
        except Exception:
            logger.warning("could not look for a turn kept by another process", exc_info=True)
            return None
        if not fields:
            return None
        record = dict(zip(fields[::2], fields[1::2], strict=True))
        kept = queue._kept
        taken = _parse_taken(record.get("taken", ""))
        if taken is None:
            # The owner's turn has not taken its tokens: the call takes them here, before any call queued.
            turn = kept.keep(ticket, place, barrier=queue._departures)
        else:
            held = Ticket(
                org=ticket.org,
                user=ticket.user,
                input_tokens=float(record["input"]),
                output_tokens=float(record["output"]),
                deadline=ticket.deadline,
                streamed=ticket.streamed,
            )
            turn = kept.keep(held, place, barrier=queue._departures)
            kept.dispatched(turn, taken)  # what the owner took is this call's: the shared buckets counted it
        turn.due = turn.early = now
        turn.lapses = now
        return turn


def _claimed_elsewhere(queue: LaneDispatcher, turn: KeptTurn, *, give_back: bool) -> None:
    """Another process claimed the turn: it ends here, freeing its slot; what it took goes back only if the
    claimer takes its own (``give_back``)."""
    if turn.caller is not None or queue._kept.find(turn.place) is not turn:
        return  # its caller came back here meanwhile, or it ended
    queue._kept.showed(claimed=True)
    queue._forget(turn)
    if turn.ready:
        queue._running.discard(turn.ticket)
        if give_back:
            queue._give_back(turn)


def _taken_text(taken: tuple[float, float, float] | None) -> str:
    return "" if taken is None else ",".join(repr(float(amount)) for amount in taken)


def _parse_taken(text: str) -> tuple[float, float, float] | None:
    if not text:
        return None
    requests, input_tokens, output_tokens = (float(part) for part in text.split(","))
    return (requests, input_tokens, output_tokens)
