"""The model ids the installed ``anthropic`` SDK lists (its ``Model`` literal): what clients name today."""

from __future__ import annotations

import typing

import anthropic

__all__ = ["sdk_model_ids"]


def sdk_model_ids() -> list[str]:
    """Every literal in ``anthropic.types.Model`` (a Union of a Literal of ids and ``str``)."""
    ids: list[str] = []
    for member in typing.get_args(anthropic.types.Model):
        ids.extend(arg for arg in typing.get_args(member) if isinstance(arg, str))
    return ids
