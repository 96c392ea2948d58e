"""Call diagnostics: request payloads logged for the organisations that ask, and a call's story told."""

from claudegate.diagnostics.payloads import PayloadLog, masked_headers
from claudegate.diagnostics.render import curl_command, describe_call

__all__ = ["PayloadLog", "curl_command", "describe_call", "masked_headers"]
