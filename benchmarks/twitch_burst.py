"""The Twitch question bot under a burst: 100 viewers ask within one second.

Each tier (``--tiers``, default 2 then 1) gets a fresh simulator (``claudegate simulate --tier T --latency
realistic``: ~0.8 s to the first token, ~70 tokens/s, ±25% jitter), a fresh in-process client in front of
it (``upstream_tier`` T, everything else default) and a fresh bot with its default settings as a moderator
(95 messages per 30 s: Twitch's 100 less the safety margin; the deadline 10 s, notices after 3 s, "coming"
notes after 1.25 s when busy). The chat is a real IRC server on loopback (Debian's InspIRCd, started here;
``apt-get install inspircd``) and the viewers are IRC clients in this process: ``--viewers`` of them
(default 100) join, then each asks a different question (``!ask …``, 60-200 characters) at a moment drawn
uniformly from ``--spread-s`` (default 1 s).

What is measured, from the viewers' side (a line's arrival at the viewer's socket):

- **question → answer line**: p50, p90, p99 and max over the answered viewers, and the **share of all
  viewers answered within 10 s** (target at tier 2: p90 under 10 s);
- **question → first reply** (the answer, a wait notice or an apology, whichever comes first): p50, p90,
  max, and how many viewers heard something within 2 s (target at tier 1: every viewer; none left in
  silence);
- outcomes: answered, told "too busy" (the honest refusal), other apologies, never heard anything; the
  chat lines the bot sent, by kind.

Baseline, measured in the same run against the same simulator before the burst: ``--baseline-calls``
(default 20) calls of the same shape sent one at a time with the official SDK straight to the simulator
(no bot, no pipeline). Its p50 is what one answer costs without any queueing; the burst's times are also
given as multiples of it.

Run from the repository root::

    .venv/bin/python benchmarks/twitch_burst.py --json twitch_burst.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anthropic

from _processes import free_port, terminate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.ircd: the IRC server and viewer clients the tests use too

from tests.ircd import Viewer, inspircd_binary, running_inspircd  # noqa: E402

from claudegate.bots.bot import ChatBot  # noqa: E402
from claudegate.bots.claude import ClaudeAnswerer  # noqa: E402
from claudegate.bots.irc import IrcTransport  # noqa: E402
from claudegate.bots.twitch import irc_config  # noqa: E402
from claudegate.client import AsyncClient  # noqa: E402
from claudegate.config import BotSettings, Settings  # noqa: E402

BOT = "claudebot"
CHANNEL = "bench"
_MENTIONS = re.compile(r"^(@\S+ )+")
_TEXT = (
    "why how what does the stream game boss level build speed run chat music song keyboard mouse camera "
    "setup rust python code bug fix map route skip glitch record time world first today later tomorrow"
)
_WORDS = _TEXT.split()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def kind_of(text: str) -> str:
    """What a bot line is, from its text after the mentions."""
    body = _MENTIONS.sub("", text)
    if body.startswith("sorry, I'm too busy"):
        return "busy"
    if body.startswith("sorry,"):
        return "apology"
    if body.startswith(("you're #", "got your question", "your answer is on the way", "your answers are on")):
        return "wait"
    if body.startswith(("you can ask again", "please ")):
        return "refused"
    return "answer"


@dataclass
class ViewerResult:
    nick: str
    asked: float = 0.0
    first_reply_s: float | None = None
    first_kind: str | None = None
    answer_s: float | None = None
    outcome: str = "silence"  # answer, busy, apology, silence


@dataclass
class TierResult:
    tier: str
    viewers: int
    baseline_p50_s: float
    answered: int = 0
    busy: int = 0
    apologies: int = 0
    silent: int = 0
    answer_p50_s: float | None = None
    answer_p90_s: float | None = None
    answer_p99_s: float | None = None
    answer_max_s: float | None = None
    share_answered_within_10s: float = 0.0
    first_reply_p50_s: float | None = None
    first_reply_p90_s: float | None = None
    first_reply_max_s: float | None = None
    heard_within_2s: int = 0
    lines_by_kind: dict[str, int] = field(default_factory=dict)
    results: list[ViewerResult] = field(default_factory=list)


class Simulator:
    def __init__(self, tier: str, seed: int, folder: Path) -> None:
        self.port = free_port()
        argv = [
            str(ROOT / ".venv/bin/claudegate"),
            "simulate",
            "--port",
            str(self.port),
            "--tier",
            tier,
            "--latency",
            "realistic",
            "--seed",
            str(seed),
        ]
        log = (folder / f"simulator-{tier}.log").open("wb")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        terminate(self.process, 15)


def question(rng: random.Random, index: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(12, 40))]
    return f"{index} " + " ".join(words) + "?"


async def baseline(url: str, bot: BotSettings, calls: int, rng: random.Random) -> float:
    """Median latency of calls of the bot's shape sent one at a time straight to the simulator."""
    from claudegate.bots.answers import max_tokens_for

    budget = bot.answer_max_chars - len("@viewer_000 ")
    sdk = anthropic.AsyncAnthropic(base_url=url, api_key="sk-bench-baseline", max_retries=0)
    times = []
    try:
        for index in range(calls):
            began = time.perf_counter()
            await sdk.messages.create(
                model=bot.model,
                max_tokens=max_tokens_for(budget, bot.chars_per_token),
                system=bot.system_prompt.replace("{max_chars}", str(budget)),
                messages=[{"role": "user", "content": question(rng, 1000 + index)}],
            )
            times.append(time.perf_counter() - began)
    finally:
        await sdk.close()
    p50 = _percentile(times, 0.5)
    assert p50 is not None
    return p50


async def run_tier(tier: str, args: argparse.Namespace, irc_port: int, folder: Path) -> TierResult:
    rng = random.Random(args.seed)
    simulator = Simulator(tier, args.seed, folder)
    try:
        bot_settings = BotSettings(
            nick=BOT,
            irc_host="127.0.0.1",
            irc_port=irc_port,
            irc_tls=False,
            moderator=True,
            metrics_port=None,
        )
        # The simulator keeps buckets per API key: the baseline's key leaves the bot's buckets full.
        base = await baseline(simulator.url, bot_settings, args.baseline_calls, rng)
        settings = Settings(
            upstream_url=simulator.url,
            anthropic_api_key="sk-bench-bot",
            upstream_tier=tier,
            database_url=f"sqlite+aiosqlite:///{folder / f'bot-{tier}.db'}",
            usage_spill_file=folder / f"spill-{tier}.jsonl",
            bot=bot_settings,
        )
        async with AsyncClient(settings=settings, org="twitch", user=CHANNEL) as client:
            answerer = ClaudeAnswerer(
                client,
                model=bot_settings.model,
                system_prompt=bot_settings.system_prompt,
                chars_per_token=bot_settings.chars_per_token,
            )
            bot = ChatBot(bot_settings, IrcTransport(irc_config(bot_settings, CHANNEL, None)), answerer)
            await bot.start()
            viewers = [Viewer(f"viewer_{i:03d}", irc_port, CHANNEL) for i in range(args.viewers)]
            await asyncio.gather(
                *(viewer.connect(within=30) for viewer in viewers),
                asyncio.wait_for(bot.transport.wait_connected(), timeout=30),
            )
            await client.open()
            results = [ViewerResult(viewer.nick) for viewer in viewers]
            offsets = [rng.uniform(0, args.spread_s) for _ in viewers]
            questions = [question(rng, index) for index in range(len(viewers))]
            start = time.perf_counter() + 0.2

            async def ask(viewer: Viewer, result: ViewerResult, offset: float, text: str) -> None:
                await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
                result.asked = await viewer.say(f"!ask {text}")

            await asyncio.gather(
                *(ask(*item) for item in zip(viewers, results, offsets, questions, strict=True))
            )
            deadline = time.perf_counter() + args.wait_s
            while time.perf_counter() < deadline:
                if all(_settled(viewer) for viewer in viewers):
                    break
                await asyncio.sleep(0.25)
            lines_by_kind = {
                sample.labels["kind"]: int(sample.value)
                for metric in bot.metrics.registry.collect()
                if metric.name == "claudegate_bot_chat_lines"
                for sample in metric.samples
                if sample.name.endswith("_total")
            }
            await bot.stop(grace_s=1.0)
            for viewer in viewers:
                await viewer.close()
    finally:
        simulator.stop()
    for viewer, result in zip(viewers, results, strict=True):
        for heard in viewer.lines_for_me(BOT):
            kind = kind_of(heard.text)
            if result.first_reply_s is None:
                result.first_reply_s = heard.at - result.asked
                result.first_kind = kind
            if kind == "answer" and result.answer_s is None:
                result.answer_s = heard.at - result.asked
                result.outcome = "answer"
            elif kind in ("busy", "apology") and result.outcome == "silence":
                result.outcome = kind
    return summarise(tier, base, results, lines_by_kind)


def _settled(viewer: Viewer) -> bool:
    return any(kind_of(heard.text) in ("answer", "busy", "apology") for heard in viewer.lines_for_me(BOT))


def summarise(tier: str, base: float, results: list[ViewerResult], lines: dict[str, int]) -> TierResult:
    answers = [r.answer_s for r in results if r.answer_s is not None]
    firsts = [r.first_reply_s for r in results if r.first_reply_s is not None]
    summary = TierResult(
        tier=tier, viewers=len(results), baseline_p50_s=base, lines_by_kind=lines, results=results
    )
    summary.answered = len(answers)
    summary.busy = sum(1 for r in results if r.outcome == "busy")
    summary.apologies = sum(1 for r in results if r.outcome == "apology")
    summary.silent = sum(1 for r in results if r.first_reply_s is None)
    summary.answer_p50_s = _percentile(answers, 0.5)
    summary.answer_p90_s = _percentile(answers, 0.9)
    summary.answer_p99_s = _percentile(answers, 0.99)
    summary.answer_max_s = max(answers, default=None)
    summary.share_answered_within_10s = sum(1 for a in answers if a <= 10) / len(results)
    summary.first_reply_p50_s = _percentile(firsts, 0.5)
    summary.first_reply_p90_s = _percentile(firsts, 0.9)
    summary.first_reply_max_s = max(firsts, default=None)
    summary.heard_within_2s = sum(1 for f in firsts if f <= 2.0)
    return summary


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: list[TierResult]) -> None:
    print()
    print(
        "| tier | answered | told busy | other apologies | silent | answer p50 / p90 / p99 / max s | "
        "answered ≤ 10 s | first reply p50 / p90 / max s | heard ≤ 2 s | baseline p50 s |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|---:|---:|")
    for r in results:
        print(
            f"| {r.tier} | {r.answered} | {r.busy} | {r.apologies} | {r.silent} | "
            f"{_s(r.answer_p50_s)} / {_s(r.answer_p90_s)} / {_s(r.answer_p99_s)} / {_s(r.answer_max_s)} | "
            f"{r.share_answered_within_10s:.0%} | "
            f"{_s(r.first_reply_p50_s)} / {_s(r.first_reply_p90_s)} / {_s(r.first_reply_max_s)} | "
            f"{r.heard_within_2s}/{r.viewers} | {r.baseline_p50_s:.2f} |"
        )
    for r in results:
        ratio = f"{r.answer_p50_s / r.baseline_p50_s:.1f}×" if r.answer_p50_s else "-"
        print(f"tier {r.tier}: answer p50 = {ratio} the baseline; chat lines sent: {r.lines_by_kind}")


async def main_async(args: argparse.Namespace) -> list[TierResult]:
    if inspircd_binary() is None:
        raise SystemExit("inspircd is not installed (apt-get install -y --no-install-recommends inspircd)")
    with tempfile.TemporaryDirectory(prefix="twitch-burst-") as tmp:
        folder = Path(tmp)
        with running_inspircd(folder / "ircd") as irc_port:
            results = []
            for tier in args.tiers.split(","):
                print(f"tier {tier}: {args.viewers} viewers ask within {args.spread_s:g} s …", flush=True)
                results.append(await run_tier(tier.strip(), args, irc_port, folder))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="2,1", help="tiers to run, in order (default 2,1)")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--spread-s", type=float, default=1.0, help="questions arrive within this long")
    parser.add_argument("--wait-s", type=float, default=75.0, help="how long to wait for every viewer")
    parser.add_argument("--baseline-calls", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every viewer's figures here")
    args = parser.parse_args()
    os.environ.pop("ANTHROPIC_API_KEY", None)
    results = asyncio.run(main_async(args))
    report(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
