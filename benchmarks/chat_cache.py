"""What automatic cache breakpoints save on a long chat: one 20-turn conversation through the chat API with
breakpoints and the same conversation without, in one run, priced from the simulator's cache accounting.

Starts a simulator (``claudegate simulate --latency none``) and two gateways in front of it on one SQLite
database: one as shipped (``chat_cache_breakpoints`` on) and one with ``CLAUDEGATE_CHAT_CACHE_BREAKPOINTS=
false``. A prompt version (a realistic support-assistant system prompt of about 2,800 tokens) is created
with ``claudegate prompts create``; then the same 20 questions go to each gateway as one conversation
(``POST /chat``, ``prompt`` on the first turn, ``chat_id`` after), each reply fixed at ``--reply-tokens``
(the simulator's ``x-simulator-reply-tokens``, which the chat API passes on) so both conversations carry the
same text.

For every turn the chat API reports input, cache-write and cache-read tokens; the script checks them against
the simulator's ledger (``GET /_simulator/ledger``, what the simulator charged) and prices them with
claudegate's price table: input-token cost = uncached × input price + written × 5-minute write price + read ×
read price. The figure of merit is the input-token cost with breakpoints against without (target: at least
70 % lower). Output tokens are the same in both conversations and are reported apart.

Run from the repository root::

    .venv/bin/python benchmarks/chat_cache.py
    .venv/bin/python benchmarks/chat_cache.py --model claude-sonnet-4-6 --json chat_cache.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from _processes import Proc, claudegate, free_port, wait_until_up
from claudegate.accounting.prices import PriceTable
from claudegate.wire.tokens import count_text_tokens

TARGET_SAVING = 0.70

QUESTIONS = [
    "Hi! I ordered a kayak last week and it has not arrived yet. Can you help?",
    "The order number is 10-4471. It was supposed to come on Monday.",
    "Is there any way to know where the parcel is right now?",
    "The tracking page says 'held at depot'. What does that mean?",
    "Can I pick it up at the depot myself? It is about 20 km from me.",
    "What do I need to bring with me to collect it?",
    "My partner might go instead of me. Is that allowed?",
    "OK. While I have you: does the kayak come with a paddle?",
    "And a spray skirt? I plan to paddle in cold water.",
    "What size of spray skirt would fit the cockpit of this model?",
    "Can I add the spray skirt to the same order, or is it a new one?",
    "Will the new order ship separately? I would rather get them together.",
    "What is your return policy if the kayak is damaged on arrival?",
    "How long do I have to report damage?",
    "Do I need to keep the original packaging? It is huge.",
    "If I return it, who pays for the shipping back?",
    "Understood. Can you also tell me how to store the kayak over winter?",
    "Is it fine to keep it in an unheated garage?",
    "Last question: do you offer any paddling courses near Lyon?",
    "Thank you for all the help, that is everything for today.",
]

SYSTEM_PROMPT_HEAD = (
    "You are Marin, the customer support assistant of Blue Current, an online shop for kayaks, canoes, "
    "paddle boards and their gear. You answer customers in the chat window of the shop's website and app.\n\n"
    "Tone: warm, precise and brief. Use the customer's words. Never invent an order status: when you cannot "
    "see something, say so and say what the customer can do. Never promise a refund or a delivery date "
    "yourself; tell the customer what the policy says and that a colleague confirms it by e-mail.\n\n"
)
SYSTEM_PROMPT_RULES = [
    "Orders ship from the warehouse in Valence within two working days; boats over three metres travel by "
    "freight carrier and take three to six working days more.",
    "A parcel 'held at depot' waits for the customer or for a new delivery slot; it stays at the depot for "
    "ten working days before it is sent back.",
    "Customers may collect from the depot with the order number and an identity document; someone else may "
    "collect with a signed note from the customer and a copy of the customer's identity document.",
    "Returns are accepted within thirty days of delivery for unused items in their original packaging; "
    "boats may be returned without the packaging if they are protected for transport.",
    "Damage on arrival must be reported within seven days, with photos of the item and of the packaging.",
    "The shop pays return shipping for damaged or wrong items; otherwise the customer pays it, at the "
    "carrier's rate shown in the returns page.",
    "Kayaks come without paddles unless the product page says 'paddle included'; spray skirts are always "
    "sold separately and are sized by the cockpit's length and width, shown on the product page.",
    "Items added to an order after it is paid become a new order; the warehouse groups them when the first "
    "order has not left yet, and the customer sees one tracking number.",
    "Boats are stored out of the sun, on their side or hull-up on padded supports, never resting on the "
    "hull's keel; unheated garages are fine if the boat is dry and not in contact with the floor.",
    "Courses are run by partner clubs; the list is on the 'Learn to paddle' page, by region.",
]


def system_prompt() -> str:
    """The support assistant's instructions: its rules, each with worked examples, about 2,800 tokens."""
    parts = [SYSTEM_PROMPT_HEAD]
    for number, rule in enumerate(SYSTEM_PROMPT_RULES, 1):
        parts.append(f"Rule {number}. {rule}\n")
        for example in range(1, 6):
            parts.append(
                f"  Example {number}.{example}: when a customer's question touches rule {number}, quote the "
                f"part that applies in plain words, check the details the customer gave against it, and end "
                f"with the next step the customer can take today.\n"
            )
    parts.append("\nIf a question is outside these rules, apologise once and offer a human colleague.\n")
    return "".join(parts)


# -- processes ---------------------------------------------------------------------------------------------


# -- the conversation --------------------------------------------------------------------------------------


@dataclass
class Turn:
    turn: int
    input_tokens: int  # uncached
    cache_write: int
    cache_read: int
    output_tokens: int
    request_id: str = ""

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_write + self.cache_read


@dataclass
class Conversation:
    name: str
    turns: list[Turn] = field(default_factory=list)

    def total(self, attribute: str) -> int:
        return sum(getattr(turn, attribute) for turn in self.turns)


async def converse(
    session: aiohttp.ClientSession, url: str, key: str, name: str, reply_tokens: int
) -> Conversation:
    conversation = Conversation(name)
    chat_id: str | None = None
    headers = {"x-api-key": key, "x-simulator-reply-tokens": str(reply_tokens)}
    for number, question in enumerate(QUESTIONS, 1):
        body: dict[str, Any] = {"message": question, "max_tokens": max(reply_tokens + 50, 256)}
        if chat_id is None:
            body["prompt"] = "support"
        else:
            body["chat_id"] = chat_id
        async with session.post(f"{url}/chat", json=body, headers=headers) as response:
            data = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{name}, turn {number}: {response.status} {data}")
            chat_id = data["chat_id"]
            usage = data["usage"]
            conversation.turns.append(
                Turn(
                    turn=number,
                    input_tokens=usage["input_tokens"]
                    - usage["cache_creation_input_tokens"]
                    - usage["cache_read_input_tokens"],
                    cache_write=usage["cache_creation_input_tokens"],
                    cache_read=usage["cache_read_input_tokens"],
                    output_tokens=usage["output_tokens"],
                    request_id=response.headers.get("x-claudegate-request-id", ""),
                )
            )
    return conversation


@dataclass
class Costs:
    input_usd: Decimal
    output_usd: Decimal


def costs(conversation: Conversation, prices: PriceTable, model: str) -> Costs:
    price = prices.price(model)
    assert price is not None, f"{model} has no price"
    per_million = Decimal(1_000_000)
    input_usd = (
        conversation.total("input_tokens") * price.input
        + conversation.total("cache_write") * price.cache_write_5m
        + conversation.total("cache_read") * price.cache_read
    ) / per_million
    return Costs(input_usd, conversation.total("output_tokens") * price.output / per_million)


async def ledger_totals(session: aiohttp.ClientSession, simulator_url: str) -> dict[str, int]:
    async with session.get(f"{simulator_url}/_simulator/ledger") as response:
        entries = await response.json()
    totals = {"requests": len(entries), "input": 0, "write": 0, "read": 0, "output": 0}
    for entry in entries:
        totals["input"] += entry["input_tokens"]
        totals["write"] += entry["cache_creation_input_tokens"]
        totals["read"] += entry["cache_read_input_tokens"]
        totals["output"] += entry["output_tokens"]
    return totals


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    system = system_prompt()
    with tempfile.TemporaryDirectory(prefix="cg-chat-cache-") as tmp:
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
        env |= {
            "CLAUDEGATE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'claudegate.db'}",
            "CLAUDEGATE_USAGE_SPILL_FILE": str(workdir / "spill.jsonl"),
            "CLAUDEGATE_LOG_LEVEL": "warning",
            "CLAUDEGATE_CHAT_MODEL": args.model,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if args.history_tokens:
            env["CLAUDEGATE_CHAT_HISTORY_TOKENS"] = str(args.history_tokens)
        created = await asyncio.to_thread(
            subprocess.run,
            claudegate("keys", "create", "--org", "bench", "--json"),
            env=env,
            capture_output=True,
            check=True,
        )
        key = json.loads(created.stdout)["key"]
        (workdir / "system.txt").write_text(system, encoding="utf-8")
        await asyncio.to_thread(
            subprocess.run,
            claudegate("prompts", "create", "bench", "support", "--file", str(workdir / "system.txt")),
            env=env,
            capture_output=True,
            check=True,
        )
        sim_port, with_port, without_port = free_port(), free_port(), free_port()
        simulator = Proc(
            "simulator",
            claudegate("simulate", "--port", str(sim_port), "--latency", "none"),
            env,
            None,
            workdir / "sim.log",
        )
        upstream = env | {
            "CLAUDEGATE_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
            "ANTHROPIC_API_KEY": "sk-bench",
        }
        gateways = [
            Proc(
                "gateway (breakpoints)",
                claudegate("serve", "--port", str(with_port)),
                upstream,
                None,
                workdir / "with.log",
            ),
            Proc(
                "gateway (no breakpoints)",
                claudegate("serve", "--port", str(without_port)),
                upstream | {"CLAUDEGATE_CHAT_CACHE_BREAKPOINTS": "false"},
                None,
                workdir / "without.log",
            ),
        ]
        try:
            simulator_url = f"http://127.0.0.1:{sim_port}"
            await wait_until_up(f"{simulator_url}/v1/models", simulator)
            await wait_until_up(f"http://127.0.0.1:{with_port}/health", gateways[0])
            await wait_until_up(f"http://127.0.0.1:{without_port}/health", gateways[1])
            async with aiohttp.ClientSession() as session:
                runs: dict[str, Conversation] = {}
                ledgers: dict[str, dict[str, int]] = {}
                for name, port in (("without", without_port), ("with", with_port)):
                    await session.delete(f"{simulator_url}/_simulator/ledger")
                    runs[name] = await converse(
                        session, f"http://127.0.0.1:{port}", key, name, args.reply_tokens
                    )
                    ledgers[name] = await ledger_totals(session, simulator_url)
        finally:
            for proc in (*gateways, simulator):
                proc.stop()

    prices = PriceTable.load()
    result: dict[str, Any] = {
        "model": args.model,
        "turns": len(QUESTIONS),
        "reply_tokens": args.reply_tokens,
        "system_prompt_tokens": count_text_tokens(system),
        "history_tokens_budget": args.history_tokens or "default (100,000)",
        "runs": {},
    }
    for name, conversation in runs.items():
        ledger = ledgers[name]
        reported = {
            "requests": len(conversation.turns),
            "input": conversation.total("input_tokens"),
            "write": conversation.total("cache_write"),
            "read": conversation.total("cache_read"),
            "output": conversation.total("output_tokens"),
        }
        if reported != ledger:
            raise RuntimeError(f"{name}: the chat API reported {reported}, the simulator charged {ledger}")
        cost = costs(conversation, prices, args.model)
        result["runs"][name] = {
            "uncached_input_tokens": reported["input"],
            "cache_write_tokens": reported["write"],
            "cache_read_tokens": reported["read"],
            "total_input_tokens": conversation.total("total_input"),
            "output_tokens": reported["output"],
            "input_cost_usd": str(cost.input_usd.quantize(Decimal("0.000001"))),
            "output_cost_usd": str(cost.output_usd.quantize(Decimal("0.000001"))),
            "per_turn": [asdict(turn) for turn in conversation.turns],
            "matches_simulator_ledger": True,
        }
    with_cost = Decimal(result["runs"]["with"]["input_cost_usd"])
    without_cost = Decimal(result["runs"]["without"]["input_cost_usd"])
    saving = float(1 - with_cost / without_cost)
    result["input_cost_saving"] = round(saving, 4)
    result["target"] = TARGET_SAVING
    result["meets_target"] = saving >= TARGET_SAVING
    return result


def report(result: dict[str, Any], verbose: bool) -> str:
    lines = [
        f"model {result['model']}, {result['turns']} turns, replies of {result['reply_tokens']} tokens, "
        f"system prompt of {result['system_prompt_tokens']:,} tokens",
        "",
        "| run | uncached input | cache write | cache read | total input | input $ | output $ |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("without", "no breakpoints"), ("with", "automatic breakpoints")):
        run = result["runs"][name]
        lines.append(
            f"| {label} | {run['uncached_input_tokens']:,} | {run['cache_write_tokens']:,} | "
            f"{run['cache_read_tokens']:,} | {run['total_input_tokens']:,} | {run['input_cost_usd']} | "
            f"{run['output_cost_usd']} |"
        )
    lines.append("")
    verdict = "meets" if result["meets_target"] else "MISSES"
    lines.append(
        f"input-token cost with automatic breakpoints: {result['input_cost_saving']:.1%} lower "
        f"({verdict} the {result['target']:.0%} target); token counts match the simulator's ledger"
    )
    if verbose:
        lines += [
            "",
            "| turn | without: input | with: uncached | with: write | with: read |",
            "|---:|---:|---:|---:|---:|",
        ]
        for without, with_ in zip(
            result["runs"]["without"]["per_turn"], result["runs"]["with"]["per_turn"], strict=True
        ):
            lines.append(
                f"| {with_['turn']} | {without['input_tokens']:,} | {with_['input_tokens']:,} | "
                f"{with_['cache_write']:,} | {with_['cache_read']:,} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="claude-sonnet-4-6", help="chat model (default: %(default)s)")
    parser.add_argument(
        "--reply-tokens", type=int, default=200, help="tokens per reply (default: %(default)s)"
    )
    parser.add_argument("--history-tokens", type=int, default=0, help="chat_history_tokens for both gateways")
    parser.add_argument("--json", type=Path, help="also write the full result, every turn included, here")
    parser.add_argument("--verbose", action="store_true", help="print every turn")
    args = parser.parse_args()
    result = asyncio.run(amain(args))
    print(report(result, args.verbose))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not result["meets_target"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
