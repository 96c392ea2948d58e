"""Model routing: named policies (``fast``, ``balanced``, ``deep`` and the operator's own) usable as the
``model`` of any call, each a chain of models tried in order.

A call whose ``model`` names a policy is sent with the policy's first model; if that model is overloaded or
unavailable (a failure the pipeline would retry, with no other upstream left to fail over to), the pipeline
tries the next model of the chain at once, inside the call's deadline. The usage record keeps the policy's
name and the model that served.

Every front door resolves the policy where it describes the call (:func:`apply_policy`), so the gateway, the
chat API, the in-process client and the bots accept the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import orjson

from claudegate.pipeline.request import CallRequest
from claudegate.wire.models import ModelCatalog

__all__ = ["DEFAULT_POLICIES", "PolicyBook", "apply_policy", "with_model"]

# Chains chosen for the task each name suggests: the first model serves, the others take over when it is
# overloaded. Operators replace or add chains with the ``model_policies`` setting.
DEFAULT_POLICIES: Mapping[str, tuple[str, ...]] = {
    "fast": ("claude-haiku-4-5", "claude-sonnet-4-6"),
    "balanced": ("claude-sonnet-4-6", "claude-haiku-4-5"),
    "deep": ("claude-opus-4-6", "claude-sonnet-4-6"),
}


@dataclass(frozen=True, slots=True)
class PolicyBook:
    """The policies in force: the defaults, with the operator's replacing or extending them."""

    chains: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_settings(cls, configured: Mapping[str, Sequence[str]]) -> PolicyBook:
        chains = dict(DEFAULT_POLICIES)
        for name, models in configured.items():
            if not models:
                raise ValueError(f"model policy {name!r} names no model")
            chains[name] = tuple(models)
        return cls(chains)

    def context_window(self, model: str, catalog: ModelCatalog) -> int | None:
        """The smallest context window among the models ``model`` (a model or a policy) may be served by;
        None when none of them is in the catalogue."""
        windows = [
            info.context_window
            for name in self.chain(model) or (model,)
            if (info := catalog.resolve(name)) is not None
        ]
        return min(windows) if windows else None

    def chain(self, model: str | None) -> tuple[str, ...] | None:
        """The models a policy name stands for, or None when ``model`` is not a policy."""
        return self.chains.get(model) if model is not None else None


def with_model(body: bytes, model: str) -> bytes:
    """``body`` (a JSON object) with its ``model`` replaced."""
    fields = orjson.loads(body)
    fields["model"] = model
    return orjson.dumps(fields)


def apply_policy(call: CallRequest, book: PolicyBook) -> CallRequest:
    """The call, or if its model names a policy, the call sent with the policy's first model, the others
    kept as fallbacks."""
    chain = book.chain(call.model)
    if chain is None:
        return call
    return replace(
        call, policy=call.model, model=chain[0], fallbacks=chain[1:], body=with_model(call.body, chain[0])
    )
