"""What the gateway's per-call checks of a Messages request cost, against parsing its body.

Every ``/v1/messages`` call now has its path checked segment by segment (``wire.paths``), its body walked
for cited files (``wire.file_refs``) and its headers read for Claude Code's attribution
(``accounting.attribution``). The baseline is ``orjson.loads`` of the same body, which the gateway does on
every call anyway: each check is reported in microseconds and as a share of that parse, for a one-line
request and for a long Claude Code conversation (a 27 KB system prompt, 100 tool-using turns).

    .venv/bin/python benchmarks/request_checks.py [--rounds 5] [--number 2000]

Runs in one process, interleaving the measurements round by round; reports the median round.
"""

from __future__ import annotations

import argparse
import random
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from claudegate.accounting.attribution import attribution_from_headers
from claudegate.wire.file_refs import cited_file_ids
from claudegate.wire.paths import canonical_path, safe_query

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "while", "coding", "python",
         "gateway", "files", "tokens", "stream")  # fmt: skip
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"x-api-key", b"cg-0123456789abcdef"),
    (b"anthropic-version", b"2023-06-01"),
    (b"anthropic-beta", b"claude-code-20250219,interleaved-thinking-2025-05-14"),
    (b"content-type", b"application/json"),
    (b"user-agent", b"claude-cli/2.1.332 (external, cli)"),
    (b"x-app", b"cli"),
    (b"x-stainless-lang", b"js"),
    (b"x-stainless-retry-count", b"0"),
    (b"x-claude-code-session-id", b"3f2a9c1e-1111-2222-3333-444455556666"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
]


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def bodies() -> dict[str, dict[str, Any]]:
    rng = random.Random(1)
    short = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": prose(rng, 30)}]}]
    for turn in range(100):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": prose(rng, 50), "signature": "s" * 96},
                    {"type": "text", "text": prose(rng, 30)},
                    {"type": "tool_use", "id": f"toolu_{turn}", "name": "Bash", "input": {"command": "ls"}},
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"toolu_{turn}", "content": prose(rng, 200)},
                    {"type": "text", "text": prose(rng, 10)},
                ],
            }
        )
    long = {
        "model": "claude-opus-4-7",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": prose(rng, 5000)}],
        "messages": messages,
        "stream": True,
    }
    return {"short": short, "claude-code": long}


def measure(run: Callable[[], object], number: int) -> float:
    return timeit.timeit(run, number=number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=2000, help="calls per measurement")
    args = parser.parse_args()
    scope = {"raw_path": b"/v1/messages", "path": "/v1/messages", "query_string": b"beta=true"}
    for name, body in bodies().items():
        raw = orjson.dumps(body)
        checks: dict[str, Callable[[], object]] = {
            "baseline: orjson.loads": lambda raw=raw: orjson.loads(raw),
            "path and query": lambda: (canonical_path(scope), safe_query(scope["query_string"])),
            "cited files walk": lambda body=body: cited_file_ids(body),
            "attribution headers": lambda: attribution_from_headers(HEADERS),
        }
        rounds: dict[str, list[float]] = {check: [] for check in checks}
        for _ in range(args.rounds):
            for check, run in checks.items():
                rounds[check].append(measure(run, args.number))
        baseline = statistics.median(rounds["baseline: orjson.loads"])
        blocks = sum(len(m["content"]) if isinstance(m["content"], list) else 1 for m in body["messages"])
        print(f"\n{name}: {len(raw):,} bytes, {blocks} content blocks (median of {args.rounds} rounds)")
        print(f"  {'check':<24} {'us/call':>9} {'of the parse':>13}")
        for check, values in rounds.items():
            median = statistics.median(values)
            print(f"  {check:<24} {median:>9.2f} {median / baseline:>12.1%}")


if __name__ == "__main__":
    main()
