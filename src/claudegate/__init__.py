"""claudegate: run Anthropic's Claude in production.

One request pipeline behind three front doors (an Anthropic-compatible HTTP gateway, an in-process client and
chat bots), with a faithful Anthropic API simulator for tests, benchmarks and load tests.
"""

from claudegate._version import __version__

__all__ = ["__version__"]
