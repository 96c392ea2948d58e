"""Anthropic's wire format: the model catalogue, token estimation and server-sent events."""
