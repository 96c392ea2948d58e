"""Upstreams: where calls are sent (Anthropic, another key or region, or the built-in simulator)."""
