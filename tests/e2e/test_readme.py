"""The README's examples work as written: every fenced block marked ``<!-- readme-test: run -->`` runs, in
order, against a gateway started for it in a data directory of its own.

What the README leaves for the reader to fill in is filled in the way a reader would: ``cg-…`` becomes the
key the ``keys create`` example printed, ``chat_…`` the conversation an earlier example started, port 8080
the test gateway's port, and ``claudegate`` / ``.venv/bin/claudegate`` this environment's executable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.gateway_process import gateway_env, running_gateway

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- readme-test: run -->"
_BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```(\w+)\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Example:
    language: str
    code: str
    line: int


def readme_examples() -> list[Example]:
    text = (ROOT / "README.md").read_text()
    return [
        Example(match.group(1), match.group(2), text[: match.start()].count("\n") + 1)
        for match in _BLOCK.finditer(text)
    ]


def _without_comments(code: str) -> str:
    lines = [line.split("  # ")[0] for line in code.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines)


def test_every_marked_block_is_found() -> None:
    text = (ROOT / "README.md").read_text()
    examples = readme_examples()
    assert len(examples) == text.count(MARKER)
    assert {example.language for example in examples} == {"bash", "python"}


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = gateway_env(tmp_path / "home") | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    found: dict[str, str] = {}
    outputs = []
    with running_gateway(env, tmp_path) as gateway:
        for example in readme_examples():
            code = (
                example.code.replace("127.0.0.1:8080", f"127.0.0.1:{gateway.port}")
                .replace("localhost:8080", f"127.0.0.1:{gateway.port}")
                .replace(".venv/bin/claudegate", str(bin_dir / "claudegate"))
            )
            for placeholder, value in found.items():
                code = code.replace(placeholder, value)
            argv = (
                ["bash", "-euo", "pipefail", "-c", code]
                if example.language == "bash"
                else [sys.executable, "-c", code]
            )
            done = subprocess.run(
                argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, (
                f"README.md line {example.line}:\n{code}\n{done.stdout}\n{done.stderr}"
            )
            assert "…" not in _without_comments(code), f"README.md line {example.line}: a placeholder is left"
            outputs.append(done.stdout)
            if key := re.search(r"cg-[A-Za-z0-9_-]{40}", done.stdout):
                found.setdefault("cg-…", key.group(0))
            if chat := re.search(r'"chat_id":"(chat_[A-Za-z0-9_]+)"', done.stdout):
                found.setdefault("chat_…", chat.group(1))
    assert set(found) == {"cg-…", "chat_…"}
    joined = "\n".join(outputs)
    assert '"prompt":{"name":"support","version":1}' in joined
    assert '"done":true' in joined
    assert "claudegate.example.toml: ok" in joined
