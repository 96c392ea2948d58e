"""The live API tests stay out of ordinary runs and refuse to pass without a key (no request is made)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_live(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CLAUDEGATE_LIVE", "ANTHROPIC_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/live"],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_claudegate_live_the_module_is_skipped() -> None:
    result = run_live()
    # pytest exits 5 when a run has no test to run: here every live module was skipped, which is the point.
    assert result.returncode in (0, 5), result.stdout + result.stderr
    assert " skipped" in result.stdout
    assert " passed" not in result.stdout
    assert " failed" not in result.stdout
    assert "live API tests run only with CLAUDEGATE_LIVE=1" in result.stdout


def test_claudegate_live_without_a_key_fails_loudly() -> None:
    result = run_live(CLAUDEGATE_LIVE="1")
    assert result.returncode != 0
    assert "CLAUDEGATE_LIVE=1 is set but ANTHROPIC_API_KEY is not" in result.stdout
