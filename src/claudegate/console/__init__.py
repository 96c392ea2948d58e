"""The web console at ``/console``: usage and cost, live state, keys, budgets, prompts, a chat playground."""

from claudegate.console.app import console_app

__all__ = ["console_app"]
