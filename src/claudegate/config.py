"""Settings: read once from an optional TOML file and the environment, then passed down.

Precedence, highest first: environment variables (``CLAUDEGATE_<FIELD>``, and ``ANTHROPIC_API_KEY``
unprefixed), the TOML file given to :meth:`Settings.load`, the defaults below. The file uses the field names
as top-level keys (``port = 9000``); an unknown key is an error, so a typo cannot be silently ignored.

Secrets are :class:`pydantic.SecretStr`, so they print as ``**********`` in a repr or a log line; the
database URL is left out of the repr because it may carry a password.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

__all__ = [
    "ANTHROPIC_URL",
    "BotSettings",
    "ConfigError",
    "Settings",
    "UpstreamSettings",
    "normalize_database_url",
    "redact_database_url",
]

ANTHROPIC_URL = "https://api.anthropic.com"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]

# Plain scheme names users type, mapped to the async driver SQLAlchemy needs.
_ASYNC_SCHEMES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


Tier = Literal["1", "2", "3", "4", "unlimited"]


class UpstreamSettings(BaseModel):
    """One upstream in ``[[upstreams]]``: another key, region, or any Anthropic-compatible server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="A short name for metrics, usage records and logs.")
    url: str = Field(description="Base URL, e.g. https://api.anthropic.com.")
    api_key: SecretStr | None = Field(default=None, description="The upstream's API key.")
    api_key_env: str | None = Field(
        default=None,
        description="Name of an environment variable holding the key (keeps it out of the file).",
    )
    priority: int = Field(default=0, description="Lower is preferred by priority routing.")
    tier: Tier = Field(default="1", description="Anthropic usage tier assumed until replies' headers say.")
    requests_per_minute: int | None = Field(default=None, gt=0, description="Overrides the tier's limit.")
    input_tokens_per_minute: int | None = Field(default=None, gt=0, description="Overrides the tier's limit.")
    output_tokens_per_minute: int | None = Field(
        default=None, gt=0, description="Overrides the tier's limit."
    )
    max_concurrency: int = Field(default=64, gt=0, description="Calls in flight to this upstream at most.")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


_BOT_SYSTEM_PROMPT = (
    "You answer questions from viewers in a live-stream chat. Reply in plain text, in one to three short "
    "sentences and at most {max_chars} characters: no markdown, no lists, no links, no greeting. If a "
    "question is unclear or inappropriate, say so in one sentence."
)


class BotSettings(BaseModel):
    """The chat bot (``[bot]`` in the settings file): ``claudegate bot twitch``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- chat connection ----------------------------------------------------------------------------------
    irc_host: str = Field(default="irc.chat.twitch.tv", description="IRC server of the chat.")
    irc_port: int = Field(default=6697, ge=1, le=65535, description="IRC server port.")
    irc_tls: bool = Field(default=True, description="Connect with TLS.")
    nick: str | None = Field(default=None, description="The bot account's login name (lower case).")
    token_env: str = Field(
        default="TWITCH_OAUTH_TOKEN",
        description="Environment variable holding the account's OAuth token (sent as PASS oauth:…).",
    )
    channel: str | None = Field(default=None, description="Channel to join when --channel is not given.")
    capabilities: list[str] = Field(
        default_factory=lambda: ["twitch.tv/tags", "twitch.tv/commands"],
        description="IRCv3 capabilities to request, each on its own (a refusal of one keeps the others).",
    )
    reconnect_min_s: float = Field(default=1.0, gt=0, description="First delay before reconnecting.")
    reconnect_max_s: float = Field(default=60.0, gt=0, description="Longest delay between reconnections.")
    ping_interval_s: float = Field(
        default=240.0, gt=0, description="Send a PING after this long without hearing from the server."
    )
    ping_timeout_s: float = Field(
        default=30.0, gt=0, description="Reconnect when a PING gets no reply within this long."
    )
    # -- questions ----------------------------------------------------------------------------------------
    command_prefix: str = Field(default="!ask", min_length=1, description="What starts a question.")
    cooldown_s: float = Field(default=60.0, ge=0, description="One question per viewer per this long.")
    min_question_chars: int = Field(default=5, ge=1, description="Shortest question accepted.")
    max_question_chars: int = Field(default=500, ge=1, description="Longest question accepted.")
    blocked_phrases: list[str] = Field(
        default_factory=list,
        description="Questions containing one of these words or phrases (any case) are refused.",
    )
    max_pending: int = Field(
        default=300, ge=1, description="Questions in progress at most; more are refused as busy at once."
    )
    # -- answers ------------------------------------------------------------------------------------------
    model: str = Field(default="claude-haiku-4-5", description="The model that answers.")
    system_prompt: str = Field(
        default=_BOT_SYSTEM_PROMPT,
        description="Instructions for brevity; {max_chars} becomes the answer's character budget.",
    )
    answer_max_chars: int = Field(
        default=450, ge=40, le=500, description="Longest answer line, @viewer included, in characters."
    )
    chars_per_token: float = Field(
        default=4.0, gt=0, description="Characters per output token, to turn the budget into max_tokens."
    )
    deadline_s: float = Field(
        default=10.0, gt=0, description="Deadline of each call: a question that cannot start by then is told."
    )
    answer_timeout_s: float = Field(
        default=20.0, gt=0, description="Give up on an answer (the 'too slow' message) after this long."
    )
    # -- telling viewers ----------------------------------------------------------------------------------
    notice_after_s: float = Field(
        default=3.0,
        ge=0,
        description="A queued viewer is told their position and wait when the answer is predicted later.",
    )
    ack_after_s: float = Field(
        default=1.25,
        ge=0,
        description="When busy, a viewer who has heard nothing for this long is told the answer is coming.",
    )
    busy_questions: int = Field(
        default=10, ge=1, description="Questions in progress from which the bot counts as busy."
    )
    notice_batch_s: float = Field(
        default=0.25, ge=0, description="Notices are gathered this long, to tell many viewers in one line."
    )
    moderator: bool = Field(
        default=False,
        description="The bot is moderator or broadcaster: 100 messages per 30 s instead of 20.",
    )
    messages_per_window: int | None = Field(
        default=None, ge=1, description="Overrides the message limit the moderator flag implies."
    )
    message_window_s: float = Field(default=30.0, gt=0, description="Twitch's message-limit window.")
    message_safety: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Share of the message limit the bot uses (lockouts last 30 min).",
    )
    duplicate_window_s: float = Field(
        default=30.0, ge=0, description="The same text is never sent twice within this long."
    )
    shutdown_grace_s: float = Field(
        default=15.0, ge=0, description="At shutdown, how long accepted questions get to be answered."
    )
    # -- operations ---------------------------------------------------------------------------------------
    org: str = Field(default="twitch-bot", description="Organisation the bot's calls are accounted to.")
    metrics_host: str = Field(default="127.0.0.1", description="Address of /metrics and /health.")
    metrics_port: int | None = Field(
        default=9109, ge=0, le=65535, description="Port of /metrics and /health; unset disables them."
    )
    health_window_s: float = Field(default=60.0, gt=0, description="Error rate is measured over this long.")
    degraded_queue_use: float = Field(default=0.7, gt=0, description="Queue use from which health degrades.")
    unhealthy_queue_use: float = Field(
        default=0.95, gt=0, description="Queue use from which it is unhealthy."
    )
    degraded_error_rate: float = Field(
        default=0.1, ge=0, description="Error rate from which health degrades."
    )
    unhealthy_error_rate: float = Field(
        default=0.5, ge=0, description="Error rate from which it is unhealthy."
    )

    @property
    def message_limit(self) -> int:
        """Messages the bot allows itself per window: Twitch's limit for its role, less the safety margin."""
        base = self.messages_per_window or (100 if self.moderator else 20)
        return max(1, int(base * self.message_safety))

    @field_validator("nick", "channel")
    @classmethod
    def _irc_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lstrip("#").lower()
        if not value or any(ch in value for ch in " ,\r\n\x00"):
            raise ValueError(f"not a valid chat name: {value!r}")
        return value


class ConfigError(Exception):
    """The configuration file or environment is unusable; the message says what to fix."""


def normalize_database_url(url: str) -> str:
    """Give a database URL the async driver claudegate uses (``postgresql://`` → ``postgresql+asyncpg://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"database_url must look like sqlite+aiosqlite:///path or postgresql://…, got {url!r}"
        )
    return f"{_ASYNC_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def redact_database_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not (sep and at and ":" in userinfo and "/" not in userinfo):
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class Settings(BaseSettings):
    """Everything claudegate reads from its environment, in one flat, typed object."""

    model_config = SettingsConfigDict(
        env_prefix="CLAUDEGATE_",
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port the gateway listens on.")
    database_url: str = Field(
        default="sqlite+aiosqlite:///./claudegate.db",
        repr=False,
        description=(
            "Where keys, usage and batch ownership are stored: a SQLite file (default) or PostgreSQL "
            "(postgresql://user:password@host/db; the asyncpg driver is chosen for you)."
        ),
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key"),
        description=(
            "The real Anthropic API key (environment variable ANTHROPIC_API_KEY, unprefixed). It never "
            "leaves the server. Without it, and without upstream_url, the built-in simulator serves."
        ),
    )
    upstream_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the upstream Anthropic-compatible API. Unset: https://api.anthropic.com when "
            "ANTHROPIC_API_KEY is set, otherwise the built-in simulator."
        ),
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=("Bearer token for the /admin API. Unset: the admin API answers 403 to every call."),
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Signs the web console's session cookies. Unset: derived from the admin token, so every gateway "
            "process with the same admin token accepts the same sessions; changing either signs everyone out."
        ),
    )
    prices_file: Path | None = Field(
        default=None,
        description="A TOML price table whose rows replace or extend the built-in one (same format).",
    )
    usage_flush_interval_s: float = Field(
        default=0.5, gt=0, description="How often buffered usage records are written to the database."
    )
    usage_batch_size: int = Field(
        default=500, gt=0, description="Write usage records as soon as this many are buffered."
    )
    usage_spill_file: Path = Field(
        default=Path("./claudegate-usage-spill.jsonl"),
        description=(
            "Where usage records go (JSON lines) if the database cannot take them at shutdown; they are "
            "imported back into the database at the next start."
        ),
    )
    key_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a resolved gateway key is trusted without asking the database again; also the longest "
            "a key revoked through another process keeps working here. 0 disables the cache."
        ),
    )
    simulator_tier: str = Field(
        default="unlimited",
        description="Rate-limit tier of the embedded simulator (when it is the upstream).",
    )
    log_level: LogLevel = Field(default="info", description="Logging level: debug, info, warning or error.")

    # -- flow control -------------------------------------------------------------------------------------
    upstreams: list[UpstreamSettings] = Field(
        default_factory=list,
        description=(
            "Several upstreams (TOML [[upstreams]] tables). When set, upstream_url and ANTHROPIC_API_KEY are "
            "not used for routing."
        ),
    )
    upstream_tier: Tier = Field(
        default="1",
        description=(
            "Anthropic usage tier assumed for the single upstream until the first reply's rate-limit headers "
            "give the real limits."
        ),
    )
    upstream_max_concurrency: int = Field(
        default=64, gt=0, description="Calls in flight to the single upstream."
    )
    routing: Literal["priority", "round_robin", "least_load"] = Field(
        default="priority", description="How an upstream is chosen among healthy ones."
    )
    sticky: Literal["none", "conversation", "prefix"] = Field(
        default="prefix",
        description=(
            "Keep related calls on one upstream so its prompt cache keeps hitting: by conversation "
            "(x-claudegate-conversation header, else metadata.user_id) or by prompt prefix (system, "
            "tools)."
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for buckets, limits and breaker state shared by several gateway processes.",
    )
    redis_prefix: str = Field(
        default="claudegate:",
        min_length=1,
        description=(
            "Prefix of every Redis key the gateway uses: gateways that share a prefix share their state "
            "(one account); give deployments serving different accounts different prefixes on one Redis."
        ),
    )
    default_deadline_s: float = Field(
        default=600.0, gt=0, description="Deadline of a call whose key and request set none."
    )
    flow_burst: float = Field(
        default=1.0,
        gt=0,
        le=1.0,
        description="Bucket capacity as a share of a minute's allowance (lower spreads bursts out).",
    )
    retry_max_attempts: int = Field(default=4, ge=1, description="Attempts per call, the first included.")
    breaker_failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open an upstream's circuit breaker."
    )
    breaker_open_s: float = Field(
        default=30.0, gt=0, description="How long an open breaker keeps traffic away before a probe."
    )

    # -- chat API -----------------------------------------------------------------------------------------
    chat_model: str = Field(
        default="claude-sonnet-4-6",
        description="Model of a new chat that names none (and whose prompt version names none).",
    )
    chat_max_tokens: int = Field(default=1024, gt=0, description="max_tokens of a chat call that sets none.")
    chat_history_tokens: int = Field(
        default=100_000,
        gt=0,
        description=(
            "Token budget of a chat call's conversation: the most recent turns that fit, with the new "
            "message, are sent (the system prompt comes on top)."
        ),
    )
    chat_cache_breakpoints: bool = Field(
        default=True,
        description="Place prompt-cache breakpoints in chat calls automatically (tools, system, history).",
    )

    # -- chat bots ----------------------------------------------------------------------------------------
    bot: BotSettings = Field(
        default_factory=BotSettings, description="The chat bot ([bot] table; see BotSettings)."
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("upstream_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"upstream_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def database_url_redacted(self) -> str:
        """The database URL with any password hidden, for messages."""
        return redact_database_url(self.database_url)

    @property
    def resolved_upstream_url(self) -> str | None:
        """The upstream to forward to, or None when the built-in simulator should serve."""
        if self.upstream_url is not None:
            return self.upstream_url
        return ANTHROPIC_URL if self.anthropic_api_key is not None else None

    @classmethod
    def load(cls, config_file: Path | None = None) -> Settings:
        """Settings from ``config_file`` (TOML, optional) overridden by the environment.

        Raises :class:`ConfigError` with a readable message when the file is missing or invalid.
        """
        file_values: dict[str, Any] = {}
        if config_file is not None:
            try:
                file_values = tomllib.loads(config_file.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"configuration file {config_file} does not exist") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read configuration file {config_file}: {exc}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"configuration file {config_file} is not valid TOML: {exc}") from None
        try:
            # Environment values are passed as init values on top of the file's, so they win; reading them
            # explicitly (rather than reordering sources) keeps ``Settings(port=1)`` meaning what it says.
            env_values = EnvSettingsSource(cls)()
            return cls(**{**_by_field_name(cls, file_values), **_by_field_name(cls, env_values)})
        except ValidationError as exc:
            raise ConfigError(_describe(exc, config_file)) from None


def _by_field_name(cls: type[Settings], values: dict[str, Any]) -> dict[str, Any]:
    """Key values by field name, so ``ANTHROPIC_API_KEY`` from the environment replaces the file's
    ``anthropic_api_key`` instead of competing with it. Unknown keys are kept for validation to reject."""
    names: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        names[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({choice.lower(): name for choice in alias.choices if isinstance(choice, str)})
    return {names.get(key.lower(), key): value for key, value in values.items()}


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f" (from {config_file} or the environment)" if config_file else " (from the environment)"
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{field}: {message}")
    return f"invalid configuration{where}: " + "; ".join(problems)
