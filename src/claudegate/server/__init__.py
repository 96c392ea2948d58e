"""The gateway's HTTP server: the Anthropic-compatible API, admin API, metrics and health."""
