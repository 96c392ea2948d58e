"""Accounting: what each call cost (the price table) and the usage record written for every call."""

from claudegate.accounting.prices import ModelPrice, PriceTable, PriceTableError, UsageTokens
from claudegate.accounting.usage import UsageRecord, UsageSink, UsageWriter

__all__ = [
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "UsageRecord",
    "UsageSink",
    "UsageTokens",
    "UsageWriter",
]
