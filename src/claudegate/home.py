"""The data directory: where claudegate keeps its SQLite database and usage spill file.

Every command, the gateway and the in-process client resolve it the same way, so they find the same data
from any working directory. First match wins:

1. ``home`` in the settings (``CLAUDEGATE_HOME`` in the environment, or ``home =`` in the settings file,
   relative to the file's directory);
2. the directory of the settings file, when one is given (``--config``);
3. the platform's user data directory (``~/.local/share/claudegate`` on Linux, ``~/Library/Application
   Support/claudegate`` on macOS), from ``platformdirs``.

An explicit ``database_url`` or ``usage_spill_file`` always wins over the data directory: a deployment that
kept ``./claudegate.db`` goes on using it by naming it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATABASE_FILE", "SPILL_FILE", "default_home", "sqlite_url"]

DATABASE_FILE = "claudegate.db"
SPILL_FILE = "usage-spill.jsonl"


def default_home() -> Path:
    """The platform's user data directory for claudegate (not created here)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("claudegate", appauthor=False))


def sqlite_url(home: Path) -> str:
    """The URL of the SQLite database in ``home``."""
    return f"sqlite+aiosqlite:///{(home / DATABASE_FILE).resolve()}"
