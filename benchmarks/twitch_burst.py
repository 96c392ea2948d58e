"""The Twitch question bot under a burst: 50 or 100 viewers ask within one second.

Runs every combination of ``--standings`` (moderator, viewer: the bot's standing in the channel, which it
reads from Twitch's USERSTATE), ``--viewers`` (100, 50) and ``--tiers`` (2, 1). Each run gets a fresh
simulator (``claudegate simulate --tier T --latency realistic``: ~0.8 s to the first token, ~70 tokens/s,
±25% jitter), a fresh in-process client in front of it (``upstream_tier`` T, everything else default) and a
fresh bot with its default settings on a channel of its own. The chat is a real IRC server on loopback
(Debian's InspIRCd, started here; ``apt-get install inspircd``); the bot reaches it through the relay in
``tests/ircd.py`` that adds the USERSTATE lines Twitch would send (InspIRCd sends none), with a moderator's
badges or none, so the bot paces itself at 95 or 19 lines per 30 s (Twitch's 100 or 20, less its margin)
because it read its standing, not because a setting said so. The viewers are IRC clients in this process:
they join, then each asks a different question (``!ask …``, 60-200 characters) at a moment drawn uniformly
from ``--spread-s`` (default 1 s).

What is measured, from the viewers' side (a line's arrival at the viewer's socket):

- **question → answer**: p50 and p90 over the answered viewers, and the **share of all viewers answered
  within 10 s**;
- **heard within 2 s**: viewers whose first line from the bot (their answer, their wait, or an apology)
  came within 2 s of asking; **silent** viewers heard nothing at all;
- **told waits**: every "answers coming in about: @viewer N s" a viewer heard, checked against when their
  answer actually came: right when it came within 20% or 3 s (whichever is more) of N s after the notice;
- **lines**: how many the bot sent, the longest (Twitch's limit is 500 characters), and whether every answer
  arrived whole: in one line, as a prefix of the model's reply ending at a sentence or a word.

Before each burst the bot's pipeline makes ``--warmup-calls`` (default 5) calls of the bot's shape at once,
as a bot that has been running has: flow control predicts queue waits from the calls it has timed, and before
any it assumes a call holds its slot 5 s (``--warmup-calls 0`` measures that cold start).

Baseline, measured per tier against a fresh simulator before the bursts: ``--baseline-calls`` (default 20)
calls of the same shape sent one at a time with the official SDK straight to the simulator (no bot, no
pipeline). Its p50 is what one answer costs without any queueing; the burst's median is also given as a
multiple of it.

Run from the repository root::

    .venv/bin/python benchmarks/twitch_burst.py --json twitch_burst.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
sys.path.insert(0, str(ROOT))  # for tests.ircd: the IRC server, the relay and the viewers the tests use too

from tests.ircd import TwitchStanding, Viewer, inspircd_binary, running_inspircd  # noqa: E402

from claudegate.bots.answerer import QueuedCallback  # noqa: E402
from claudegate.bots.answers import ELLIPSIS, tidy  # noqa: E402
from claudegate.bots.bot import ChatBot  # noqa: E402
from claudegate.bots.claude import ClaudeAnswerer  # noqa: E402
from claudegate.bots.irc import IrcTransport  # noqa: E402
from claudegate.bots.pacing import PART_SEPARATOR  # noqa: E402
from claudegate.bots.twitch import irc_config  # noqa: E402
from claudegate.bots.waits import WAIT_PACKING, worse_by  # noqa: E402
from claudegate.client import AsyncClient  # noqa: E402
from claudegate.config import BotSettings, Settings  # noqa: E402

BOT = "claudebot"
BADGES = {"moderator": "moderator/1", "viewer": ""}
_channels = itertools.count()
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


def part_for(text: str, mention: str) -> str | None:
    """The part of a bot line meant for ``mention``: its answer in a packed line, or the whole line."""
    for part in text.split(PART_SEPARATOR):
        if mention in part.split():
            return part
    return None


def told_wait(text: str, mention: str) -> int | None:
    """The seconds a wait notice told ``mention``, or None when the line is not one for them."""
    if not text.startswith(WAIT_PACKING.lead):
        return None
    match = re.search(re.escape(mention) + r" (\d+) s", text)
    return int(match.group(1)) if match else None


@dataclass
class ViewerResult:
    nick: str
    question: str
    asked: float = 0.0
    first_reply_s: float | None = None
    answer_s: float | None = None
    answer_text: str | None = None
    reply: str | None = None  # the model's reply, as the bot's answerer returned it
    waits: list[tuple[float, int]] = field(default_factory=list)  # (heard, seconds told), from asking
    outcome: str = "silence"  # answer, busy, apology, silence


@dataclass
class RunResult:
    standing: str
    tier: str
    viewers: int
    baseline_p50_s: float
    lines_per_window: int = 0
    answered: int = 0
    busy: int = 0
    apologies: int = 0
    silent: int = 0
    answer_p50_s: float | None = None
    answer_p90_s: float | None = None
    answer_max_s: float | None = None
    share_answered_within_10s: float = 0.0
    heard_within_2s: int = 0
    right_within_2s: int = 0
    waits_told: int = 0
    waits_right: int = 0
    viewers_told_a_wait: int = 0
    lines_sent: int = 0
    longest_line: int = 0
    answers_whole: int = 0
    answers_ending_in_ellipsis: int = 0
    mentions_repeated: int = 0
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
        log = (folder / f"simulator-{tier}-{self.port}.log").open("wb")
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


class RecordingAnswerer:
    """The bot's answerer, keeping each reply as the model wrote it (to check that answers arrive whole)."""

    def __init__(self, inner: ClaudeAnswerer) -> None:
        self.inner = inner
        self.replies: dict[str, str] = {}

    async def answer(
        self, question: str, *, max_chars: int, deadline_s: float, on_queued: QueuedCallback | None = None
    ) -> str:
        text = await self.inner.answer(
            question, max_chars=max_chars, deadline_s=deadline_s, on_queued=on_queued
        )
        self.replies[question] = text
        return text


def question(rng: random.Random, index: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(12, 40))]
    return f"{index} " + " ".join(words) + "?"


async def baseline(tier: str, args: argparse.Namespace, folder: Path, rng: random.Random) -> float:
    """Median latency of calls of the bot's shape sent one at a time straight to a fresh simulator."""
    from claudegate.bots.answers import max_tokens_for

    bot = BotSettings()
    simulator = Simulator(tier, args.seed, folder)
    budget = bot.answer_max_chars - len("@viewer_000 ")
    sdk = anthropic.AsyncAnthropic(base_url=simulator.url, api_key="sk-bench-baseline", max_retries=0)
    times = []
    try:
        for index in range(args.baseline_calls):
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
        simulator.stop()
    p50 = _percentile(times, 0.5)
    assert p50 is not None
    return p50


async def run_burst(
    standing: str,
    tier: str,
    viewer_count: int,
    base: float,
    args: argparse.Namespace,
    irc_port: int,
    folder: Path,
) -> RunResult:
    rng = random.Random(args.seed)
    channel = f"bench{next(_channels)}"
    simulator = Simulator(tier, args.seed, folder)
    relay = TwitchStanding(irc_port, nick=BOT, badges=BADGES[standing])
    await relay.start()
    try:
        bot_settings = BotSettings(
            nick=BOT, irc_host="127.0.0.1", irc_port=relay.port, irc_tls=False, metrics_port=None
        )
        settings = Settings(
            upstream_url=simulator.url,
            anthropic_api_key="sk-bench-bot",
            upstream_tier=tier,
            database_url=f"sqlite+aiosqlite:///{folder / f'bot-{channel}.db'}",
            usage_spill_file=folder / f"spill-{channel}.jsonl",
            bot=bot_settings,
        )
        async with AsyncClient(settings=settings, org="twitch", user=channel) as client:
            answerer = RecordingAnswerer(
                ClaudeAnswerer(
                    client,
                    model=bot_settings.model,
                    system_prompt=bot_settings.system_prompt,
                    chars_per_token=bot_settings.chars_per_token,
                )
            )
            bot = ChatBot(bot_settings, IrcTransport(irc_config(bot_settings, channel, None)), answerer)
            await bot.start()
            viewers = [Viewer(f"viewer_{i:03d}", irc_port, channel) for i in range(viewer_count)]
            await asyncio.gather(
                *(viewer.connect(within=30) for viewer in viewers),
                asyncio.wait_for(bot.transport.wait_connected(), timeout=30),
            )
            await client.open()
            # A bot that has been running has had questions before: its pipeline has timed calls (until it
            # has, flow control assumes a call holds its slot 5 s and predicts queue waits from that).
            await asyncio.gather(
                *(
                    answerer.answer(question(rng, 2000 + index), max_chars=200, deadline_s=30)
                    for index in range(args.warmup_calls)
                )
            )
            for _ in range(100):  # the standing comes right after the join
                if bot.service.standing is not None:
                    break
                await asyncio.sleep(0.05)
            lines_per_window = bot.outbox.window.limit
            questions = [question(rng, index) for index in range(len(viewers))]
            results = [
                ViewerResult(viewer.nick, text) for viewer, text in zip(viewers, questions, strict=True)
            ]
            offsets = [rng.uniform(0, args.spread_s) for _ in viewers]
            start = time.perf_counter() + 0.2

            async def ask(viewer: Viewer, result: ViewerResult, offset: float) -> None:
                await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
                result.asked = await viewer.say(f"!ask {result.question}")

            await asyncio.gather(*(ask(*item) for item in zip(viewers, results, offsets, strict=True)))
            deadline = time.perf_counter() + args.wait_s
            while time.perf_counter() < deadline:
                if all(_settled(viewer) for viewer in viewers):
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)  # lines in flight
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
        await relay.close()
        simulator.stop()
    everything = {heard.text for viewer in viewers for heard in viewer.heard if heard.sender == BOT}
    summary = RunResult(standing, tier, viewer_count, base, lines_per_window, lines_by_kind=lines_by_kind)
    summary.lines_sent = len(everything)
    summary.longest_line = max((len(text) for text in everything), default=0)
    for viewer, result in zip(viewers, results, strict=True):
        _read(viewer, result, summary, answerer.replies.get(result.question))
    return summarise(summary, results)


def _read(viewer: Viewer, result: ViewerResult, summary: RunResult, reply: str | None) -> None:
    """One viewer's lines: first reply, waits told, the answer (checked whole against the model's reply)."""
    mention = "@" + viewer.nick
    answers = 0
    for heard in viewer.lines_for_me(BOT):
        since = heard.at - result.asked
        if result.first_reply_s is None:
            result.first_reply_s = since
        seconds = told_wait(heard.text, mention)
        if seconds is not None:
            result.waits.append((since, seconds))
            continue
        part = part_for(heard.text, mention) or heard.text
        body = re.sub(r"^(@\S+ )+", "", part)
        if body.startswith("sorry, I'm too busy"):
            result.outcome = "busy" if result.outcome == "silence" else result.outcome
        elif body.startswith("sorry,"):
            result.outcome = "apology" if result.outcome == "silence" else result.outcome
        elif body.startswith(("you can ask again", "your question is still", "please ")):
            continue
        else:
            answers += 1
            if result.answer_s is None:
                result.answer_s = since
                result.answer_text = body
                result.outcome = "answer"
    summary.mentions_repeated += max(0, answers - 1)
    result.reply = reply
    if result.answer_text is not None and reply is not None:
        full = tidy(reply).removesuffix(ELLIPSIS)
        kept = result.answer_text.removesuffix(ELLIPSIS)
        # Whole: the reply itself, or cut to its budget after a sentence or a word (its joiners dropped).
        whole = full.startswith(kept) and (len(kept) == len(full) or full[len(kept)] in " ,;:-–—")
        summary.answers_whole += int(whole)
        summary.answers_ending_in_ellipsis += int(result.answer_text.endswith(ELLIPSIS))


def _settled(viewer: Viewer) -> bool:
    for heard in viewer.lines_for_me(BOT):
        if told_wait(heard.text, "@" + viewer.nick) is None and not heard.text.startswith(
            ("@" + viewer.nick + " you can ask", "@" + viewer.nick + " your question is still")
        ):
            return True
    return False


def summarise(summary: RunResult, results: list[ViewerResult]) -> RunResult:
    answers = [r.answer_s for r in results if r.answer_s is not None]
    summary.results = results
    summary.answered = len(answers)
    summary.busy = sum(1 for r in results if r.outcome == "busy")
    summary.apologies = sum(1 for r in results if r.outcome == "apology")
    summary.silent = sum(1 for r in results if r.first_reply_s is None)
    summary.answer_p50_s = _percentile(answers, 0.5)
    summary.answer_p90_s = _percentile(answers, 0.9)
    summary.answer_max_s = max(answers, default=None)
    summary.share_answered_within_10s = sum(1 for a in answers if a <= 10) / len(results)
    summary.heard_within_2s = sum(
        1 for r in results if r.first_reply_s is not None and r.first_reply_s <= 2.0
    )
    for r in results:
        if r.first_reply_s is not None and r.first_reply_s <= 2.0 and not r.waits and r.outcome != "silence":
            summary.right_within_2s += 1  # the answer, or an apology that says when to ask again
        else:
            early = [(heard_s, seconds) for heard_s, seconds in r.waits if heard_s <= 2.0]
            summary.right_within_2s += int(bool(early) and _right(r, *early[-1]))
        if r.waits:
            summary.viewers_told_a_wait += 1
        for heard_s, seconds in r.waits:
            summary.waits_told += 1
            summary.waits_right += int(_right(r, heard_s, seconds))
    return summary


def _right(result: ViewerResult, heard_s: float, seconds: int) -> bool:
    """Whether a wait told ``heard_s`` after asking came true: the answer within 20% or 3 s of it."""
    return result.answer_s is not None and abs(result.answer_s - heard_s - seconds) <= worse_by(seconds)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: list[RunResult]) -> None:
    print()
    print(
        "| bot | tier | viewers | answered ≤ 10 s | answer p50 / p90 / max s | heard ≤ 2 s | answer, "
        "apology or right wait ≤ 2 s | silent | busy | waits right / told (viewers told) | lines (longest) | "
        "answers whole (…) |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---|---|---|")
    for r in results:
        print(
            f"| {r.standing} ({r.lines_per_window}/30 s) | {r.tier} | {r.viewers} | "
            f"{r.share_answered_within_10s:.0%} | "
            f"{_s(r.answer_p50_s)} / {_s(r.answer_p90_s)} / {_s(r.answer_max_s)} | "
            f"{r.heard_within_2s}/{r.viewers} | {r.right_within_2s}/{r.viewers} | {r.silent} | {r.busy} | "
            f"{r.waits_right}/{r.waits_told} ({r.viewers_told_a_wait}) | {r.lines_sent} ({r.longest_line}) | "
            f"{r.answers_whole}/{r.answered} ({r.answers_ending_in_ellipsis}) |"
        )
    for r in results:
        ratio = f"{r.answer_p50_s / r.baseline_p50_s:.1f}×" if r.answer_p50_s else "-"
        print(
            f"{r.standing} tier {r.tier} {r.viewers} viewers: baseline p50 {r.baseline_p50_s:.2f} s, "
            f"answer p50 = {ratio} the baseline; lines by kind {r.lines_by_kind}; "
            f"mentioned twice {r.mentions_repeated}"
        )


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    if inspircd_binary() is None:
        raise SystemExit("inspircd is not installed (apt-get install -y --no-install-recommends inspircd)")
    results = []
    with tempfile.TemporaryDirectory(prefix="twitch-burst-") as tmp:
        folder = Path(tmp)
        with running_inspircd(folder / "ircd") as irc_port:
            for tier in args.tiers.split(","):
                base = await baseline(tier.strip(), args, folder, random.Random(args.seed))
                for standing in args.standings.split(","):
                    for viewers in (int(v) for v in args.viewers.split(",")):
                        print(
                            f"{standing}, tier {tier}: {viewers} viewers ask within {args.spread_s:g} s …",
                            flush=True,
                        )
                        result = await run_burst(
                            standing.strip(), tier.strip(), viewers, base, args, irc_port, folder
                        )
                        results.append(result)
                        report([result])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="2,1", help="tiers to run, in order (default 2,1)")
    parser.add_argument("--standings", default="moderator,viewer", help="the bot's standings (default both)")
    parser.add_argument("--viewers", default="100,50", help="viewers per burst (default 100,50)")
    parser.add_argument("--spread-s", type=float, default=1.0, help="questions arrive within this long")
    parser.add_argument("--wait-s", type=float, default=100.0, help="how long to wait for every viewer")
    parser.add_argument("--baseline-calls", type=int, default=20)
    parser.add_argument(
        "--warmup-calls", type=int, default=5, help="calls the bot's pipeline makes before the burst"
    )
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
